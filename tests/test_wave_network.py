"""The Wave Network mixer (arXiv 2411.02674, causal): fast form = naive reference (outputs and
gradients), padding never enters G, the paper's energy rule, causality, constant-size decoding
state equal to recomputation across window slides, parameter matching, and the animation row."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_VOCAB, assert_close, make_checkpoint, tiny_config
from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.config import ConfigError
from wavegpt.model.cache import DecodeCache
from wavegpt.ops import naive_wave_network, wave_network, wave_network_step, wave_phases
from wavegpt.ops.wave_network import EPS

OPS = ("interference", "modulation")
PRESETS = ("wave_network", "wave_network_modulation")


def views(B=2, T=19, d=12, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(B, T, d, generator=g, dtype=torch.float64), torch.randn(B, T, d, generator=g,
                                                                                  dtype=torch.float64)
    return w1.requires_grad_(grad), w2.requires_grad_(grad)


@pytest.mark.parametrize("op", OPS)
def test_fast_form_equals_the_naive_loop_with_gradients(op):
    w1, w2 = views(grad=True)
    fast, _ = wave_network(w1, w2, op)
    naive = naive_wave_network(w1, w2, op)
    assert_close(fast, naive, name=f"{op} output", atol=1e-10, rtol=1e-5)
    upstream = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * upstream).sum(), (w1, w2))
    g_naive = torch.autograd.grad((naive * upstream).sum(), (w1, w2))
    for name, a, b in zip(("w1", "w2"), g_fast, g_naive):
        assert_close(a, b, name=f"{op} gradient of {name}", atol=1e-8, rtol=1e-5)


@pytest.mark.parametrize("op", OPS)
def test_paper_formulas_in_polar_form(op):
    """|Z1 + Z2|^2 = G1^2 + G2^2 + 2 G1 G2 cos(alpha - beta); |Z1 Z2| = G1 G2 (phases add)."""
    w1, w2 = views()
    out, _ = wave_network(w1, w2, op)
    e1, e2 = torch.cumsum(w1**2, 1), torch.cumsum(w2**2, 1)
    g1, g2 = torch.sqrt(e1 + EPS), torch.sqrt(e2 + EPS)
    a, b = wave_phases(w1, e1), wave_phases(w2, e2)
    if op == "interference":
        expected = torch.sqrt(g1**2 + g2**2 + 2 * g1 * g2 * torch.cos(a - b))
    else:
        expected = g1 * g2
    assert_close(out, expected, name=f"{op} in polar form", atol=1e-8, rtol=1e-5)


def test_energy_rule_phases_of_a_text_form_a_unit_energy_vector():
    """Over the whole text, sum_j cos^2(alpha_jk) = sum_j w_jk^2 / G_k^2 = 1 in every dimension."""
    w1, _ = views(T=40)
    energy = (w1**2).sum(1, keepdim=True)
    cos = torch.cos(wave_phases(w1, energy))
    assert torch.allclose((cos**2).sum(1), torch.ones(2, 12, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_padding_never_enters_g(op):
    w1, w2 = views(B=1, T=10)
    plain, _ = wave_network(w1, w2, op)
    pad = torch.randn(1, 5, 12, dtype=torch.float64) * 100  # large values: any leak would show
    for where in ("right", "left", "middle"):
        if where == "right":
            p1, p2, keep = torch.cat([w1, pad], 1), torch.cat([w2, pad], 1), slice(0, 10)
            mask = torch.tensor([[1] * 10 + [0] * 5])
        elif where == "left":
            p1, p2, keep = torch.cat([pad, w1], 1), torch.cat([pad, w2], 1), slice(5, 15)
            mask = torch.tensor([[0] * 5 + [1] * 10])
        else:
            p1 = torch.cat([w1[:, :4], pad, w1[:, 4:]], 1)
            p2 = torch.cat([w2[:, :4], pad, w2[:, 4:]], 1)
            mask = torch.tensor([[1] * 4 + [0] * 5 + [1] * 6])
            keep = mask[0].bool()
        fast, state = wave_network(p1, p2, op, mask=mask)
        assert torch.allclose(fast[:, keep], plain, atol=1e-10), where
        assert torch.allclose(naive_wave_network(p1, p2, op, mask=mask)[:, keep], plain, atol=1e-10), where
        assert torch.allclose(state[0], (w1**2).sum(1)), where


@pytest.mark.parametrize("op", OPS)
def test_changing_later_tokens_leaves_earlier_outputs_unchanged(op):
    w1, w2 = views()
    out, _ = wave_network(w1, w2, op)
    c1, c2 = w1.clone(), w2.clone()
    c1[:, 9:] = torch.randn_like(c1[:, 9:])
    c2[:, 9:] = torch.randn_like(c2[:, 9:])
    changed, _ = wave_network(c1, c2, op)
    assert torch.equal(out[:, :9], changed[:, :9])
    assert not torch.allclose(out[:, 9:], changed[:, 9:])


@pytest.mark.parametrize("op", OPS)
def test_state_carries_a_prefill_into_token_by_token_decoding(op):
    w1, w2 = views(T=30)
    full, _ = wave_network(w1, w2, op)
    head, state = wave_network(w1[:, :12], w2[:, :12], op)
    mid, state = wave_network(w1[:, 12:20], w2[:, 12:20], op, state)  # a second chunk continues it
    steps = [head, mid]
    for t in range(20, 30):
        y, state = wave_network_step(w1[:, t:t + 1], w2[:, t:t + 1], op, state)
        steps.append(y)
        assert state[0].shape == (2, 12)  # constant size, whatever the length
    assert_close(torch.cat(steps, 1), full, name=f"{op} decoded step by step", atol=1e-10, rtol=1e-5)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_model_is_causal_and_fast_equals_reference(preset):
    torch.manual_seed(0)
    model = WaveGPT(tiny_config(preset))
    idx = torch.randint(0, TINY_VOCAB, (2, 32))
    changed = idx.clone()
    changed[:, 20:] = torch.randint(0, TINY_VOCAB, (2, 12))
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
        model.set_attention_impl("reference")
        r, _ = model(idx)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-6) and not torch.allclose(a[:, 20:], b[:, 20:])
    assert_close(a, r, name=f"{preset} fast vs reference logits", atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", PRESETS)
def test_cached_decoding_equals_recomputation_for_300_tokens(preset):
    """300 tokens from a 7-token prompt with block_size 32: the window slides about 18 times."""
    torch.manual_seed(1)
    model = WaveGPT(tiny_config(preset))
    prompt = torch.randint(0, TINY_VOCAB, (2, 7))
    outs = [model.generate(prompt, 300, temperature=1.0, use_cache=c, generator=torch.Generator().manual_seed(5))
            for c in (True, False)]
    assert torch.equal(outs[0], outs[1])
    # the decoding state is two (B, d) running energies per layer, not a growing cache
    cache = DecodeCache(model.config.n_layers)
    model.eval()
    with torch.no_grad():
        model(prompt, cache=cache)
        for _ in range(20):
            model(torch.randint(0, TINY_VOCAB, (2, 1)), cache=cache)
    layer = cache.layers[0]
    assert layer.k is None and layer.v is None
    assert [tuple(s.shape) for s in layer.state] == [(2, 32), (2, 32)]


def test_rotary_position_is_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="no queries and keys") as e:
        WaveGPTConfig.from_preset("tiny", "wave_network", position="rotary")
    assert "\n" not in str(e.value)


def test_decoding_returns_g_and_the_phases_of_the_context():
    """Weights asked for at a cached decoding step: the newest token's G and each context token's phase."""
    torch.manual_seed(0)
    model = WaveGPT(tiny_config("wave_network")).eval()
    attn = model.blocks[1].attn
    idx = torch.randint(0, TINY_VOCAB, (1, 9))
    cache = DecodeCache(model.config.n_layers)
    with torch.no_grad():
        model(idx[:, :5], cache=cache, weights_of=1)
        for t in range(5, 9):
            *_, mixed = model(idx[:, t:t + 1], cache=cache, weights_of=1)
        x = model.embedding(idx)
        x, _ = model.blocks[0](x)
        w1 = attn.proj1(model.blocks[1].ln1(x))
    energy = (w1**2).sum(1)
    assert mixed.kind == "phase" and mixed.weights.shape == (1, 2, 1, 9)  # (B, groups, new queries, context)
    assert torch.allclose(mixed.g[:, :, -1], torch.sqrt(energy).view(1, 2, 16).mean(-1), atol=1e-5)
    phases = wave_phases(w1, energy[:, None]).view(1, 9, 2, 16).mean(-1).transpose(1, 2)
    assert torch.allclose(mixed.row(), phases[0], atol=1e-5)
    assert 0 <= mixed.weights.min() and mixed.weights.max() <= math.pi


def test_animation_draws_a_wave_network_checkpoint(tmp_path: Path):
    from wavegpt.generation import load_for_generation
    from wavegpt.viz.animation.render import render_animation

    folder = make_checkpoint(tmp_path / "wn", "wave_network_modulation")
    model, tok = load_for_generation(folder)
    result = render_animation(model, tok, "the king", tokens=3, output=tmp_path / "wn.mp4", size=(320, 180),
                              seed=0)
    assert result.frames == 3 and len(result.tokens) == 3 and (tmp_path / "wn.mp4").stat().st_size > 0


def test_the_app_serves_a_wave_network_checkpoint(tmp_path: Path):
    """The app's server side streams generate.py's text and renders the animation for the preset."""
    from wavegpt.app import WaveApp
    from wavegpt.generation import generate_texts, load_for_generation

    make_checkpoint(tmp_path / "models" / "wn", "wave_network")
    app = WaveApp(tmp_path / "models")
    (name, _), = [(n, p) for n, p in app.checkpoints.items()]
    *_, text = app.generate(name, "the sea", 12, 0.8, 50, 1.0, 7)
    model, tok = load_for_generation(tmp_path / "models" / "wn")
    assert text == generate_texts(model, tok, "the sea", 12, temperature=0.8, top_k=50, seed=7)[0]
    path, summary = app.animate(dict(checkpoint=name, prompt="the sea", max_new_tokens=3, temperature=0.8, top_k=50,
                                     top_p=1.0, seed=7))
    assert path.stat().st_size > 0 and summary.startswith("3 tokens")


def test_plots_show_the_phase_pattern_of_a_wave_network_model():
    import numpy as np

    from wavegpt.viz.wave_plots import interference_matrix

    torch.manual_seed(0)
    model = WaveGPT(tiny_config("wave_network")).eval()
    matrix, what = interference_matrix(model, list(range(1, 13)), layer=-1, head=1)
    assert matrix.shape == (12, 12) and "phase" in what
    assert np.isnan(matrix[np.triu_indices(12, 1)]).all()
    low = matrix[np.tril_indices(12)]
    assert (low >= 0).all() and (low <= np.pi).all()
