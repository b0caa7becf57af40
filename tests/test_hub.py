"""Hugging Face interop: a trained run exported with a generated model card and pushed (to a stand-in
that records the upload), read back by repo id through huggingface_hub's cache with HF_HUB_OFFLINE=1,
AutoTokenizer on a saved folder, config.json keys other tools add, wavegpt-eval reproducing the
figure training reported, and the ONNX export agreeing with torch."""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import torch

from tests.conftest import make_checkpoint, prose, tiny_args, tiny_config
from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.checkpoint import CheckpointError, load_config
from wavegpt.cli import eval as eval_cli
from wavegpt.cli import export as export_cli
from wavegpt.cli import generate as generate_cli
from wavegpt.config import ConfigError
from wavegpt.data import iter_eval_batches, prepare_corpus
from wavegpt.evaluation import windows
from wavegpt.tokenizer import WaveTokenizer
from wavegpt.training import train

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class RecordingHubApi:
    """Stands in for huggingface_hub.HfApi: records each repo created and each folder upload (the
    files that would be sent and their bytes) instead of talking to the Hub."""

    repos: dict[str, dict] = {}
    uploads: list[dict] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **_):
        RecordingHubApi.repos[repo_id] = {"private": private, "exist_ok": exist_ok}
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, commit_message=None, **_):
        folder = Path(folder_path)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()
                 and (allow_patterns is None or any(fnmatch.fnmatch(p.name, pat) for pat in allow_patterns))}
        RecordingHubApi.uploads.append({"repo_id": repo_id, "files": files, "message": commit_message})
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/{COMMIT}"})()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline Hub: HF_HUB_OFFLINE on, an empty cache in tmp_path, and the recording upload client."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHubApi)
    RecordingHubApi.repos, RecordingHubApi.uploads = {}, []
    return cache


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as huggingface_hub's cache holds a downloaded snapshot (refs/main -> snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained for a few steps whose evaluation covers its whole held-out split."""
    root = tmp_path_factory.mktemp("hub")
    corpus = root / "corpus.txt"
    corpus.write_text(prose(24_000, seed=3))
    out = root / "run"
    train(tiny_args(root, corpus, root / "cache", preset="full_physics", out=str(out), max_steps=6, eval_interval=6,
                    save_interval=6, eval_batches=500))
    return {"out": out, "corpus": corpus, "cache": root / "cache"}


def last_line(capsys) -> tuple[str, list[str]]:
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    return lines[-1], lines


def test_saved_folders_carry_tokenizer_and_generation_configs(run):
    for folder in (run["out"] / "best", run["out"] / "checkpoint"):
        tok = json.loads((folder / "tokenizer_config.json").read_text())
        gen = json.loads((folder / "generation_config.json").read_text())
        eot = WaveTokenizer.load(folder).eot_id
        assert tok["eos_token"] == "<|endoftext|>" and tok["model_max_length"] == 32
        assert gen["eos_token_id"] == eot and gen["pad_token_id"] == eot


def test_auto_tokenizer_gives_the_same_ids_and_an_end_of_text_token(run):
    transformers = pytest.importorskip("transformers")
    folder = run["out"] / "best"
    ours = WaveTokenizer.load(folder)
    auto = transformers.AutoTokenizer.from_pretrained(str(folder))
    text = "The king doth speak.\n  Thou art 漢字 🙂 <|endoftext|> good sir!"
    assert auto(text)["input_ids"] == ours.encode(text)  # typed <|endoftext|> stays text in both
    assert auto.eos_token == "<|endoftext|>" and auto.eos_token_id == ours.eot_id
    assert auto.decode(ours.encode(text)) == text
    generation = transformers.GenerationConfig.from_pretrained(str(folder))
    assert generation.eos_token_id == ours.eot_id


