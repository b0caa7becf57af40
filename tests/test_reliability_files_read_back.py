"""Issue 24, class 2: files read back were trusted.

Every file wavegpt reads back (run.json, bench_result.json, trainer_state.pt, checkpoint/accelerate/,
metrics.jsonl, the classifier's config, a tokenizer) is checked for shape and content; a damaged one is one
sentence naming the file (or, for a line a crash tore off a log, skipped), never a traceback or a parser's
message that names no file. Nothing the run saved before is changed by the refusal.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import call, command, make_checkpoint, one_sentence, run_cli, snapshot


def copy_of(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def resume(capsys, out, *flags):
    from wavegpt.cli.train import main

    return run_cli(capsys, main, "--out", out, "--resume", "--max-steps", 3, "--no-progress", *flags)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"a run"', "{\"batch_size\": \"big\", \"preset\": \"baseline\"}",
                                     "{\"overrides\": [1]}", "{\"eval_batches\": -4}", "{not json", ""])
def test_run_json_that_is_not_a_runs_arguments(content, small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    (out / "run.json").write_text(content)
    before = snapshot(out / "checkpoint")
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "run.json")
    assert snapshot(out / "checkpoint") == before


@pytest.mark.parametrize("content", [{"foo": 1}, [1, 2], {"step": "two", "best_val": 1.0, "skipped_steps": 0,
                                                          "data_rng": []},
                                     {"step": -1, "best_val": 1.0, "skipped_steps": 0, "data_rng": []}])
def test_trainer_state_of_another_program(content, small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    torch.save(content, out / "checkpoint" / "trainer_state.pt")
    before = snapshot(out / "checkpoint")
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "trainer_state.pt")
    assert snapshot(out / "checkpoint") == before


def test_trainer_state_that_is_not_a_torch_file(small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    (out / "checkpoint" / "trainer_state.pt").write_bytes(b"\x00garbage")
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "trainer_state.pt")


def test_a_deleted_accelerate_state_folder(small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    shutil.rmtree(out / "checkpoint" / "accelerate")
    before = snapshot(out / "checkpoint")
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "accelerate")
    assert snapshot(out / "checkpoint") == before


def test_a_damaged_accelerate_state_file(small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    for f in (out / "checkpoint" / "accelerate").iterdir():
        f.write_bytes(b"torn")
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "accelerate")


def test_a_damaged_checkpoint_tokenizer(small_run, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = copy_of(small_run, tmp_path)
    (out / "checkpoint" / "tokenizer.json").write_text('{"model": 3}')
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "tokenizer.json")


def test_a_torn_last_metrics_line_is_skipped_by_plots(small_run, tmp_path, capsys):
    """A crash mid-write tears the last line of metrics.jsonl; wavegpt-plots used to print a JSON parser's
    message naming no file. The torn line is skipped (training's own reader already skips it)."""
    pytest.importorskip("matplotlib")
    from wavegpt.cli.plots import main

    out = copy_of(small_run, tmp_path)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 4.2, "c')
    code, _, err = run_cli(capsys, main, "--checkpoint", out, "--out", tmp_path / "plots")
    assert code == 0, err
    assert (tmp_path / "plots" / "learning_curve.png").is_file()


@pytest.mark.parametrize("line", ["[1, 2]", "not json at all", '{"step": "x", "tokens": 1, "ce": 2}'])
def test_a_damaged_metrics_line_in_the_middle_names_the_file(line, small_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from wavegpt.cli.plots import main

    out = copy_of(small_run, tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join([lines[0], line, *lines[1:]]) + "\n")
    code, _, err = run_cli(capsys, main, "--checkpoint", out, "--out", tmp_path / "plots")
    one_sentence(code, err, "metrics.jsonl")


@pytest.mark.parametrize("content", ["[]", '{"model_type": "wave_network_classifier", "labels": 3}', "{", "null"])
def test_a_classifier_config_that_is_not_one(content, tmp_path, capsys):
    from wavegpt.cli.classify import main

    rows = tmp_path / "rows.csv"
    rows.write_text("text,label\n" + "".join(f"line {i} of text,{i % 2}\n" for i in range(40)))
    out = tmp_path / "clf"
    code, _, err = run_cli(capsys, main, "train", "--data", rows, "--out", out, "--d-model", 16, "--ffn-hidden", 32,
                           "--max-len", 8, "--vocab-size", 300, "--max-steps", 1)
    assert code == 0, err
    (out / "checkpoint" / "config.json").write_text(content)
    code, _, err = run_cli(capsys, main, "eval", "--checkpoint", out, "--data", rows)
    one_sentence(code, err, "config.json")


def test_a_generation_tokenizer_that_is_not_one(tmp_path, capsys):
    from wavegpt.cli.generate import main

    folder = make_checkpoint(tmp_path / "ckpt")
    for content in ("[]", '{"model": {"type": "BPE", "vocab": 5}}', "\x00\x01"):
        (folder / "tokenizer.json").write_text(content)
        code, _, err = run_cli(capsys, main, "--checkpoint", folder, "--max-new-tokens", 2)
        one_sentence(code, err, "tokenizer.json")


BENCH = ["--presets", "baseline", "--no-controls", "--seeds", "0", "--model", "tiny", "--max-tokens", "128",
         "--batch-size", "4", "--block-size", "32", "--eval-batches", "1", "--threads", "1"]


@pytest.mark.slow
def test_bench_results_read_back_and_a_bench_killed_after_a_checkpoint_continues(corpus, cache, tmp_path):
    """bench_result.json holding a list ended in a traceback; a bench killed after a run wrote its checkpoint
    could never be continued ("--resume and --overwrite contradict each other")."""
    out = tmp_path / "bench"
    pytest.importorskip("matplotlib")
    first = command("bench", "--out", out, "--data", corpus, *BENCH, cache=cache, timeout=240)
    assert first.returncode == 0, first.stderr
    result = next((out / "runs").glob("*/bench_result.json"))
    result.write_text("[1, 2]")
    again = command("bench", "--out", out, "--data", corpus, *BENCH, cache=cache, timeout=240)
    if again.returncode != 0:
        one_sentence(again.returncode, again.stderr, "bench_result.json")
    result.unlink(missing_ok=True)  # as if killed after the run's checkpoint, before its result was written
    third = command("bench", "--out", out, "--data", corpus, *BENCH, cache=cache, timeout=240)
    assert third.returncode == 0, third.stderr
    assert isinstance(json.loads(result.read_text()), dict)


def test_bench_continues_a_run_killed_after_its_checkpoint(corpus, cache, tmp_path):
    """The light form of the test above: the run's folder holds a finished checkpoint and run.json but no
    bench_result.json (wavegpt-bench was killed between the two)."""
    import os

    from wavegpt.cli.train import main as train_main

    out = tmp_path / "bench"
    runs = out / "runs" / "baseline-seed0"
    os.environ["WAVEGPT_CACHE"] = str(cache)
    try:  # what bench's own first attempt would have trained: 1 step of the 'tiny' size, context 32, batch 4
        assert call(train_main, "--preset", "baseline", "--model", "tiny", "--seed", 0, "--max-steps", 1,
                    "--batch-size", 4, "--block-size", 32, "--eval-batches", 1, "--data", corpus, "--out", runs,
                    "--no-progress", "--report-to", "none", "--warmup-steps", 1, "--dropout", 0.1) == 0
    finally:
        os.environ.pop("WAVEGPT_CACHE")
    pytest.importorskip("matplotlib")
    (runs / "bench_result.json").write_text("[1, 2]")  # and a result file that is not one: redone or named
    result = command("bench", "--out", out, "--data", corpus, *BENCH, cache=cache, timeout=240)
    if result.returncode != 0 and "bench_result.json" in result.stderr:
        one_sentence(result.returncode, result.stderr, "bench_result.json")
        (runs / "bench_result.json").unlink()
        result = command("bench", "--out", out, "--data", corpus, *BENCH, cache=cache, timeout=240)
    assert result.returncode == 0, result.stderr
    assert "contradict" not in result.stderr
    assert isinstance(json.loads((runs / "bench_result.json").read_text()), dict)
