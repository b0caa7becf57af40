"""Issue 24, class 6 (and the messages of class 7, and what was still open from before).

Every command, wavegpt-classify included, ends through the one error tail (wavegpt.cli.run_command): an
unexpected exception from torch or the standard library is one sentence plus a hint to report it, with the
traceback only under WAVEGPT_DEBUG=1; out of memory and a full disk (ENOSPC) are named as such. Messages
name the right thing: no advice about a flag the command does not have, a CSV saved with a byte-order mark
is read like any other. A full disk while the optimizer state is written is one sentence and the previous
checkpoint survives; a render stopped with SIGTERM leaves no partial video.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, cli_env, command, make_checkpoint, one_sentence, prose, run_cli, snapshot

# --- the tail itself ---------------------------------------------------------------------------------------


def tail(capsys, exc: BaseException, monkeypatch, debug: bool = False) -> tuple[int, str]:
    from wavegpt.cli import run_command

    if debug:
        monkeypatch.setenv("WAVEGPT_DEBUG", "1")
    else:
        monkeypatch.delenv("WAVEGPT_DEBUG", raising=False)
    code = 0
    try:
        with run_command():
            raise exc
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def test_an_unexpected_exception_is_one_sentence_with_a_hint_to_report_it(capsys, monkeypatch):
    code, err = tail(capsys, ZeroDivisionError("float division by zero"), monkeypatch)
    assert code not in (0, 2), code  # not the bad-input status: it is wavegpt's bug
    one_sentence(code, err, "report", status=code)
    assert "ZeroDivisionError" in err or "division" in err


def test_the_traceback_is_there_under_the_debug_switch(capsys, monkeypatch):
    code, err = tail(capsys, ZeroDivisionError("float division by zero"), monkeypatch, debug=True)
    assert code not in (0, 2) and "Traceback" in err and "ZeroDivisionError" in err, err


@pytest.mark.parametrize("make, words", [
    (lambda: MemoryError(), "out of memory"),
    (lambda: __import__("torch").OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory"),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoint/model.safetensors"),
     "disk is full"),
    (lambda: RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), "writ"),
])
def test_out_of_memory_and_a_full_disk_are_named(make, words, capsys, monkeypatch):
    code, err = tail(capsys, make(), monkeypatch)
    one_sentence(code, err, words, status=code)
    assert code != 0


# --- every command goes through it: a full stdout (/dev/full) is a full disk, named, for each ------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("rel-tail") / "ckpt")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel-tail-rows") / "rows.csv"
    path.write_text("text,label\n" + "".join(f"{line},{'ab'[i % 2]}\n"
                                           for i, line in enumerate(prose(4000, seed=3).splitlines()[:60])))
    return path


def to_dev_full(name, *args, cache):
    with open("/dev/full", "w") as full:
        return command(name, *args, cache=cache, stdout=full, timeout=180)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("name", ["generate", "eval", "export", "classify"])
def test_every_command_names_a_full_disk(name, model_folder, corpus, rows, cache, tmp_path):
    args = {"generate": ["--checkpoint", model_folder, "--max-new-tokens", 2, "--seed", 1],
            "eval": ["--checkpoint", model_folder, "--data", corpus],
            "export": ["--checkpoint", model_folder, "--out", tmp_path / "ship", "--dtype", "float32"],
            "classify": ["train", "--data", rows, "--out", tmp_path / "clf", "--d-model", 16, "--ffn-hidden", 32,
                         "--max-len", 8, "--vocab-size", 300, "--max-steps", 1]}[name]
    result = to_dev_full(name, *args, cache=cache)
    one_sentence(result.returncode, result.stderr, "disk is full", status=result.returncode)
    assert result.returncode != 0


def test_a_device_torch_does_not_know_is_one_sentence(model_folder, capsys):
    from wavegpt.cli.generate import main

    code, _, err = run_cli(capsys, main, "--checkpoint", model_folder, "--device", "quantum:3", "--max-new-tokens", 2)
    one_sentence(code, err, "--device", status=code)
    assert code != 0


# --- messages that name the right thing --------------------------------------------------------------------


def test_eval_never_advises_a_flag_it_does_not_have(model_folder, tmp_path, cache, capsys, monkeypatch):
    from wavegpt.cli.eval import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    short = tmp_path / "short.txt"
    short.write_text(prose(400, seed=1))
    code, _, err = run_cli(capsys, main, "--checkpoint", model_folder, "--data", short)
    one_sentence(code, err, "short.txt")
    assert "--block-size" not in err


def test_a_csv_with_a_byte_order_mark_is_read_like_any_other(tmp_path, capsys):
    from wavegpt.cli.classify import main

    rows = "text,label\n" + "".join(f"line {i} of some text,{'ab'[i % 2]}\n" for i in range(40))
    path = tmp_path / "excel.csv"
    path.write_bytes(rows.encode("utf-8-sig"))
    code, out, err = run_cli(capsys, main, "train", "--data", path, "--out", tmp_path / "clf", "--d-model", 16,
                             "--ffn-hidden", 32, "--max-len", 8, "--vocab-size", 300, "--max-steps", 1)
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("accuracy ")


# --- still open from before ----------------------------------------------------------------------------------


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_while_the_optimizer_state_is_written(small_run, tmp_path, cache):
    """The optimizer state (accelerate's save_state, through torch.save) is the largest file of a save: the
    write fails there, which torch reports as a RuntimeError. One sentence, and the previous checkpoint is
    as it was."""
    out = tmp_path / "run"
    shutil.copytree(small_run, out)
    before = snapshot(out / "checkpoint")
    weights = (out / "checkpoint" / "model.safetensors").stat().st_size
    optimizer = max(p.stat().st_size for p in (out / "checkpoint" / "accelerate").iterdir())
    assert optimizer > weights * 1.5
    env = cli_env(cache, PYTHONPATH=str(REPO))
    env.pop("WAVEGPT_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "wavegpt.cli.train", "--out", str(out), "--resume", "--max-steps",
                             "4", "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                            preexec_fn=_limit_file_size(int(weights * 1.2)))
    one_sentence(result.returncode, result.stderr, "writ", status=2)
    assert snapshot(out / "checkpoint") == before
    assert not list(out.glob(".checkpoint.tmp-*"))


def test_a_render_stopped_with_sigterm_leaves_no_partial_video(model_folder, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("imageio_ffmpeg")
    target = tmp_path / "wave.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "wavegpt.cli.animate", "--checkpoint", str(model_folder),
                             "--tokens", "200", "--size", "320x240", "--output", str(target)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(tmp_path.glob(".wave.*.part.mp4")):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no partial video appeared"
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not list(tmp_path.glob(".wave.*.part.mp4")), "the partial video was left behind"
    assert not target.exists()
    assert "Traceback" not in err, err
