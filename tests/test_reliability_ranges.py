"""Issue 24, class 1: types were checked, ranges were not.

One table knows every config field's range and how the fields fit together; config.json, --set, the
presets and the classifier's config go through it, and the weights' shapes are read from the safetensors
header before anything is allocated. Every numeric flag of every command, and the launcher's environment
values, are checked once, in one sentence that names the flag or variable, before anything is written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, SMALL_TRAIN, make_checkpoint, one_sentence, prose, run_cli
from wavegpt import WaveGPT, WaveGPTConfig

# --- the config's ranges: one table, used everywhere a config is made -----------------------------------

BAD_FIELDS = [  # field, value: each is the right type but out of range or inconsistent
    ("mlp_hidden", -5), ("rope_base", 0), ("rope_base", -10.0), ("dropout", 1.0), ("dropout", -0.1),
    ("n_heads", 5), ("chunk_size", 0), ("block_size", 1), ("num_harmonics", 0), ("wave_lr_scale", 0.0),
    ("lambda_coherence", -1.0), ("rgd_warmup_steps", -1), ("resonance_strength", -0.5), ("resonance_strength", 2.0),
]


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_config_fields_out_of_range_are_refused_in_python(field, value):
    from wavegpt.config import ConfigError

    with pytest.raises(ConfigError) as e:
        WaveGPTConfig.from_preset("tiny", "full_physics", **{**dict(d_model=32, n_heads=2, num_waves=8), field: value})
    assert field in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=field):
        WaveGPTConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("mlp_hidden", -5), ("rope_base", 0), ("n_heads", 5), ("block_size", 1),
                                          ("wave_lr_scale", -1.0), ("rgd_warmup_steps", -3)])
def test_config_json_out_of_range_names_the_file_and_the_field(field, value, tmp_path):
    from wavegpt.checkpoint import CheckpointError

    folder = make_checkpoint(tmp_path / "ckpt")
    data = json.loads((folder / "config.json").read_text())
    data[field] = value
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        WaveGPT.from_pretrained(folder)
    message = str(e.value)
    assert field in message and ("config.json" in message or str(folder) in message), message


def test_weights_shapes_are_compared_from_the_header_before_anything_is_allocated(tmp_path):
    """config.json says 4 million tokens, the weights hold 300: refused at once, with a sentence naming both,
    without building the 1.6 GB model config.json describes."""
    folder = make_checkpoint(tmp_path / "ckpt")
    data = json.loads((folder / "config.json").read_text())
    data["vocab_size"] = 4_000_000
    (folder / "config.json").write_text(json.dumps(data))
    probe = ("import resource, sys, time; from wavegpt import WaveGPT\n"
             "t = time.perf_counter()\n"
             "try:\n    WaveGPT.from_pretrained(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
             "print(time.perf_counter() - t)\n"
             # VmHWM is this process's own peak; ru_maxrss would also count the pytest process it was forked from
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
             "peak = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "print(peak // 1024)\n")
    result = subprocess.run([sys.executable, "-c", probe, str(folder)], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    message, seconds, peak_mb = result.stdout.strip().splitlines()[-3:]
    assert "vocab_size" in message or "shape" in message, message
    assert "model.safetensors" in message, message
    assert float(seconds) < 3, f"took {seconds} s"
    assert int(peak_mb) < 900, f"peak resident memory {peak_mb} MB: the model was allocated before the comparison"


# --- wavegpt-train: flags, --set and the launcher's environment -------------------------------------------


@pytest.mark.parametrize("extra, words", [
    (["--set", "mlp_hidden=-5"], "mlp_hidden"),
    (["--set", "rope_base=0"], "rope_base"),
    (["--set", "n_heads=3"], "n_heads"),
    (["--block-size", "1"], "block_size"),
    (["--set", "resonance_strength=-1"], "resonance_strength"),
    (["--batch-size", "0"], "--batch-size"),
    (["--grad-accum", "0"], "--grad-accum"),
    (["--max-steps", "0"], "--max-steps"),
])
def test_train_out_of_range_values_are_one_sentence_and_write_nothing(extra, words, corpus, cache, tmp_path, capsys,
                                                                      monkeypatch):
    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, main, "--data", corpus, "--out", out, "--max-steps", 1, *SMALL_TRAIN, *extra)
    one_sentence(code, err, words)
    assert not out.exists()


def test_set_vocab_size_is_the_vocab_size_flag_or_one_sentence(corpus, cache, tmp_path, capsys, monkeypatch):
    """--set vocab_size=... used to end in a TypeError from from_preset (the field given twice)."""
    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, main, "--data", corpus, "--out", out, "--max-steps", 1, *SMALL_TRAIN,
                           "--set", "vocab_size=320")
    if code != 0:
        one_sentence(code, err, "vocab")
        assert not out.exists()
    else:
        assert WaveGPT.from_pretrained(out / "checkpoint").config.vocab_size <= 320


@pytest.mark.parametrize("variable, value", [
    ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "-3"),
    ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "0"),
    ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "two"),
    ("ACCELERATE_MIXED_PRECISION", "fp64"),
    ("WORLD_SIZE", "many"),
])
def test_launcher_environment_values_are_checked_and_named(variable, value, corpus, cache, tmp_path, capsys,
                                                            monkeypatch):
    """-3 used to train on no batch at all, report -3,072 tokens and save an untrained checkpoint as finished;
    0 ended blaming the learning rate."""
    from wavegpt.cli.train import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    monkeypatch.setenv(variable, value)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, main, "--data", corpus, "--out", out, "--max-steps", 2, *SMALL_TRAIN)
    one_sentence(code, err, variable)
    assert not (out / "checkpoint").exists()


# --- the other commands' numeric flags ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("rel-model") / "ckpt")


@pytest.mark.parametrize("flags, words", [
    (["--repetition-penalty", "1e-39"], "--repetition-penalty"),
    (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--seed", str(2**70)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--num-samples", "0"], "--num-samples"),
    (["--top-p", "0"], "--top-p"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-k", "-2"], "--top-k"),
])
def test_generate_flags(flags, words, model_folder, capsys):
    from wavegpt.cli.generate import main

    code, out, err = run_cli(capsys, main, "--checkpoint", model_folder, "--max-new-tokens", 3, *flags)
    one_sentence(code, err, words)
    assert out == ""


def test_a_tiny_repetition_penalty_never_samples_from_infinite_logits(model_folder):
    """Whatever range --repetition-penalty takes, the logits it leaves are finite (1e-39 made them inf)."""
    import torch

    from wavegpt.sampling import SamplingSettings

    try:
        SamplingSettings(max_new_tokens=3, repetition_penalty=1e-39)
    except ValueError as e:
        assert "repetition" in str(e).lower()
        return
    model = WaveGPT.from_pretrained(model_folder)
    ids = model.generate(torch.zeros(1, 2, dtype=torch.long), 3, repetition_penalty=1e-39)
    assert ids.shape == (1, 5)


@pytest.mark.parametrize("flags, words", [
    (["--stride", "0"], "--stride"),
    (["--stride", "100000"], "--stride"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_eval_flags(flags, words, model_folder, corpus, cache, capsys, monkeypatch):
    from wavegpt.cli.eval import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    code, _, err = run_cli(capsys, main, "--checkpoint", model_folder, "--data", corpus, *flags)
    one_sentence(code, err, words)


@pytest.mark.parametrize("flags, words", [
    (["--eval-batches", "0"], "--eval-batches"),
    (["--eval-batches", "-2"], "--eval-batches"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_export_flags_are_checked_before_anything_ships(flags, words, model_folder, corpus, cache, tmp_path, capsys,
                                                         monkeypatch):
    """--eval-batches 0 used to ship NaN nats/char in config.json and the model card."""
    from wavegpt.cli.export import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "ship"
    code, _, err = run_cli(capsys, main, "--checkpoint", model_folder, "--out", out, "--data", corpus, *flags)
    one_sentence(code, err, words)
    assert not out.exists()


def test_export_never_ships_a_non_finite_figure(model_folder, corpus, cache, tmp_path, capsys, monkeypatch):
    from wavegpt.cli.export import main

    monkeypatch.setenv("WAVEGPT_CACHE", str(cache))
    out = tmp_path / "ship"
    code, _, err = run_cli(capsys, main, "--checkpoint", model_folder, "--out", out, "--data", corpus,
                           "--eval-batches", 1, "--batch-size", 2, "--dtype", "float32")
    assert code == 0, err
    text = (out / "config.json").read_text() + (out / "README.md").read_text()
    assert "NaN" not in text and "nan " not in text and "Infinity" not in text


@pytest.mark.parametrize("flags, words", [
    (["--eval-batches", "0"], "--eval-batches"),
    (["--batch-size", "0"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--dropout", "1.5"], "dropout"),
    (["--lr", "nan"], "--lr"),
    (["--max-time", "-1"], "--max-time"),
    (["--seeds", str(2**70)], "--seed"),
    (["--block-size", "1"], "block"),
])
def test_bench_flags(flags, words, corpus, tmp_path, capsys):
    from wavegpt.cli.bench import main

    out = tmp_path / "bench"
    code, _, err = run_cli(capsys, main, "--out", out, "--presets", "baseline", "--no-controls", "--data", corpus,
                           "--max-tokens", 256, *flags)
    one_sentence(code, err, words)
    assert not (out / "runs").exists()


# --- wavegpt-classify ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel-labels") / "rows.csv"
    lines = prose(6000, seed=4).splitlines()
    rows = ["text,label"] + [f"{line},{'a' if i % 2 else 'b'}" for i, line in enumerate(lines[:80])]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


SMALL_CLASSIFIER = ["--d-model", "16", "--ffn-hidden", "32", "--max-len", "16", "--vocab-size", "300",
                    "--max-steps", "2", "--batch-size", "8"]


@pytest.mark.parametrize("flags, words", [
    (["--epochs", "nan", "--max-steps", "0"], "--epochs"),
    (["--epochs", "inf", "--max-steps", "0"], "--epochs"),
    (["--seed", str(2**70)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--d-model", "65536"], "--d-model"),
    (["--lr", "nan"], "--lr"),
    (["--dropout", "nan"], "--dropout"),
    (["--max-len", "0"], "--max-len"),
    (["--ffn-hidden", "0"], "--ffn-hidden"),
    (["--vocab-size", str(10**9)], "--vocab-size"),
    (["--threads", "-1"], "--threads"),
    (["--max-steps", "-1"], "--max-steps"),
])
def test_classify_flags(flags, words, labelled, tmp_path, capsys):
    from wavegpt.cli.classify import main

    out = tmp_path / "clf"
    code, _, err = run_cli(capsys, main, "train", "--data", labelled, "--out", out, *SMALL_CLASSIFIER, *flags)
    one_sentence(code, err, words)
    assert not (out / "checkpoint").exists()


def test_classifier_config_is_checked_by_the_same_ranges(labelled, tmp_path, capsys):
    """A classifier config.json whose dropout is text (or whose width is negative) is one sentence naming the
    file and the field, like a language model's."""
    from wavegpt.cli.classify import main

    out = tmp_path / "clf"
    code, _, err = run_cli(capsys, main, "train", "--data", labelled, "--out", out, *SMALL_CLASSIFIER)
    assert code == 0, err
    config = out / "checkpoint" / "config.json"
    good = json.loads(config.read_text())
    for field, value in [("dropout", "0.1"), ("d_model", -16), ("dropout", 3.0), ("labels", "ab"),
                         ("num_classes", 7), ("max_len", 0)]:
        config.write_text(json.dumps({**good, field: value}))
        code, _, err = run_cli(capsys, main, "eval", "--checkpoint", out, "--data", labelled)
        one_sentence(code, err, field, "config.json")
    shutil.rmtree(out)
