"""The test toolkit, shared by every test file (no test file imports another):

- models: tiny_config (TINY_VOCAB tokens), make_checkpoint;
- corpora: WORDS, prose (text of a given size), checkpoint_texts (a tokenizer's training text), the
  module-scoped `corpus` file and data `cache` fixtures, TINY_ARCH and tiny_args for in-process runs,
  TINY_FLAGS for the command;
- commands: run_cli (a command's main() in this process), start / finish / run_train (`python train.py`
  in a subprocess, as users run it), cli_env, ok, free_port;
- run folders: metrics, saved_step, snapshot, assert_finite_checkpoint, summary_line;
- comparisons: assert_close, which names the tensor that differs and by how much.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wavegpt.config import WaveGPTConfig

torch.set_num_threads(1)  # tiny test models are overhead-bound; one thread is as fast and deterministic

REPO = Path(__file__).resolve().parents[1]

# --- models ------------------------------------------------------------------------------------

TINY_VOCAB = 61  # tiny_config's vocabulary size: token ids in [0, TINY_VOCAB)
TINY_ARCH = dict(d_model=32, n_layers=2, n_heads=2, num_waves=8, num_harmonics=3, block_size=32, chunk_size=8)


def tiny_config(preset: str = "full_physics", **overrides) -> WaveGPTConfig:
    """A model small enough for unit tests, with the preset's architecture."""
    fields = dict(vocab_size=TINY_VOCAB, **TINY_ARCH)
    fields.update(overrides)
    return WaveGPTConfig.from_preset("tiny", preset, **fields)


def make_checkpoint(folder: Path, preset: str = "full_physics", seed: int = 0, **overrides) -> Path:
    """A tiny random-weight checkpoint folder (config, weights, tokenizer), as wavegpt-train writes."""
    from wavegpt import WaveGPT
    from wavegpt.tokenizer import WaveTokenizer

    tokenizer = WaveTokenizer.train(checkpoint_texts(), vocab_size=300)
    torch.manual_seed(seed)
    model = WaveGPT(tiny_config(preset, vocab_size=tokenizer.vocab_size, **overrides))
    model.save_pretrained(folder, tokenizer=tokenizer)
    return Path(folder)


@pytest.fixture
def make_config():
    return tiny_config


# --- corpora -----------------------------------------------------------------------------------

WORDS = ("the king queen wave light sea night day love war speak thou art my lord good sir doth hath shall river "
         "stone crown sword heart field storm gold silver winter summer bright dark old young").split()
CHECKPOINT_WORDS = WORDS[:17]  # the words of the tiny checkpoints' tokenizer


