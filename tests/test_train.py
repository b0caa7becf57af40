"""The training command end to end: exact resume, crash safety, two processes, NaN handling, bad input,
undecodable bytes, the FineWeb pipeline on a local parquet, the run folder's files, gradient accumulation.

Commands run as users run them (`python train.py ...` from the repository root) with
OMP_NUM_THREADS=1: a run is bitwise reproducible only with one thread, because the backward pass of an
embedding on a multi-threaded CPU sums its gradient rows in a varying order. Every corpus is built here,
in a temporary folder, from a fixed word list and a seeded generator.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import (
    REPO,
    TINY_FLAGS,
    assert_finite_checkpoint,
    cli_env,
    finish,
    free_port,
    metrics,
    ok,
    prose,
    run_train,
    saved_step,
    snapshot,
    start,
    summary_line,
    tiny_args,
)
from wavegpt import WaveGPT
from wavegpt.data import FINEWEB_SOURCE_ENV
from wavegpt.tokenizer import WaveTokenizer
from wavegpt.training import TrainError, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus, cache) -> dict:
    """Run A trains 8 steps in one go; run B, the same run, stops at step 4 and is resumed to step 8.

    A and B start together on a fresh cache, so they also build the same token cache concurrently."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "A", root / "B"
    flags = [*TINY_FLAGS, "--data", corpus, "--max-steps", "8", "--save-interval", "4", "--eval-interval", "4",
             "--log-interval", "1", "--dropout", "0.1"]  # default preset full_physics: RGD and QFE
    first = [start([*flags, "--out", a], cache), start([*flags, "--out", b, "--stop-at", "4"], cache)]
    done_a, _ = (ok(finish(p)) for p in first)
    stopped = {"step": saved_step(b), "steps": [m["step"] for m in metrics(b)]}
    resumed = ok(run_train(["--out", b, "--resume", "--no-progress"], cache))
    return {"A": a, "B": b, "stopped": stopped, "a_stdout": done_a.stdout, "b_stdout": resumed.stdout}


