"""Text generation: the Python streaming API and the generate command, on tiny random models.

Cached-vs-recomputed token equality for every variant over long runs lives in
test_model.py; here the same property is checked once more end to end, through the CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import checkpoint_texts, run_cli, tiny_config
from wavegpt import WaveGPT
from wavegpt.cli.generate import main
from wavegpt.generation import (
    MAX_NEW_TOKENS,
    NO_SHIPPED_CHECKPOINT,
    IncrementalDecoder,
    default_checkpoint,
    encode_prompt,
    generate_texts,
    load_for_generation,
    stream_text,
)
from wavegpt.tokenizer import WaveTokenizer

ROOT = Path(__file__).resolve().parent.parent
SPEED = re.compile(r"^(\d+) tokens in [\d.]+ s \([\d.]+ tokens/s, cache (on|off)\)$", re.MULTILINE)

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny checkpoint per architecture family: softmax wave attention and linear mode."""
    root = tmp_path_factory.mktemp("ckpt")
    tokenizer = WaveTokenizer.train(checkpoint_texts(), vocab_size=300)
    out = {}
    for preset in ("full_physics", "pure_wave_linear"):
        torch.manual_seed(0)
        model = WaveGPT(tiny_config(preset, vocab_size=tokenizer.vocab_size))
        model.save_pretrained(root / preset)
        tokenizer.save(root / preset / "tokenizer.json")
        out[preset] = root / preset
    model.save_pretrained(root / "no_tokenizer")
    out["no_tokenizer"] = root / "no_tokenizer"
    with torch.no_grad():
        model.head.proj.weight[0, 0] = float("nan")
    model.save_pretrained(root / "diverged")
    tokenizer.save(root / "diverged")
    out["diverged"] = root / "diverged"
    return out


@pytest.fixture(scope="module")
def loaded(checkpoints):
    return load_for_generation(checkpoints["full_physics"])


def test_cli_script_streams_text_and_reports_speed(checkpoints):
    result = subprocess.run(
        [sys.executable, "generate.py", "--checkpoint", str(checkpoints["full_physics"]), "--seed", "1",
         "--prompt", "the king", "--max-new-tokens", "20"],
        check=False, cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the king") and len(result.stdout) > len("the king\n")
    speed = SPEED.search(result.stderr)
    assert speed and speed.group(1) == "20" and speed.group(2) == "on", result.stderr


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "generate.py", "--checkpoint", str(tmp_path), "--seed", "1"],
                            check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_same_seed_same_text_and_printed_seed_reproduces(capsys, checkpoints):
    args = ("--checkpoint", str(checkpoints["full_physics"]), "--max-new-tokens", "30")
    first = run_cli(capsys, main, *args, "--seed", "7")
    assert first[0] == 0 and first[1] == run_cli(capsys, main, *args, "--seed", "7")[1]
    code, out, err = run_cli(capsys, main, *args)  # no --seed: a fresh one is printed
    seed = re.search(r"seed (\d+)", err)
    assert code == 0 and seed
    assert run_cli(capsys, main, *args, "--seed", seed.group(1))[1] == out


@pytest.mark.parametrize("preset", ["full_physics", "pure_wave_linear"])
def test_no_cache_gives_the_cached_text(capsys, checkpoints, preset):
    # 40 new tokens with block_size 32 cross the window's slide at least once.
    args = ("--checkpoint", str(checkpoints[preset]), "--seed", "3", "--max-new-tokens", "40", "--prompt", "sea")
    cached, uncached = run_cli(capsys, main, *args), run_cli(capsys, main, *args, "--no-cache")
    assert cached[0] == uncached[0] == 0
    assert cached[1] == uncached[1]
    assert "cache off" in uncached[2] and "cache on" in cached[2]


def test_stream_pieces_concatenate_to_the_decoded_tokens(loaded):
    model, tokenizer = loaded
    pieces = list(stream_text(model, tokenizer, "my lord", 60, temperature=1.0, seed=5))
    assert len(pieces) > 1
    idx = torch.tensor([tokenizer.encode("my lord")])
    tokens = model.generate(idx, 60, temperature=1.0, generator=torch.Generator().manual_seed(5))
    assert "".join(pieces) == tokenizer.decode(tokens[0, idx.shape[1]:].tolist())
    assert generate_texts(model, tokenizer, "my lord", 60, temperature=1.0, seed=5) == ["".join(pieces)]


