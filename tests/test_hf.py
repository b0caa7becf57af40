"""A wavegpt folder is a transformers model: the Auto classes load every preset with WaveGPT's logits, generate()
gives wavegpt's greedy tokens (cached, uncached, past block_size, left-padded batches), beam search reorders the
cache, pipeline() prints wavegpt's text, save_pretrained writes a folder wavegpt reads, lm_eval's `wavegpt` model
scores the local task like wavegpt-eval, and ONNX export of a folder whose corpus cannot be had checks random
windows. Offline: tiny random models and corpora made here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, make_checkpoint, prose, run_cli

pytest.importorskip("transformers")
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, pipeline  # noqa: E402

import wavegpt.hf  # noqa: E402,F401
from wavegpt import WaveGPT  # noqa: E402
from wavegpt.sampling import SamplingSettings, sample_steps  # noqa: E402

PROMPTS = ([5, 6, 7], list(range(1, 12)))  # two prompt lengths: left padding in a batch
NEW = 40  # past the tiny models' block_size of 32: the window slides
NO_EOS = dict(eos_token_id=None, pad_token_id=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    cache = {}

    def folder(preset: str) -> Path:
        if preset not in cache:
            cache[preset] = make_checkpoint(tmp_path_factory.mktemp(preset) / "model", preset)
        return cache[preset]

    return folder


def greedy(model: WaveGPT, prompt: list[int], n: int = NEW) -> list[int]:
    settings = SamplingSettings(max_new_tokens=n, temperature=0.0)
    return [int(step.token[0]) for step in sample_steps(model, torch.tensor([prompt]), settings)]


def padded(prompts=PROMPTS) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@pytest.mark.parametrize("preset", ["baseline", "classic", "classic_rope", "pure_wave", "pure_wave_linear",
                                    "wave_network", "wave_network_modulation"])
def test_auto_classes_load_a_folder_with_wavegpts_logits(folders, preset):
    folder = folders(preset)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == json.loads((folder / "config.json").read_text())["model_type"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(AutoModel.from_pretrained(folder), wavegpt.hf.WaveGPTForCausalLM)
    reference = WaveGPT.from_pretrained(folder).eval()
    x = torch.randint(0, reference.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x).logits - reference(x)[0]).abs().max().item()
    assert diff <= 1e-4, f"{preset}: logits differ by {diff:.2e}"


@pytest.mark.parametrize("preset", ["baseline", "classic_rope", "pure_wave_linear", "wave_network"])
def test_generate_gives_wavegpts_greedy_tokens_cached_uncached_and_left_padded(folders, preset):
    folder = folders(preset)
    model, reference = AutoModelForCausalLM.from_pretrained(folder), WaveGPT.from_pretrained(folder).eval()
    expected = [greedy(reference, p) for p in PROMPTS]
    for use_cache in (True, False):
        for prompt, want in zip(PROMPTS, expected):
            out = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, do_sample=False, use_cache=use_cache,
                                 **NO_EOS)
            assert out[0, len(prompt):].tolist() == want, (preset, use_cache, prompt)
        ids, mask = padded()
        out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, use_cache=use_cache,
                             **NO_EOS)
        assert [row[ids.shape[1]:] for row in out.tolist()] == expected, (preset, use_cache, "left padding")


def test_beam_search_and_sampling_reorder_and_carry_the_cache(folders):
    folder = folders("pure_wave_linear")  # a recurrent state, not only keys and values, is reordered
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = padded()
    beams = dict(max_new_tokens=NEW, num_beams=3, num_return_sequences=2, do_sample=False, **NO_EOS)
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **beams)
    assert torch.equal(cached, model.generate(ids, attention_mask=mask, use_cache=False, **beams))
    alone = model.generate(torch.tensor([PROMPTS[0]]), **beams)
    assert torch.equal(cached[:2, ids.shape[1]:], alone[:, len(PROMPTS[0]):])  # padding changed nothing
    draws = []
    for use_cache in (True, False):
        torch.manual_seed(3)
        draws.append(model.generate(ids, attention_mask=mask, do_sample=True, top_k=10, max_new_tokens=NEW,
                                    use_cache=use_cache, **NO_EOS))
    assert torch.equal(*draws) and draws[0].shape == (2, ids.shape[1] + NEW)


def test_padding_between_tokens_is_refused_in_one_sentence(folders):
    model = AutoModelForCausalLM.from_pretrained(folders("baseline"))
    with pytest.raises(ValueError, match="zeros between ones"):
        model(torch.tensor([[1, 2, 3]]), attention_mask=torch.tensor([[1, 0, 1]]))
    with pytest.raises(ValueError, match="left padding only"):
        model.generate(torch.tensor([[1, 2, 3]]), attention_mask=torch.tensor([[1, 1, 0]]), max_new_tokens=2)


def test_pipeline_prints_the_text_wavegpt_generates(folders):
    from wavegpt.generation import generate_texts, load_for_generation

    folder = folders("baseline")
    text = pipeline("text-generation", model=str(folder))("the king", max_new_tokens=NEW, do_sample=False)
    reference, tokenizer = load_for_generation(folder)
    assert text[0]["generated_text"] == "the king" + generate_texts(reference, tokenizer, "the king", NEW,
                                                                    temperature=0)[0]


def test_save_pretrained_writes_a_folder_wavegpt_reads_and_old_folders_still_load(folders, tmp_path):
    folder = folders("classic")
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.save_pretrained(tmp_path / "saved", tokenizer=folder / "tokenizer.json")
    model.save_pretrained(tmp_path / "saved")  # saved over: its tokenizer files are kept
    assert (tmp_path / "saved" / "tokenizer.json").is_file()
    x = torch.randint(0, model.config.vocab_size, (1, 20))
    with torch.no_grad():
        assert torch.equal(WaveGPT.from_pretrained(tmp_path / "saved").eval()(x)[0], model(x).logits)
        legacy = tmp_path / "legacy"  # written before model_type was namespaced
        legacy.mkdir()
        data = json.loads((folder / "config.json").read_text())
        (legacy / "config.json").write_text(json.dumps({**data, "model_type": "classic"}))
        (legacy / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        assert torch.equal(AutoModelForCausalLM.from_pretrained(legacy)(x).logits, model(x).logits)


def test_lm_eval_command_scores_the_local_task_as_wavegpt_eval_does(folders, tmp_path):
    from wavegpt.data import prepare_corpus
    from wavegpt.evaluation import evaluate_split
    from wavegpt.generation import load_for_generation

    folder = folders("baseline")
    text = tmp_path / "text.txt"
    text.write_text(prose(20_000, seed=4))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "WAVEGPT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "wavegpt.hf.lm_eval", "--model", "wavegpt", "--model_args",
           f"pretrained={folder},stride=16", "--device", "cpu", "--batch_size", "16", "--tasks", "wavegpt_shakespeare",
           "--include_path", str(REPO / "wavegpt/hf/tasks"), "--metadata", json.dumps({"data": str(text)}),
           "--limit", "1", "--output_path", str(tmp_path / "out")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wavegpt_shakespeare" in done.stdout and "bits_per_byte" in done.stdout
    [results] = (tmp_path / "out").rglob("results_*.json")
    figure = json.loads(results.read_text())["results"]["wavegpt_shakespeare"]["bits_per_byte,none"]

    model, tokenizer = load_for_generation(folder)
    corpus = prepare_corpus(None, str(text), tokenizer.vocab_size, tmp_path / "cache", tokenizer=tokenizer)
    result = evaluate_split(model, corpus, "val", stride=16)
    with torch.no_grad():  # lm-eval also scores the first token, after the end-of-text prefix
        first = -torch.log_softmax(model(torch.tensor([[tokenizer.eot_id]]))[0][0, 0], -1)[int(corpus.val[0])]
    total = result.nats_per_token * result.scored + float(first)
    assert figure == pytest.approx(total / result.bytes / math.log(2), rel=1e-5)


def test_the_task_file_registers_the_model_for_plain_lm_eval():
    """`lm_eval --tasks .../wavegpt_shakespeare.yaml` reads the file (and so imports its module) before it looks the
    model up: that is what makes plain `lm_eval --model wavegpt` work."""
    from lm_eval.api.registry import get_model
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(REPO / "wavegpt/hf/tasks/wavegpt_shakespeare.yaml", resolve_func=True)
    assert config["task"] == "wavegpt_shakespeare" and get_model("wavegpt").__name__ == "WaveGPTLM"


def test_lm_eval_model_generates_and_scores_in_process(folders):
    from lm_eval.api.instance import Instance

    from wavegpt.generation import generate_texts, load_for_generation
    from wavegpt.hf.lm_eval import WaveGPTLM

    folder = folders("wave_network")
    lm = WaveGPTLM(pretrained=str(folder), batch_size=2)
    prompts = ["the king", "good sir the wave light sea night day"]
    until = {"until": ["queen"], "max_gen_toks": NEW, "do_sample": False}
    texts = lm.generate_until([Instance("generate_until", {}, (p, until), i) for i, p in enumerate(prompts)])
    reference, tokenizer = load_for_generation(folder)
    assert texts == [generate_texts(reference, tokenizer, p, NEW, temperature=0, stop=["queen"])[0] for p in prompts]
    [(ll, _)] = lm.loglikelihood([Instance("loglikelihood", {}, ("the king", " doth"), 0)])
    ids = tokenizer.encode("the king doth")
    n = len(tokenizer.encode(" doth"))
    with torch.no_grad():
        logp = torch.log_softmax(reference(torch.tensor([ids]))[0][0], -1)
    assert ll == pytest.approx(sum(float(logp[len(ids) - n - 1 + i, ids[len(ids) - n + i]]) for i in range(n)),
                               abs=1e-4)


def test_onnx_export_checks_random_windows_when_the_configs_corpus_cannot_be_had(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from wavegpt import data
    from wavegpt.cli import export as export_cli

    folder = make_checkpoint(tmp_path / "model", "baseline", extra={"data": "shakespeare"})

    def offline(url, dest):  # what urllib raises without a network
        raise OSError("Name or service not known")

    monkeypatch.setattr(data, "_download", offline)
    monkeypatch.setenv("WAVEGPT_CACHE", str(tmp_path / "empty-cache"))
    code, out, err = run_cli(capsys, export_cli.main, "--checkpoint", folder, "--format", "onnx", "--out",
                             tmp_path / "onnx")
    assert code == 0, err
    assert json.loads(out)["checked_on"].endswith("random windows of 32 tokens")
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "Could not download TinyShakespeare" in notes[0] and "random windows" in notes[0]
    code, _, err = run_cli(capsys, export_cli.main, "--checkpoint", folder, "--format", "onnx", "--out",
                           tmp_path / "onnx2", "--dataset", "shakespeare")
    assert code != 0 and "Could not download TinyShakespeare" in err  # asked for by name: no fallback
