"""One attention-weights path and one sampling-settings type (issue 16).

Every mixer returns, with its own forward pass, the weights it mixed with (MixerWeights); the
plots, the app and the animation read them from there. SamplingSettings is checked once when
it is made; sample_steps reports the window it read and when it slid.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import TINY_VOCAB, tiny_config
from wavegpt import WaveGPT
from wavegpt.model.cache import DecodeCache
from wavegpt.sampling import SampleStep, SamplingSettings, sample_steps

POSITION_MIXERS = ["full_physics", "pure_wave", "pure_wave_linear", "classic", "classic_rope"]


def _values(attn, x: torch.Tensor) -> torch.Tensor:
    """The (B, H, T, D) values a mixer mixes (read from its own projections)."""
    B, T, _ = x.shape
    if hasattr(attn, "qkv"):  # classic
        return attn._qkv(x, 0)[2]
    if hasattr(attn, "_qkv"):  # interference
        return attn._qkv(x, 0)[2]
    return attn._heads(attn.v_proj(x), B, T)


@pytest.mark.parametrize("preset", POSITION_MIXERS)
def test_the_returned_weights_are_the_ones_the_mixer_mixes_with(preset):
    """weights @ v, merged and projected, is the mixer's own output: nothing is re-derived."""
    torch.manual_seed(0)
    model = WaveGPT(tiny_config(preset)).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 12, model.config.d_model)
    with torch.no_grad():
        y, mixed = attn(x, need_weights=True)
        rebuilt = attn._merge(mixed.weights @ _values(attn, x))
    assert mixed.weights.shape == (2, model.config.n_heads, 12, 12)
    assert (mixed.weights.triu(1) == 0).all()  # the future gets no weight
    torch.testing.assert_close(rebuilt, y, rtol=1e-4, atol=1e-5, msg=lambda m: f"{preset} output: {m}")
    if mixed.kind in ("softmax", "linear"):
        torch.testing.assert_close(mixed.weights.sum(-1), torch.ones(2, model.config.n_heads, 12),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("preset", POSITION_MIXERS + ["wave_network", "wave_network_modulation"])
def test_weights_change_nothing_and_leave_no_state(preset):
    """Asking for weights does not change the logits, and no module keeps anything from the call."""
    torch.manual_seed(0)
    model = WaveGPT(tiny_config(preset)).eval()
    idx = torch.randint(0, TINY_VOCAB, (1, 10))
    before = {name: set(vars(m)) for name, m in model.named_modules()}
    with torch.no_grad():
        plain, _ = model(idx)
        logits, _, mixed = model(idx, weights_of=1)
    assert torch.equal(plain, logits) and mixed.weights.shape[-2:] == (10, 10)
    assert {name: set(vars(m)) for name, m in model.named_modules()} == before
    with pytest.raises(ValueError, match="weights_of must be a layer"):
        model(idx, weights_of=2)


def test_cached_decoding_returns_the_rows_of_the_full_matrix():
    torch.manual_seed(0)
    model = WaveGPT(tiny_config("pure_wave_linear")).eval()
    idx = torch.randint(0, TINY_VOCAB, (1, 14))
    with torch.no_grad():
        *_, full = model(idx, weights_of=0)
        cache = DecodeCache(model.config.n_layers)
        model(idx[:, :6], cache=cache, weights_of=0)
        rows = [model(idx[:, t:t + 1], cache=cache, weights_of=0)[2].weights[0, :, 0] for t in range(6, 14)]
    for t, row in zip(range(6, 14), rows):
        torch.testing.assert_close(row, full.weights[0, :, t, :t + 1], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, t=t: f"row {t}: {m}")


@pytest.mark.parametrize("fields, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be between"),
    ({"temperature": -1.0}, "temperature must be 0"),
    ({"temperature": float("nan")}, "temperature must be 0"),
    ({"top_k": 0}, "top_k must be at least 1"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"num_samples": 0}, "num_samples must be between"),
    ({"repetition_penalty": 0.0}, "repetition_penalty must be a number from 0.01 to 100"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"stop": "x"}, "stop must be a list of strings"),
    ({"use_cache": "yes"}, "use_cache must be True or False"),
])
def test_settings_refuse_bad_values_in_one_sentence(fields, message):
    with pytest.raises(ValueError, match=message) as e:
        SamplingSettings(**fields)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=message):  # copies are checked too
        SamplingSettings().replace(**fields)


def test_settings_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        SamplingSettings(40)  # noqa - positional on purpose
    settings = SamplingSettings(max_new_tokens=40, stop=["\n\n"])
    assert settings.stop == ("\n\n",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.temperature = 2.0  # type: ignore[misc]
    assert SamplingSettings.of(settings, temperature=0.0).temperature == 0.0 and settings.temperature == 0.8


def test_the_sampler_reports_its_window_and_slides():
    """sample_steps says which window the model read and when it slid: block 32 restarts at 16 tokens."""
    torch.manual_seed(0)
    model = WaveGPT(tiny_config("full_physics")).eval()
    idx = torch.randint(0, TINY_VOCAB, (1, 5))
    steps: list[SampleStep] = list(sample_steps(model, idx, SamplingSettings(max_new_tokens=60, temperature=1.0),
                                                torch.Generator().manual_seed(0), weights_of=-1))
    tokens = idx[0].tolist() + [int(s.token[0]) for s in steps]
    lengths = [s.window.shape[1] for s in steps]
    assert lengths[0] == 5 and max(lengths) == 32 and [s.slid for s in steps].count(True) >= 2
    for i, s in enumerate(steps):
        n = s.window.shape[1]
        assert s.window[0].tolist() == tokens[5 + i - n:5 + i]  # the newest n tokens before this step
        assert s.weights.weights.shape[-1] == n  # the weights cover exactly that window
        if s.slid:
            assert n == 16 and lengths[i - 1] == 32


def test_cli_sampling_flags_come_from_one_helper():
    from wavegpt.cli import animate, generate

    flags = {"--temperature", "--top-k", "--top-p", "--repetition-penalty", "--seed"}
    for cli in (animate, generate):
        declared = {o for a in cli.build_parser()._actions for o in a.option_strings}
        assert flags <= declared, cli.__name__