def test_incremental_decoder_never_splits_a_character(loaded):
    _, tokenizer = loaded
    text = "漢字🙂 the king ünïcödé 🌊🌊 sea"
    ids = tokenizer.encode(text)
    assert len(ids) > len(text) / 2  # unseen characters come out as several byte tokens
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_unicode_and_empty_prompts(capsys, loaded, checkpoints):
    model, tokenizer = loaded
    assert len(generate_texts(model, tokenizer, "漢字🙂", 10, seed=0)) == 1
    assert encode_prompt(tokenizer, "") == tokenizer.encode("\n")
    assert len(generate_texts(model, tokenizer, "", 10, seed=0)) == 1
    code, out, _ = run_cli(capsys, main, "--checkpoint", str(checkpoints["full_physics"]), "--prompt", "漢字🙂",
                           "--max-new-tokens", "5", "--seed", "0")
    assert code == 0 and out.startswith("漢字🙂")
    assert run_cli(capsys, main, "--checkpoint", str(checkpoints["full_physics"]), "--prompt", "",
                   "--max-new-tokens", "5")[0] == 0


def test_temperature_zero_is_greedy_whatever_the_seed(loaded):
    model, tokenizer = loaded
    a = generate_texts(model, tokenizer, "the", 20, temperature=0, seed=1)
    assert a == generate_texts(model, tokenizer, "the", 20, temperature=0, seed=2)


def test_tiny_temperature_does_not_overflow(loaded):
    model, tokenizer = loaded
    tiny = generate_texts(model, tokenizer, "the", 10, temperature=1e-40, seed=1)
    assert tiny == generate_texts(model, tokenizer, "the", 10, temperature=0)


def test_huge_top_k_is_clipped_to_the_vocabulary(loaded):
    model, tokenizer = loaded
    clipped = generate_texts(model, tokenizer, "the", 20, temperature=1.0, top_k=10**6, seed=4)
    assert clipped == generate_texts(model, tokenizer, "the", 20, temperature=1.0, top_k=None, seed=4)


def test_several_samples(capsys, loaded, checkpoints):
    model, tokenizer = loaded
    texts = generate_texts(model, tokenizer, "war", 15, temperature=1.0, seed=9, num_samples=3)
    assert len(texts) == 3 and len(set(texts)) > 1
    assert texts[0] == generate_texts(model, tokenizer, "war", 15, temperature=1.0, seed=9)[0]
    code, out, _ = run_cli(capsys, main, "--checkpoint", str(checkpoints["full_physics"]), "--prompt", "war",
                           "--max-new-tokens", "15", "--seed", "9", "--num-samples", "3")
    assert code == 0 and out.count("\n" + "-" * 40 + "\n") == 2 and out.count("war") >= 3


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"temperature": float("nan")}, {"top_p": 1.5},
                                    {"top_p": 0.0}, {"top_k": 0}, {"max_new_tokens": 0},
                                    {"max_new_tokens": MAX_NEW_TOKENS + 1}, {"num_samples": 0},
                                    {"num_samples": 65}])
def test_bad_sampling_arguments_raise_one_sentence(loaded, kwargs):
    model, tokenizer = loaded
    call = {"max_new_tokens": 5} | kwargs
    with pytest.raises(ValueError, match=r"^[^\n]+\.$"):
        generate_texts(model, tokenizer, "the", **call)


@pytest.mark.parametrize("flags", [["--temperature", "-1"], ["--top-p", "1.5"], ["--max-new-tokens", str(10**9)],
                                   ["--num-samples", "100"], ["--top-k", "-3"], ["--device", "nonsense"]])
def test_cli_bad_sampling_flags(capsys, checkpoints, flags):
    code, out, err = run_cli(capsys, main, "--checkpoint", str(checkpoints["full_physics"]), *flags)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_checkpoints(capsys, tmp_path, checkpoints):
    for folder, words in [(tmp_path, "not a wavegpt checkpoint"), (tmp_path / "missing", "does not exist"),
                          (checkpoints["no_tokenizer"], "tokenizer.json"), (checkpoints["diverged"], "NaN")]:
        code, out, err = run_cli(capsys, main, "--checkpoint", str(folder))
        assert code == 2 and out == ""
        assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_default_checkpoint(capsys, monkeypatch, checkpoints, tmp_path):
    monkeypatch.setenv("WAVEGPT_CHECKPOINT", str(checkpoints["full_physics"]))
    assert default_checkpoint() == checkpoints["full_physics"]
    assert run_cli(capsys, main, "--max-new-tokens", "3", "--seed", "0")[0] == 0
    monkeypatch.setattr("wavegpt.generation.default_checkpoint", lambda: None)
    code, _, err = run_cli(capsys, main, "--max-new-tokens", "3")
    assert code == 2 and err == f"error: {NO_SHIPPED_CHECKPOINT}\n"


def test_help_documents_every_flag(capsys):
    code, out, _ = run_cli(capsys, main, "--help")
    assert code == 0
    for flag in ("--checkpoint", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed",
                 "--num-samples", "--no-cache", "--device"):
        assert flag in out