def test_resume_continues_the_same_run(runs):
    a, b = runs["A"], runs["B"]
    assert runs["stopped"] == {"step": 4, "steps": [1, 2, 3, 4]}
    assert saved_step(a) == saved_step(b) == 8
    wa = load_file(str(a / "checkpoint" / "model.safetensors"))
    wb = load_file(str(b / "checkpoint" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for name in wa:  # bitwise equal with one thread; RGD's warmup and Adam's moments continued where they stopped
        torch.testing.assert_close(wb[name], wa[name], atol=1e-6, rtol=0, msg=name)
    ma, mb = metrics(a), metrics(b)
    assert [m["step"] for m in mb] == [m["step"] for m in ma] == list(range(1, 9))  # no step logged twice
    for x, y in zip(ma, mb):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-6)
        assert ("val" in y) == ("val" in x) and y.get("val", 0) == pytest.approx(x.get("val", 0), abs=1e-6)
    assert summary_line(runs["b_stdout"])["steps"] == 8
    assert json.loads((b / "run.json").read_text())["max_steps"] == 8


def test_run_folder_holds_tokenizers_figures_curve_and_metrics(runs):
    out = runs["A"]
    tokenizer = (out / "tokenizer.json").read_bytes()
    for name in ("checkpoint", "best"):
        assert (out / name / "tokenizer.json").read_bytes() == tokenizer
        assert_finite_checkpoint(out / name)
    best_config = json.loads((out / "best" / "config.json").read_text())
    extra = best_config["extra"]
    assert extra["val_nats_per_char"] > 0 and extra["val_nats_per_token"] > extra["val_nats_per_char"]
    assert extra["data"] == "corpus.txt" and extra["step"] in (4, 8)
    assert WaveTokenizer.load(out / "best").vocab_size == best_config["vocab_size"]

    png = (out / "learning_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(out / "learning_curve.png") as image:
        image.verify()
        assert image.size[0] > 100 and image.size[1] > 100

    rows = metrics(out)
    for row in rows:
        for key in ("step", "loss", "ce", "coherence", "lr", "wave_ratio", "tokens_per_s"):
            assert isinstance(row[key], (int, float)), (key, row)
        assert ("val" in row) == (row["step"] in (4, 8)), row
    assert all(row["val_nats_per_char"] > 0 for row in rows if "val" in row)
    assert summary_line(runs["a_stdout"])["tokens"] == 8 * 4 * 32


def test_sigkill_while_saving_leaves_previous_checkpoint_loadable(corpus, cache, tmp_path):
    """Kill -9 at random moments of a run that saves every step; every kill leaves a checkpoint that
    loads, and --resume continues from it (even from the state a kill between the two renames leaves)."""
    out = tmp_path / "run"
    rng = random.Random(1)
    deadline = time.monotonic() + 60
    args = [*TINY_FLAGS, "--data", corpus, "--out", out, "--max-steps", "100000", "--save-interval", "1",
            "--eval-interval", "1", "--log-interval", "1", "--warmup-steps", "2"]  # a save or two every step
    kills = 0
    while kills < 3 and (kills == 0 or time.monotonic() < deadline - 15):
        before = saved_step(out)
        proc = start(args, cache, log=tmp_path / f"attempt{kills}")
        while saved_step(out) <= before:  # running, and saved at least once since it started
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"run {kills} exited {proc.returncode} or stalled before saving:\n"
                            + (tmp_path / f"attempt{kills}.err").read_text())
            time.sleep(0.02)
        saving = time.monotonic() + 5
        while not list(out.glob(".*.tmp-*")) and time.monotonic() < saving:  # a save has begun...
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.06))  # ...and is killed at a random point in it (or just after)
        proc.kill()
        proc.wait()
        kills += 1
        # Load from a copy: loading restores checkpoint.old, which must not do --resume's work for it.
        side = tmp_path / f"copy{kills}"
        for name in ("checkpoint", "checkpoint.old"):
            if (out / name).is_dir():
                shutil.copytree(out / name, side / name)
        assert_finite_checkpoint(side / "checkpoint")
        state = torch.load(side / "checkpoint" / "trainer_state.pt", weights_only=True)
        assert state["step"] == json.loads((side / "checkpoint" / "trainer_state.json").read_text())["step"]
        args = ["--out", out, "--resume", "--no-progress"]

    # The state a kill between atomic_folder's two renames leaves: no checkpoint/, the previous one as .old.
    if (out / "checkpoint").is_dir():
        shutil.rmtree(out / "checkpoint.old", ignore_errors=True)
        os.replace(out / "checkpoint", out / "checkpoint.old")
    (out / ".checkpoint.tmp-killed").mkdir(exist_ok=True)  # and what a kill in the middle of a save leaves
    (out / ".checkpoint.tmp-killed" / "model.safetensors").write_bytes(b"half")
    step = saved_step(out)
    assert step >= 1
    ok(run_train(["--out", out, "--resume", "--max-steps", step + 2, "--no-progress"], cache))
    assert saved_step(out) == step + 2 and not (out / "checkpoint.old").exists()
    assert [m["step"] for m in metrics(out)] == list(range(1, step + 3))  # steps after a lost save re-run once
    assert not list(out.glob(".*.tmp-*"))  # half-written saves of the killed runs are cleared on resume
    assert_finite_checkpoint(out / "checkpoint")


def test_two_processes_train_and_write_one_checkpoint(corpus, cache, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts ONE process (multi-CPU needs an MPI hostfile);
    # --multi_gpu goes through torchrun, and train.py's --cpu makes the two processes join over gloo.
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "train.py", "--cpu", *map(str, TINY_FLAGS), "--data", str(corpus),
           "--max-steps", "4", "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, env=cli_env(cache), capture_output=True, text=True, timeout=180)
    ok(result)
    assert "2 process(es)" in result.stdout
    assert result.stdout.count("wavegpt: ") == 1  # only the main process prints
    # tensorboard/: the default tracker's logs when TensorBoard is installed (the [test] extra installs it)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "tensorboard") == ["best", "checkpoint"]
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".wavegpt-run"]  # no temporaries
    for name in ("best", "checkpoint"):
        assert_finite_checkpoint(out / name)
    assert saved_step(out) == 4
    assert summary_line(result.stdout)["tokens"] == 4 * 4 * 32 * 2