def prose(n_chars: int, seed: int = 0) -> str:
    """Capitalized lines of 5 to 12 words, one sentence a line, at least n_chars characters."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < n_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def checkpoint_texts() -> list[str]:
    """60 lines of 12 words (~4 KB): what the tiny checkpoints' tokenizer is trained on."""
    rng = random.Random(0)
    return [" ".join(rng.choice(CHECKPOINT_WORDS) for _ in range(12)) + ".\n" for _ in range(60)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A 60,000-character text file, the same in every module that uses it."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(prose(60_000, seed=0), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """An empty data cache for the module."""
    return tmp_path_factory.mktemp("cache")


# wavegpt-train's flags for a tiny run (the command line takes --block-size but not the rest of TINY_ARCH)
TINY_FLAGS = ["--model", "tiny", "--block-size", "32", "--batch-size", "4", "--vocab-size", "300", "--eval-batches",
              "2", "--no-progress"]


def tiny_args(tmp_path: Path, corpus: Path, cache: Path, **fields):
    """TrainArgs of a tiny in-process baseline run in tmp_path/run, without a progress bar or tracker."""
    from wavegpt.args import TrainArgs

    base = dict(preset="baseline", model="tiny", dataset=None, data=str(corpus), out=str(tmp_path / "run"),
                batch_size=4, vocab_size=300, overrides=dict(TINY_ARCH), eval_interval=1000, eval_batches=1,
                save_interval=1, log_interval=1, warmup_steps=2, progress=False, report_to="none",
                cache_dir=str(cache))
    return TrainArgs(**{**base, **fields})


# --- commands ----------------------------------------------------------------------------------

def run_cli(capsys, main, *argv) -> tuple[int, str, str]:
    """A command's main() in this process: exit status, stdout, stderr. An exception escaping main()
    fails the test, and so does a traceback printed on stderr."""
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def cli_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run in a subprocess: no launcher variables, this data cache, one thread."""
    from wavegpt.data import FINEWEB_SOURCE_ENV

    drop = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", FINEWEB_SOURCE_ENV}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(WAVEGPT_CACHE=str(cache), OMP_NUM_THREADS="1", **extra)
    return env


def start(args: list, cache: Path, log: Path | None = None, **env: str) -> subprocess.Popen:
    """`python train.py ARGS` from the repository root; output to `log` (.out/.err) or to pipes."""
    cmd = [sys.executable, "train.py", *map(str, args)]
    if log is None:
        return subprocess.Popen(cmd, cwd=REPO, env=cli_env(cache, **env), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(cmd, cwd=REPO, env=cli_env(cache, **env), stdout=out, stderr=err)


def finish(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"{proc.args} ran past {timeout} s:\n{stderr}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_train(args: list, cache: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """`python train.py ARGS` to the end."""
    return finish(start(args, cache, **env), timeout)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- run folders -------------------------------------------------------------------------------

def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


def saved_step(out: Path) -> int:
    """The step of the run's checkpoint (or of the previous one that a kill left as checkpoint.old); 0 if none."""
    for name in ("checkpoint", "checkpoint.old"):
        try:
            return json.loads((out / name / "trainer_state.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            continue
    return 0


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_finite_checkpoint(folder: Path):
    from wavegpt import WaveGPT

    model = WaveGPT.from_pretrained(folder)
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{folder} holds NaN or inf weights"
    return model


def summary_line(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


# --- comparisons -------------------------------------------------------------------------------

def assert_close(actual, expected, *, name: str, atol: float = 0.0, rtol: float = 0.0) -> None:
    """actual == expected within atol + rtol * |expected| everywhere (exactly, by default); else fail naming
    `name`, the shapes or dtypes that differ, or the largest absolute difference and where it is."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    if actual.numel() == 0:
        return
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    diff = (a - e).abs()
    same_nan = a.isnan() & e.isnan()
    diff = torch.where(same_nan, torch.zeros_like(diff), diff.nan_to_num(nan=float("inf")))
    allowed = atol + rtol * e.abs().nan_to_num(nan=0.0)
    bad = diff > allowed
    if bad.any():
        worst = int(diff.argmax())
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape)) if diff.dim() else ()
        raise AssertionError(f"{name}: {int(bad.sum())} of {diff.numel()} elements differ; max abs difference "
                             f"{diff.max().item():.3g} at {where} ({a.flatten()[worst].item():.6g} vs "
                             f"{e.flatten()[worst].item():.6g}; atol {atol:g}, rtol {rtol:g})")


# --- the reliability battery (issue 24): one-sentence refusals, commands as users run them -------------

# wavegpt-train flags for a 0.06M-parameter run (the tiny size narrowed with --set)
SMALL_TRAIN = ["--model", "tiny", "--block-size", "32", "--batch-size", "4", "--vocab-size", "300", "--eval-batches",
               "1", "--no-progress", "--report-to", "none", "--warmup-steps", "1", "--set", "d_model=32", "--set",
               "n_layers=2", "--set", "n_heads=2", "--set", "num_waves=8", "--set", "chunk_size=8"]


def one_sentence(code: int, err: str, *words: str, status: int = 2) -> None:
    """A refusal as the README promises: exit `status`, one `error:` line on stderr naming `words`, no traceback."""
    assert code == status, f"exit {code}, not {status}:\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for w in words:
        assert w.lower() in errors[0].lower(), f"{w!r} not in {errors[0]!r}"


def command(name: str, *args, cache: Path | None = None, timeout: float = 120, env: dict | None = None,
            cwd: Path = REPO, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """`python -m wavegpt.cli.NAME ARGS` in a subprocess, as a user runs it; (returncode, stdout, stderr)."""
    base = cli_env(cache) if cache is not None else {**os.environ, "OMP_NUM_THREADS": "1"}
    base.pop("WAVEGPT_DEBUG", None)
    base["PYTHONPATH"] = str(REPO)
    base.update(env or {})
    base = {k: v for k, v in base.items() if v is not None}
    try:
        return subprocess.run([sys.executable, "-m", f"wavegpt.cli.{name}", *map(str, args)], cwd=cwd, env=base,
                              text=True, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"wavegpt-{name} {' '.join(map(str, args))} ran past {timeout} s")


def call(main, *argv) -> int:
    """A command's main() in this process (for module-scoped fixtures, where capsys is not available)."""
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, corpus, cache) -> Path:  # noqa: F811 - the fixtures above
    """A finished 2-step run of the 0.06M-parameter model (copy it before changing anything)."""
    from wavegpt.cli.train import main

    out = tmp_path_factory.mktemp("rel-run") / "run"
    old = os.environ.get("WAVEGPT_CACHE")
    os.environ["WAVEGPT_CACHE"] = str(cache)
    try:
        assert call(main, "--data", corpus, "--out", out, "--max-steps", 2, *SMALL_TRAIN) == 0
    finally:
        os.environ.pop("WAVEGPT_CACHE") if old is None else os.environ.__setitem__("WAVEGPT_CACHE", old)
    return out