def test_config_keeps_keys_other_tools_add_and_namespaces_its_type(tmp_path):
    model = WaveGPT(tiny_config())
    model.save_pretrained(tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    assert data["model_type"] == "wavegpt.wave"
    data.update(architectures=["WaveGPT"], transformers_version="4.99.0", torch_dtype="float32")
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    loaded = WaveGPT.from_pretrained(tmp_path / "m")
    assert loaded.config.model_type == "wave"
    assert loaded.config.extra["foreign_keys"]["architectures"] == ["WaveGPT"]
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["architectures"] == ["WaveGPT"] and again["transformers_version"] == "4.99.0"
    assert "foreign_keys" not in again["extra"] and again["model_type"] == "wavegpt.wave"
    # A plain "wave" (every checkpoint written before the namespace) still loads.
    data["model_type"] = "wave"
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "m").model_type == "wave"
    with pytest.raises(ConfigError, match="model_type"):  # another library's config is refused, not guessed at
        WaveGPTConfig.from_dict({**data, "model_type": "gpt2"})


def test_export_writes_a_model_card_and_pushes_what_from_pretrained_reads_back(run, hub, tmp_path, capsys):
    ship = tmp_path / "ship"
    export_cli.main(["--run", str(run["out"]), "--out", str(ship), "--push-to-hub", "my-org/wavegpt-test",
                     "--private"])
    result = json.loads(capsys.readouterr().out)
    assert result["pushed"].endswith(COMMIT)
    card = huggingface_hub.ModelCard.load(ship / "README.md")
    assert card.data.library_name == "wavegpt" and card.data.eval_results[0].metric_type == "nats_per_char"
    figure = json.loads((ship / "config.json").read_text())["extra"]["export"]["float16"]["val_nats_per_char"]
    assert f"{figure:.3f}" in card.text or f"{card.data.eval_results[0].metric_value:.3f}" in card.text
    assert "wavegpt-train" in card.text and "--max-steps 6" in card.text and "corpus.txt" in card.text
    assert "cores" in card.text and "torch" in card.text  # the machine the run trained on
    assert RecordingHubApi.repos["my-org/wavegpt-test"]["private"] is True
    [upload] = RecordingHubApi.uploads
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "README.md"} == set(upload["files"])
    # Nothing is cached yet: offline, the repo id is a one-sentence error.
    with pytest.raises(CheckpointError, match="not a local folder"):
        WaveGPT.from_pretrained("my-org/wavegpt-test")
    fill_hub_cache(hub, "my-org/wavegpt-test", upload["files"])
    from_hub = WaveGPT.from_pretrained("my-org/wavegpt-test")
    local = WaveGPT.from_pretrained(ship)
    idx = torch.randint(0, local.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    assert torch.equal(from_hub(idx)[0], local(idx)[0])
    generate_cli.main(["--checkpoint", "my-org/wavegpt-test", "--prompt", "the king", "--max-new-tokens", "8",
                       "--seed", "1"])
    assert capsys.readouterr().out.startswith("the king")


def test_export_run_is_the_library_behind_the_command(run, tmp_path):
    """wavegpt.export.export_run with plain arguments: the figures it returns are evaluation.evaluate's on the run's
    held-out split (found through run.json), and config.json records them."""
    from wavegpt.data import prepare_corpus
    from wavegpt.evaluation import evaluate
    from wavegpt.export import export_run

    result = export_run(run["out"], tmp_path / "lib", dtype="bfloat16", eval_batches=3, batch_size=4)
    assert result.evaluated and result.source == run["out"] / "best" and set(result.figures) == {"float32",
                                                                                                 "bfloat16"}
    model = WaveGPT.from_pretrained(run["out"] / "best")
    tokenizer = WaveTokenizer.load(run["out"] / "best")
    corpus = prepare_corpus(None, str(run["corpus"]), tokenizer.vocab_size, run["cache"], tokenizer=tokenizer)
    assert result.figures["float32"] == evaluate(model, corpus, block_size=model.config.block_size, batch_size=4,
                                                 eval_batches=3)
    saved = json.loads((tmp_path / "lib" / "config.json").read_text())["extra"]["export"]
    assert saved == {"dtype": "bfloat16", **result.figures} and result.to_dict()["out"] == str(tmp_path / "lib")
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_run(run["out"], tmp_path / "other", dtype="int8")


def test_save_pretrained_pushes_with_a_generated_card(hub, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "m")
    model, tokenizer = WaveGPT.from_pretrained(checkpoint), WaveTokenizer.load(checkpoint)
    url = model.save_pretrained(tmp_path / "out", tokenizer=tokenizer, push_to_hub="me/tiny")
    assert url.endswith(COMMIT)
    [upload] = RecordingHubApi.uploads
    assert upload["repo_id"] == "me/tiny" and b"library_name: wavegpt" in upload["files"]["README.md"]
    assert upload["files"]["model.safetensors"] == (tmp_path / "out" / "model.safetensors").read_bytes()
    # A local folder of the same spelling as a repo id wins over the Hub.
    (tmp_path / "me").mkdir()
    shutil.copytree(tmp_path / "out", tmp_path / "me" / "tiny")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert WaveGPT.from_pretrained("me/tiny").config == model.config
    finally:
        os.chdir(cwd)


def test_eval_reproduces_the_figure_training_reported(run, capsys):
    reported = json.loads((run["out"] / "best" / "config.json").read_text())["extra"]
    args = ["--checkpoint", str(run["out"]), "--data", str(run["corpus"]), "--cache-dir", str(run["cache"])]
    eval_cli.main(args + ["--json"])
    final, lines = last_line(capsys)
    figures = json.loads(lines[-2])
    assert final.startswith("nats/char") and abs(float(final.split()[-1]) - reported["val_nats_per_char"]) < 1e-5
    assert abs(figures["nats_per_token"] - reported["val_nats_per_token"]) < 1e-5
    assert math.isclose(figures["perplexity"], math.exp(figures["nats_per_token"]))
    # ASCII text: one byte per character, so bits/byte is nats/char in base 2.
    assert figures["bytes"] == figures["chars"]
    assert math.isclose(figures["bits_per_byte"], figures["nats_per_char"] / math.log(2))
    eval_cli.main(args + ["--json", "--split", "all", "--stride", "16"])
    _, lines = last_line(capsys)
    whole = json.loads(lines[-2])
    assert whole["tokens"] > 9 * figures["tokens"] and whole["scored"] == whole["tokens"] - 1
    with pytest.raises(SystemExit) as e:
        eval_cli.main(args + ["--stride", "33"])
    assert e.value.code == 2 and "--stride must be a whole number from 1 to 32" in capsys.readouterr().err


def test_sliding_windows_score_every_target_once():
    for n, block, stride in [(100, 32, 32), (100, 32, 7), (33, 32, 1), (1000, 128, 64)]:
        spans = windows(n, block, stride)
        scored = [s + j + 1 for s, first in spans for j in range(first, block)]
        assert sorted(scored) == list(range(1, n))  # target i is token i, predicted once
        assert all(0 <= s <= n - 1 - block for s, _ in spans)
    # The default is the non-overlapping windows training evaluates on.
    assert [s for s, _ in windows(100, 32, None)] == [0, 32, 64]


def test_onnx_export_matches_torch_on_held_out_windows(run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from wavegpt.onnx_export import onnx_logits

    out = tmp_path / "onnx"
    export_cli.main(["--checkpoint", str(run["out"] / "best"), "--format", "onnx", "--out", str(out),
                     "--data", str(run["corpus"]), "--cache-dir", str(run["cache"])])
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_logit_difference"] < 1e-4 and "held-out" in result["checked_on"]
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    model = WaveGPT.from_pretrained(run["out"] / "best").eval()
    tokenizer = WaveTokenizer.load(run["out"] / "best")
    corpus = prepare_corpus(None, str(run["corpus"]), tokenizer.vocab_size, run["cache"], tokenizer=tokenizer)
    x, _ = next(iter_eval_batches(corpus.val, 5, model.config.block_size, 1))
    for batch in (x, x[:1, :7]):  # dynamic batch and sequence
        with torch.no_grad():
            expected = model(batch)[0].numpy()
        assert np.abs(onnx_logits(out / "model.onnx", batch) - expected).max() < 1e-4