def test_processes_that_did_not_join_refuse_to_train(corpus, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as two, but Accelerate set up one (no --cpu, no GPU)
    with pytest.raises(TrainError, match="pass --cpu"):
        train(tiny_args(tmp_path, corpus, cache, max_steps=1))
    assert not (tmp_path / "run").exists()


def nan_loss_on(calls: set[int], monkeypatch) -> None:
    """Make the loss of the given training forward passes (1-based) NaN."""
    real = WaveGPT.forward
    count = itertools.count(1)

    def forward(self, idx, targets=None, *args, **kwargs):
        logits, loss = real(self, idx, targets, *args, **kwargs)
        if self.training and targets is not None and next(count) in calls:
            loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(WaveGPT, "forward", forward)


def test_nan_loss_skips_steps_and_stops_after_several_in_a_row(corpus, cache, tmp_path, monkeypatch):
    nan_loss_on({2, 4, 5, 6}, monkeypatch)  # step 2 alone, then 4, 5, 6 in a row
    with pytest.raises(TrainError, match=r"step 6: the loss was NaN or infinite for 3 steps in a row"):
        train(tiny_args(tmp_path, corpus, cache, max_steps=20, max_bad_steps=3))
    out = tmp_path / "run"
    assert saved_step(out) == 3  # the last step that trained; no NaN reached the weights
    assert_finite_checkpoint(out / "checkpoint")
    assert [(m["step"], m["skipped_steps"]) for m in metrics(out)] == [(1, 0), (3, 1)]  # skipped steps log nothing


def test_one_nan_loss_is_skipped_and_training_continues(corpus, cache, tmp_path, monkeypatch, capsys):
    nan_loss_on({2}, monkeypatch)
    summary = train(tiny_args(tmp_path, corpus, cache, max_steps=4, max_bad_steps=2, eval_interval=4))
    assert summary["skipped_steps"] == 1 and summary["steps"] == 4
    assert "step 2: loss is not finite; step skipped" in capsys.readouterr().out
    out = tmp_path / "run"
    assert saved_step(out) == 4 and [m["step"] for m in metrics(out)] == [1, 3, 4]
    assert_finite_checkpoint(out / "checkpoint")
    assert_finite_checkpoint(out / "best")


def test_gradient_accumulation_matches_one_larger_batch(corpus, cache, tmp_path, monkeypatch):
    import wavegpt.training.trainer as trainer

    whole = train(tiny_args(tmp_path / "whole", corpus, cache, max_steps=2, batch_size=4, grad_accum=1))
    shapes: list[tuple[int, ...]] = []
    real = trainer.get_batch

    def counting(*args, **kwargs):
        x, y = real(*args, **kwargs)
        shapes.append(tuple(x.shape))
        return x, y

    monkeypatch.setattr(trainer, "get_batch", counting)
    split = train(tiny_args(tmp_path / "split", corpus, cache, max_steps=2, batch_size=2, grad_accum=2))
    assert shapes == [(2, 32)] * 4  # two micro-batches for each of two steps
    assert split["tokens"] == whole["tokens"] == 2 * 2 * 2 * 32
    # The same windows (one generator), one averaged gradient per step: the same weights and losses.
    wa = load_file(str(tmp_path / "whole" / "run" / "checkpoint" / "model.safetensors"))
    wb = load_file(str(tmp_path / "split" / "run" / "checkpoint" / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-4, rtol=0, msg=name)
    for x, y in zip(metrics(tmp_path / "whole" / "run"), metrics(tmp_path / "split" / "run")):
        assert y["loss"] == pytest.approx(x["loss"], abs=1e-5)


def test_bad_input_is_one_error_line_and_exit_2(corpus, cache, runs, tmp_path, monkeypatch, capsys):
    """Three cases run as real commands (in parallel); the rest call the same main() in this process, where
    an exception escaping it fails the test just as a traceback would, at a fraction of the start-up cost."""
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("the king and the queen.\n" * 3)
    (tmp_path / "empty_run").mkdir()
    held = tmp_path / "held"
    shutil.copytree(runs["A"], held)
    before = snapshot(held)
    torn = tmp_path / "torn"
    shutil.copytree(runs["A"], torn)
    (torn / "checkpoint" / "trainer_state.pt").write_bytes(b"not a torch file")
    data = ["--data", corpus]
    cases = {  # name: (arguments, extra environment, the one line's pattern)
        "missing data": ([*TINY_FLAGS, "--data", tmp_path / "missing.txt"], {}, "^error: .*missing.txt does not exist"),
        "run already there": ([*TINY_FLAGS, *data, "--out", held, "--max-steps", "2"], {},
                              "^error: .*already holds a run; pass --resume .*--overwrite"),
        "unknown preset": (["--preset", "nope", *data], {}, "error: argument --preset: invalid choice: 'nope'"),
        "unknown size": ([*TINY_FLAGS, "--model", "huge", *data], {},
                         "error: argument --model: invalid choice: 'huge'"),
        "empty data": ([*TINY_FLAGS, "--data", tmp_path / "empty.txt"], {}, "^error: .*holds no text"),
        "shorter than a block": ([*TINY_FLAGS, "--data", tmp_path / "short.txt"], {}, "^error: .*fewer than one block"),
        "resume nothing": (["--out", tmp_path / "empty_run", "--resume", "--no-progress"], {},
                           "^error: There is no checkpoint to resume"),
        "torn trainer state": (["--out", torn, "--resume", "--no-progress"], {},
                               "^error: .*trainer_state.pt cannot be read"),
        "no steps": ([*TINY_FLAGS, *data, "--max-steps", "0"], {}, "^error: .*must be at least 1"),
        "fineweb source missing": ([*TINY_FLAGS, "--dataset", "fineweb_small"],
                                   {FINEWEB_SOURCE_ENV: str(tmp_path / "none.parquet")}, "^error: .*is not a file"),
    }
    cases = {name: ([*args, *([] if "--out" in args else ["--out", tmp_path / name])], env, pattern)
             for name, (args, env, pattern) in cases.items()}
    procs = {name: start(cases[name][0], cache) for name in ("missing data", "run already there", "unknown preset")}
    outcomes = {name: (r.returncode, r.stderr) for name, r in ((n, finish(p)) for n, p in procs.items())}
    from wavegpt.cli.train import main

    for name, (args, env, _) in cases.items():
        if name in outcomes:
            continue
        with monkeypatch.context() as m:
            for key, value in {"WAVEGPT_CACHE": str(cache), **env}.items():
                m.setenv(key, value)
            with pytest.raises(SystemExit) as exited:
                main([str(a) for a in args])
        outcomes[name] = (exited.value.code, capsys.readouterr().err)

    for name, (_, _, pattern) in cases.items():
        code, stderr = outcomes[name]
        assert code == 2 and "Traceback" not in stderr, (name, stderr)
        lines = stderr.strip().splitlines()
        if "argument" not in pattern:  # argparse's own errors come after its usage lines
            assert len(lines) == 1, (name, stderr)
        assert re.search(pattern, lines[-1]), (name, stderr)
    assert snapshot(held) == before  # the run already there is untouched


def test_undecodable_bytes_are_replaced_with_a_warning(cache, tmp_path):
    text = prose(20_000, seed=3).encode()
    data = tmp_path / "latin1.txt"
    data.write_bytes(text[:5000] + b"caf\xe9 \xff\xfe" + text[5000:])
    result = ok(run_train([*TINY_FLAGS, "--data", data, "--out", tmp_path / "run", "--max-steps", "1"], cache))
    assert "latin1.txt is not valid UTF-8: 3 undecodable byte(s) were replaced with U+FFFD" in result.stderr
    assert saved_step(tmp_path / "run") == 1


def test_fineweb_path_reads_a_local_parquet_through_the_same_code(cache, tmp_path):
    docs = [prose(300, seed=100 + i).strip() for i in range(200)]
    source = tmp_path / "fineweb.parquet"
    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), source)
    out = tmp_path / "run"
    result = ok(run_train([*TINY_FLAGS, "--dataset", "fineweb_small", "--out", out, "--max-steps", "3"], cache,
                        **{FINEWEB_SOURCE_ENV: str(source)}))
    assert "(fineweb_small)" in result.stdout
    assert [m["step"] for m in metrics(out)] == [3] and "val" in metrics(out)[-1]
    assert saved_step(out) == 3
    extra = json.loads((out / "checkpoint" / "config.json").read_text())["extra"]
    assert extra["data"] == "fineweb_small"
    assert extra["train_tokens"] / (extra["train_tokens"] + extra["val_tokens"]) == pytest.approx(0.9, abs=1e-3)
    tokenizer = WaveTokenizer.load(out / "checkpoint")
    assert tokenizer.vocab_size == 300
    assert_finite_checkpoint(out / "checkpoint")
