"""Issue 24, class 3: resume trusted the folder.

--resume checks the checkpoint's tokenizer against the hash the checkpoint recorded (a replaced
tokenizer.json of the same size trained on ids that meant other strings, and recorded the foreign hash as
the model's own), and refuses in one sentence when the record it needs (run.json) is gone instead of guessing
the batch size, evaluation batches and warmup from the defaults.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.conftest import SMALL_TRAIN, call, one_sentence, prose, run_cli, snapshot


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, cache):
    """Two finished 2-step runs with tokenizers of the same size trained on different text."""
    from wavegpt.cli.train import main

    root = tmp_path_factory.mktemp("rel-resume")
    runs = []
    os.environ["WAVEGPT_CACHE"] = str(cache)
    try:
        for seed, text in ((0, prose(30_000, seed=11)), (1, prose(30_000, seed=12).upper())):
            data = root / f"corpus{seed}.txt"
            data.write_text(text)
            out = root / f"run{seed}"
            assert call(main, "--data", data, "--out", out, "--max-steps", 2, "--stop-at", 1, "--save-interval", 1,
                        *SMALL_TRAIN) == 0
            runs.append(out)
    finally:
        os.environ.pop("WAVEGPT_CACHE")
    return runs


def resume(capsys, out, *flags):
    from wavegpt.cli.train import main

    return run_cli(capsys, main, "--out", out, "--resume", "--no-progress", *flags)


def test_a_replaced_tokenizer_of_the_same_size_is_refused(two_runs, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    mine, theirs = two_runs
    out = tmp_path / "run"
    shutil.copytree(mine, out)
    foreign = (theirs / "checkpoint" / "tokenizer.json").read_bytes()
    own = json.loads((out / "checkpoint" / "tokenizer.json").read_text())
    assert len(json.loads(foreign)["model"]["vocab"]) == len(own["model"]["vocab"])  # the same size
    (out / "checkpoint" / "tokenizer.json").write_bytes(foreign)
    before = snapshot(out)
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "tokenizer")
    assert snapshot(out) == before  # nothing trained, nothing recorded


def test_a_replaced_run_tokenizer_is_never_recorded_as_the_models(two_runs, tmp_path, capsys, monkeypatch, cache):
    """The run folder's own tokenizer.json (beside checkpoint/) replaced: the run continues with the
    checkpoint's tokenizer or refuses; it never records the foreign hash."""
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    mine, theirs = two_runs
    out = tmp_path / "run"
    shutil.copytree(mine, out)
    recorded = json.loads((out / "checkpoint" / "config.json").read_text())["extra"]["tokenizer_vocab_sha256"]
    shutil.copy(theirs / "tokenizer.json", out / "tokenizer.json")
    code, _, err = resume(capsys, out)
    if code != 0:
        one_sentence(code, err, "tokenizer")
    else:
        for name in ("checkpoint", "best"):
            extra = json.loads((out / name / "config.json").read_text())["extra"]
            assert extra["tokenizer_vocab_sha256"] == recorded, name


def test_resume_without_run_json_refuses_instead_of_guessing(two_runs, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    shutil.copytree(two_runs[0], out)
    (out / "run.json").unlink()
    before = snapshot(out)
    code, _, err = resume(capsys, out)
    one_sentence(code, err, "run.json")
    assert snapshot(out) == before


def test_resume_continues_when_the_folder_is_whole(two_runs, tmp_path, capsys, monkeypatch, cache):
    """The checks above refuse only damage: an untouched run resumes to its end, keeping its settings."""
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    shutil.copytree(two_runs[0], out)
    code, _stdout, err = resume(capsys, out)
    assert code == 0, err
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    run = json.loads((out / "run.json").read_text())
    assert run["batch_size"] == 4 and run["eval_batches"] == 1 and run["warmup_steps"] == 1


def test_a_checkpoint_config_swapped_for_another_models_is_refused(two_runs, tmp_path, capsys, monkeypatch, cache):
    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    shutil.copytree(two_runs[0], out)
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    config["d_model"] = 64
    config["n_heads"] = 2
    (out / "checkpoint" / "config.json").write_text(json.dumps(config))
    code, _, err = resume(capsys, out)
    one_sentence(code, err)
    assert "model.safetensors" in err or "config.json" in err or "d-model" in err or "d_model" in err, err
