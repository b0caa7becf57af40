"""Never lose a user's file; never answer bad input with a traceback or a silent wrong result.

Each class of issue 15 gets its own cases here: what wavegpt may delete or replace (train
--overwrite, export, save_pretrained, the swap's .old backup), the run-folder lock, the one
validation layer (training flags, config.json fields, prompts, tokenizers, the checkpoint
environment variable, --resume with other settings), I/O failures (a path that is a file, a
full disk) and the app's inputs (wrong types, symlinks leading out of its folder). Runs are
tiny and in-process wherever a subprocess adds nothing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_checkpoint, prose, run_cli, snapshot, tiny_args, tiny_config
from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.args import TrainArgs
from wavegpt.checkpoint import CheckpointError
from wavegpt.config import ConfigError
from wavegpt.ownership import RUN_LOCK, OwnershipError, RunLock, RunLockedError, is_run_folder
from wavegpt.tokenizer import WaveTokenizer
from wavegpt.training import TrainError, train

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [  # pandas 3 deprecations inside gradio's queue, not ours
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("safety-corpus") / "corpus.txt"
    path.write_text(prose(30_000, seed=5), encoding="utf-8")
    return path


def args_for(out: Path, corpus: Path, cache: Path, **fields) -> TrainArgs:
    """A 2-step tiny run into `out`."""
    return tiny_args(out.parent, corpus, cache, **{"out": str(out), "max_steps": 2, "batch_size": 2, "warmup_steps": 1,
                                                   **fields})


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus, cache) -> Path:
    """A finished 2-step run (read-only for the tests: they copy it before changing anything)."""
    out = tmp_path_factory.mktemp("safety-run") / "run"
    train(args_for(out, corpus, cache))
    return out


def user_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "thesis.tex").write_text("\\section{Waves}\n")
    return {"notes.txt": b"my notes\n", "data/thesis.tex": b"\\section{Waves}\n"}


def assert_kept(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        assert (folder / name).read_bytes() == content, name


# --- 1. data loss: wavegpt deletes and replaces only what it created -----------------------


def test_overwrite_on_a_folder_without_a_run_refuses_and_deletes_nothing(corpus, cache, tmp_path):
    out = tmp_path / "mine"
    files = user_files(out)
    with pytest.raises(TrainError, match="holds no wavegpt run"):
        train(args_for(out, corpus, cache, overwrite=True))
    assert_kept(out, files)
    assert sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]  # no marker or lock left behind


def test_a_run_writes_beside_other_files_and_overwrite_replaces_only_the_run(corpus, cache, tmp_path):
    out = tmp_path / "shared"
    files = user_files(out)
    train(args_for(out, corpus, cache, max_steps=1))
    assert_kept(out, files)
    assert is_run_folder(out) and (out / "checkpoint" / "model.safetensors").is_file()
    (out / "best" / "user-added.txt").write_text("x")  # inside wavegpt's own folder: replaced with it
    with pytest.raises(TrainError, match="already holds a run"):
        train(args_for(out, corpus, cache, max_steps=1))
    train(args_for(out, corpus, cache, max_steps=2, overwrite=True))
    assert_kept(out, files)
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    assert not (out / RUN_LOCK).exists()


def test_a_name_a_run_would_replace_is_refused(corpus, cache, tmp_path):
    out = tmp_path / "collide"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "my.bin").write_bytes(b"1")
    with pytest.raises(TrainError, match="not written by wavegpt"):
        train(args_for(out, corpus, cache))
    assert (out / "checkpoint" / "my.bin").read_bytes() == b"1"


def test_export_writes_beside_other_files_and_refuses_runs(run, tmp_path, capsys):
    from wavegpt.cli.export import main

    out = tmp_path / "shelf"
    files = user_files(out)
    (out / "README.md").write_text("my own readme\n")
    code, _, err = run_cli(capsys, main, "--run", run, "--out", out, "--dtype", "float32")
    assert code == 0, err
    assert_kept(out, files)
    assert (out / "README.md").read_text() == "my own readme\n"  # a name wavegpt did not write stays
    assert WaveGPT.from_pretrained(out).config.vocab_size > 0
    code, _, err = run_cli(capsys, main, "--run", run, "--out", out, "--dtype", "float16")  # again: replaces its own
    assert code == 0, err
    assert_kept(out, files)

    before = snapshot(run)
    for target, words in [(run, "is a training run folder"), (run / "best", "inside the training run folder"),
                          (out / "notes.txt", "is a file, not a folder")]:
        code, _, err = run_cli(capsys, main, "--run", run, "--out", target)
        assert code == 2 and words in err and err.count("\n") == 1, err
    assert snapshot(run) == before


def test_model_files_another_program_wrote_are_never_replaced(tmp_path):
    model = WaveGPT(tiny_config())
    theirs = tmp_path / "bert"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"model_type": "bert", "hidden_size": 768}')
    with pytest.raises(OwnershipError, match="config.json was not written by wavegpt"):
        model.save_pretrained(theirs)
    assert json.loads((theirs / "config.json").read_text())["model_type"] == "bert"

    mine = tmp_path / "mine"  # save_pretrained beside a user's file, then again over its own files
    files = user_files(mine)
    model.save_pretrained(mine)
    model.save_pretrained(mine)
    assert_kept(mine, files)
    assert WaveGPT.from_pretrained(mine).config.d_model == model.config.d_model

    swap = tmp_path / "swap"  # a folder named like the swap's backup, but not wavegpt's: not deleted
    model.save_pretrained(swap)
    user_files(tmp_path / "swap.old")
    with pytest.raises(OwnershipError, match="swap.old exists and was not written by wavegpt"):
        model.save_pretrained(swap)
    assert (tmp_path / "swap.old" / "notes.txt").is_file()


def test_plots_replace_only_their_own_pngs(tmp_path, capsys):
    from wavegpt.cli.plots import main

    folder = make_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "figures"
    out.mkdir()
    (out / "spectrogram.png").write_bytes(b"my own spectrogram")
    code, _, err = run_cli(capsys, main, "--checkpoint", folder, "--out", out)
    assert code == 2 and "spectrogram.png was not written by wavegpt" in err and err.count("\n") == 1, err
    assert (out / "spectrogram.png").read_bytes() == b"my own spectrogram"
    assert sorted(p.name for p in out.iterdir()) == ["spectrogram.png"]


def test_saved_folders_are_readable_by_others(run):
    for folder in (run / "checkpoint", run / "best"):
        assert folder.stat().st_mode & 0o055 == 0o055 & ~current_umask(), oct(folder.stat().st_mode)
        for name in ("model.safetensors", "config.json", "tokenizer.json"):
            mode = (folder / name).stat().st_mode
            assert mode & 0o044 == 0o044 & ~current_umask(), (name, oct(mode))


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- 2. the run lock ---------------------------------------------------------------------------


def test_a_second_process_refuses_and_a_killed_holder_does_not_block_resume(run, corpus, cache, tmp_path):
    import shutil

    out = tmp_path / "locked"
    shutil.copytree(run, out)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from wavegpt.ownership import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainError, match=rf"in use by another wavegpt process \(pid {holder.pid} on "):
            train(args_for(out, corpus, cache, max_steps=3, resume=True))
        with pytest.raises(RunLockedError):
            RunLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / RUN_LOCK).exists()  # the killed holder's stale lock file...
    summary = train(args_for(out, corpus, cache, max_steps=3, resume=True))  # ...does not block
    assert summary["steps"] == 3


def test_lock_is_exclusive_within_one_process_and_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match="in use by another wavegpt process"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass
    assert not (tmp_path / RUN_LOCK).exists()


# --- 3. one validation layer ---------------------------------------------------------------------


@pytest.mark.parametrize("flags, words", [
    (["--eval-interval", "0"], "--eval-interval must be a whole number of at least 1, not 0"),
    (["--save-interval", "-5"], "--save-interval must be"),
    (["--log-interval", "0"], "--log-interval must be"),
    (["--stop-at", "-1"], "--stop-at must be a whole number of at least 1, not -1"),
    (["--eval-batches", "0"], "--eval-batches must be"),
    (["--lr", "nan"], "--lr must be a number above 0"),
    (["--lr", "0"], "--lr must be a number above 0"),
    (["--warmup-steps", "-1"], "--warmup-steps must be"),
    (["--max-time", "0"], "--max-time must be"),
    (["--seed", "-3"], "--seed must be"),
    (["--vocab-size", "5"], "--vocab-size must be a whole number from 257"),
    (["--block-size", "0"], "block_size must be at least 2"),
    (["--block-size", "1000000000000"], "block_size 1,000,000,000,000 is beyond"),
    (["--dropout", "1.5"], "dropout must be in [0, 1)"),
    (["--resume", "--overwrite"], "contradict"),
])
def test_bad_training_flags_are_one_sentence_and_write_nothing(flags, words, corpus, cache, tmp_path, capsys,
                                                                monkeypatch):
    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, main, "--data", corpus, "--out", out, "--no-progress", *flags)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert words in err, err
    assert not out.exists()


def test_out_that_is_a_file_or_under_a_file(corpus, cache, tmp_path, capsys, monkeypatch):
    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    (tmp_path / "f").write_text("mine")
    for out, words in [(tmp_path / "f", "is a file, not a folder"), (tmp_path / "f" / "run", "is a file")]:
        code, _, err = run_cli(capsys, main, "--data", corpus, "--out", out, "--no-progress")
        assert code == 2 and words in err and err.count("\n") == 1, err
    assert (tmp_path / "f").read_text() == "mine"


def test_resume_with_another_model_or_preset_is_refused(run, corpus, cache, tmp_path, capsys, monkeypatch):
    import shutil

    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "r"
    shutil.copytree(run, out)
    before = snapshot(out)
    for flags, words in [(["--preset", "classic"], "--preset classic differs from the run's baseline"),
                         (["--model", "small"], "--model small differs from the run's tiny"),
                         (["--block-size", "16"], "--block-size 16 differs from the run's 32"),
                         (["--stop-at", "1", "--max-steps", "9"], "--stop-at 1 is not after the checkpoint's step 2"),
                         ([], "already reached step 2 of --max-steps 2")]:
        code, _, err = run_cli(capsys, main, "--out", out, "--resume", "--no-progress", *flags)
        assert code == 2 and words in err and err.count("\n") == 1, err
    assert snapshot(out) == before  # run.json and the banner's values were not rewritten


@pytest.mark.parametrize("field, value, words", [
    ("block_size", "128", "block_size must be a whole number, not '128'"),
    ("d_model", 32.5, "d_model must be a whole number"),
    ("dropout", "0.1", "dropout must be a finite number"),
    ("bootstrap_embedding", "yes", "bootstrap_embedding must be true or false"),
    ("n_layers", True, "n_layers must be a whole number, not True"),
    ("extra", [1], "extra must be an object"),
    ("vocab_size", 10**9, "billion parameters"),
    ("block_size", 10**13, "beyond the largest context"),
])
def test_config_json_fields_of_the_wrong_type_or_absurd_size(field, value, words, tmp_path):
    folder = make_checkpoint(tmp_path / "ckpt")
    data = json.loads((folder / "config.json").read_text())
    data[field] = value
    (folder / "config.json").write_text(json.dumps(data))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace("[", r"\[")):
        WaveGPT.from_pretrained(folder)
    assert time.perf_counter() - start < 5  # refused before allocating anything


def test_config_type_checks_in_python_too():
    with pytest.raises(ConfigError, match="num_waves must be a whole number"):
        WaveGPTConfig(num_waves="8")


def test_prompt_that_is_not_utf8(tmp_path, capsys):
    from wavegpt.cli.generate import main
    from wavegpt.generation import generate_texts, load_for_generation

    folder = make_checkpoint(tmp_path / "ckpt")
    model, tok = load_for_generation(folder)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        generate_texts(model, tok, "caf\udce9", 3)
    code, _, err = run_cli(capsys, main, "--checkpoint", folder, "--prompt", "caf\udce9", "--max-new-tokens", "2")
    assert code == 2 and "not valid UTF-8" in err and err.count("\n") == 1, err
    result = subprocess.run([sys.executable, "generate.py", "--checkpoint", str(folder), "--max-new-tokens", "2",
                             "--prompt", b"caf\xe9"], cwd=ROOT, capture_output=True)  # raw bytes on argv
    assert result.returncode == 2 and b"not valid UTF-8" in result.stderr and b"Traceback" not in result.stderr


def test_tokenizer_of_another_vocabulary_is_refused(run, tmp_path):
    import shutil

    from wavegpt.generation import load_for_generation

    folder = tmp_path / "model"
    shutil.copytree(run / "best", folder)
    load_for_generation(folder)
    own = WaveTokenizer.load(folder)
    other = WaveTokenizer.train([prose(5000, seed=99).upper()] * 3, vocab_size=own.vocab_size)
    assert other.vocab_size == own.vocab_size  # the same size: only the recorded hash tells them apart
    other.save(folder / "tokenizer.json")
    with pytest.raises(CheckpointError, match="not the tokenizer the model .* was trained with"):
        load_for_generation(folder)
    smaller = WaveTokenizer.train([prose(3000, seed=1)], vocab_size=270)
    smaller.save(folder / "tokenizer.json")
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_for_generation(folder)


def test_mistyped_checkpoint_variable_is_an_error_not_a_fallback(tmp_path, capsys, monkeypatch):
    from wavegpt.cli.generate import main

    monkeypatch.setenv("WAVEGPT_CHECKPOINT", str(tmp_path / "chekpoints"))
    code, _, err = run_cli(capsys, main, "--max-new-tokens", "2")
    assert code == 2 and "$WAVEGPT_CHECKPOINT is set to" in err and "fix or unset it" in err, err
    assert err.count("\n") == 1


def test_a_full_disk_during_a_save_is_one_sentence_and_the_last_save_survives(run, corpus, cache, tmp_path,
                                                                            monkeypatch, capsys):
    import shutil

    import wavegpt.training.run_folder as run_folder
    from wavegpt.cli.train import main

    out = tmp_path / "full"
    shutil.copytree(run, out)
    before = snapshot(out / "checkpoint")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "checkpoint" / "model.safetensors"))

    monkeypatch.setattr(run_folder, "write_model_files", no_space)
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    run_json = json.loads((out / "run.json").read_text())
    monkeypatch.setattr("wavegpt.cli.train.args_from_cli",
                        lambda argv: args_for(out, corpus, cache, max_steps=4, resume=True,
                                              overrides=run_json["overrides"]))
    code, _, err = run_cli(capsys, main)
    assert code == 2 and "the disk is full" in err and "intact" in err and err.count("\n") == 1, err
    assert snapshot(out / "checkpoint") == before
    assert WaveGPT.from_pretrained(out / "checkpoint") is not None
    assert not list(out.glob(".checkpoint.tmp-*")) and not list(out.glob(".best.tmp-*"))


def test_file_given_as_a_checkpoint_folder_says_so(tmp_path, capsys):
    from wavegpt.cli.generate import main

    (tmp_path / "model.txt").write_text("x")
    code, _, err = run_cli(capsys, main, "--checkpoint", tmp_path / "model.txt")
    assert code == 2 and "is a file, not a folder" in err, err


# --- 4. the app ---------------------------------------------------------------------------------


def test_app_symlinks_leading_outside_its_folder_are_not_listed(tmp_path):
    from wavegpt.app import WaveApp, list_checkpoints

    outside = make_checkpoint(tmp_path / "outside")
    root = tmp_path / "served"
    make_checkpoint(root / "inside")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "run").mkdir()
    (root / "run" / "best").symlink_to(outside, target_is_directory=True)
    (root / "files").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (root / "files" / name).symlink_to(outside / name)
    (root / "alias").symlink_to(root / "inside", target_is_directory=True)  # inside: fine
    assert sorted(list_checkpoints(root)) == ["alias", "inside"]
    app = WaveApp(root)
    import gradio as gr

    with pytest.raises(gr.Error):
        app.load("escape")


def test_wrong_types_sent_to_the_api_get_the_apps_sentence(tmp_path):
    import socket

    from gradio_client import Client

    from wavegpt.app import build_app

    make_checkpoint(tmp_path / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app(tmp_path).queue(default_concurrency_limit=2)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, show_error=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    try:
        cases = [(("tiny", "hi", "abc", 0.8, 0, 1.0, 1), "Max new tokens must be a whole number, not 'abc'"),
                 (("tiny", ["hi"], 5, 0.8, 0, 1.0, 1), "The prompt must be text, not list"),
                 (("tiny", "hi", 5, "hot", 0, 1.0, 1), "Temperature must be a number, not 'hot'"),
                 (({"a": 1}, "hi", 5, 0.8, 0, 1.0, 1), "is not one of the listed checkpoints"),
                 (("tiny", "hi", 5, 0.8, 0, 1.0, None), "Seed must be a whole number, not None")]
        for request, words in cases:
            with pytest.raises(Exception, match=words):
                client.predict(*request, api_name="/generate")
        assert client.predict("tiny", "hi", 3, 0.0, 0, 1.0, 1, api_name="/generate")[0] != ""  # still serving
    finally:
        client.close()
        demo.close()


def test_app_port_in_use_names_the_commands_flags(tmp_path, capsys):
    import socket

    from wavegpt.cli.app import main

    make_checkpoint(tmp_path / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_cli(capsys, main, "--checkpoint-dir", tmp_path, "--port", port)
    assert code == 2 and "--port" in err and "server_port" not in err and err.count("\n") == 1, err


# --- 5. rough edges -------------------------------------------------------------------------------


def test_a_device_as_data_is_not_called_missing(tmp_path):
    from wavegpt.data import DataError, read_text_source

    with pytest.raises(DataError, match="is not a regular file or folder"):
        read_text_source("/dev/null")


def test_utf16_text_is_read_as_text_not_mojibake(tmp_path):
    from wavegpt.data import DataWarning, read_text_source

    text = prose(2000, seed=2) + "Ünïcödé — ok\n"
    for encoding, raw in [("utf-16", text.encode("utf-16")), ("utf-16-le", text.encode("utf-16-le")),
                          ("utf-16-be", text.encode("utf-16-be")), ("utf-8-sig", text.encode("utf-8-sig"))]:
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(raw)
        with pytest.warns(DataWarning) if encoding.startswith("utf-16") else _no_warning():
            assert read_text_source(path) == text, encoding


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def test_data_warnings_are_one_line(monkeypatch):
    import warnings

    from wavegpt.cli import plain_warnings
    from wavegpt.data import DataWarning

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    plain_warnings()
    assert warnings.formatwarning("x.txt is not valid UTF-8", DataWarning, "data.py", 1) == \
        "warning: x.txt is not valid UTF-8\n"


def test_the_commands_share_one_error_wrapper(capsys):
    """cli.run_command: the project's errors are one `error:` line and exit 2, each extra mapping its own
    sentence and code, Ctrl-C exit 130; a bug is one sentence asking to report it (tests/test_reliability_error_tail.py
    holds the rest of the tail)."""
    from wavegpt.cli import run_command
    from wavegpt.data import DataError

    def exits(body, **kwargs) -> tuple[int, str]:
        def main(argv):
            with run_command(**kwargs):
                body()
        code, _, err = run_cli(capsys, main)
        return code, err

    def raising(e: BaseException):
        def body():
            raise e
        return body

    assert exits(raising(ConfigError("No such preset."))) == (2, "error: No such preset.\n")
    assert exits(raising(DataError("No text."))) == (2, "error: No text.\n")
    disk = [(OSError, lambda e: f"writing failed ({e.strerror}).", 1)]
    assert exits(raising(OSError(errno.ENOSPC, "No space left")), also=disk) == (1, "error: writing failed (No space "
                                                                                   "left).\n")
    assert exits(raising(KeyboardInterrupt())) == (130, "\nerror: interrupted.\n")
    assert exits(raising(KeyboardInterrupt()), interrupted=None) == (130, "")
    # without quiet_broken_pipe (generate's), a closed pipe is an OSError like any other
    assert exits(raising(BrokenPipeError(errno.EPIPE, "Broken pipe")), also=disk) == (1, "error: writing failed "
                                                                                         "(Broken pipe).\n")
    code, err = exits(raising(ZeroDivisionError("a bug")))  # not an input error: a bug, to be reported
    assert code == 1 and err.startswith("error: unexpected ZeroDivisionError: a bug;") and "report" in err, err
    with pytest.raises(SystemExit) as e:  # argparse's usage errors pass through untouched
        with run_command():
            raise SystemExit(2)
    assert e.value.code == 2


def test_partial_videos_of_killed_renders_are_swept(tmp_path):
    from wavegpt.viz.animation.render import _sweep_stale_parts

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".wave.{dead.pid}.0123abcd.part.mp4"
    live = tmp_path / f".wave.{os.getpid()}.89abcdef.part.mp4"
    other = tmp_path / f".other.{dead.pid}.0123abcd.part.mp4"  # another target's: not this render's business
    mine = tmp_path / ".wave.notes"
    for path in (stale, live, other, mine):
        path.write_bytes(b"x")
    _sweep_stale_parts(tmp_path / "wave.mp4")
    assert not stale.exists() and live.exists() and other.exists() and mine.exists()


def test_a_video_that_cannot_be_written_is_one_sentence():
    from wavegpt.viz.animation.render import _video_failure

    ffmpeg = OSError("[Errno 32] Broken pipe\n\nFFMPEG COMMAND:\n/usr/bin/ffmpeg -y -f rawvideo -i - out.mp4\n\n"
                     "FFMPEG STDERR OUTPUT:\n[out#0/mp4] Error writing trailer: No space left on device\n")
    message = _video_failure(ffmpeg, ROOT)
    assert "ffmpeg -y" not in message and "No space left on device" in message and "\n" not in message
    assert "is full" in _video_failure(OSError(errno.ENOSPC, "No space left on device"), ROOT)


def test_bench_replaces_only_its_own_results(tmp_path, capsys):
    from wavegpt.cli.bench import main

    (tmp_path / "results.md").write_text("my lab notes\n")
    code, _, err = run_cli(capsys, main, "--out", tmp_path, "--presets", "baseline", "--seeds", "0", "--max-tokens",
                           "1000")
    assert code == 2 and "results.md was not written by wavegpt" in err and err.count("\n") == 1, err
    assert (tmp_path / "results.md").read_text() == "my lab notes\n" and not (tmp_path / "runs").exists()
