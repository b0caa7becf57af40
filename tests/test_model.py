"""The model family: presets, causality, fast path = reference, decoding, save/load, training."""

import json

import pytest
import torch

from wavegpt import PRESETS, SIZES, WaveGPT, WaveGPTConfig
from wavegpt.checkpoint import CheckpointError
from wavegpt.config import ConfigError, count_parameters

from .conftest import TINY_VOCAB, assert_close, tiny_config

ALL = list(PRESETS)
# Every preset covers interference / each kernel and mode / classic / classic_rope; "seed_faithful"
# is the wave model before position moved into the interference (position in the packet).
VARIANTS = ALL + ["seed_faithful"]


def variant_config(name: str, **overrides):
    if name == "seed_faithful":
        return tiny_config("full_physics", position="embedding", temperature_init="sqrt_waves", amplitude_init="unit",
                           **overrides)
    return tiny_config(name, **overrides)


def test_config_round_trips_through_json(tmp_path):
    config = WaveGPTConfig.from_preset("small", "pure_wave_linear", dropout=0.1)
    (tmp_path / "config.json").write_text(config.to_json())
    assert WaveGPTConfig.from_json(tmp_path / "config.json") == config


@pytest.mark.parametrize("size", list(SIZES))
def test_every_preset_matches_the_wave_models_parameter_count(size):
    counts = {p: count_parameters(WaveGPTConfig.from_preset(size, p)) for p in PRESETS}
    target = counts["full_physics"]
    assert all(abs(n - target) / target < 0.002 for n in counts.values()), counts


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("preset", list(PRESETS))
def test_parameter_arithmetic_matches_the_built_model(size, preset):
    """config.count_parameters predicts the parameters of every size x preset exactly; the model is built
    on the meta device (shapes only: no memory, no initialization), so even large takes a fraction of a second."""
    config = WaveGPTConfig.from_preset(size, preset)
    with torch.device("meta"):
        model = WaveGPT(config)
    assert model.num_parameters() == count_parameters(config), (size, preset)


def test_small_is_about_15m_parameters():
    model = WaveGPT(WaveGPTConfig.from_preset("small", "full_physics"))
    assert 14.5e6 < model.num_parameters() < 16e6
    assert model.num_parameters() == count_parameters(model.config)


@pytest.mark.parametrize("bad", [dict(size="huge"), dict(preset="quantum"), dict(attention="fourier"),
                                 dict(kernel="relu"), dict(n_heads=5), dict(not_a_field=1)])
def test_unknown_names_raise_one_clear_sentence(bad):
    size, preset = bad.pop("size", "tiny"), bad.pop("preset", "full_physics")
    with pytest.raises(ConfigError) as e:
        WaveGPTConfig.from_preset(size, preset, **bad)
    assert str(e.value).endswith(".") and "\n" not in str(e.value)


@pytest.mark.parametrize("preset", VARIANTS)
def test_changing_future_tokens_leaves_earlier_logits_unchanged(preset):
    torch.manual_seed(0)
    model = WaveGPT(variant_config(preset)).eval()
    idx = torch.randint(0, TINY_VOCAB, (2, 32))
    t = 13
    changed = idx.clone()
    changed[:, t + 1:] = torch.randint(0, TINY_VOCAB, (2, 32 - t - 1))
    a, _ = model(idx)
    b, _ = model(changed)
    assert_close(a[:, : t + 1], b[:, : t + 1], name="logits before the change", atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("preset", VARIANTS)
def test_fast_path_equals_reference_with_gradients(preset):
    torch.manual_seed(0)
    model = WaveGPT(variant_config(preset, chunk_size=8))
    idx = torch.randint(0, TINY_VOCAB, (4, 30))  # 120 tokens > the vocabulary: the embedding builds its table
    targets = torch.randint(0, TINY_VOCAB, (4, 30))
    results = []
    for impl in ("fast", "reference"):
        model.set_attention_impl(impl)
        model.zero_grad()
        logits, loss = model(idx, targets)
        loss.backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (lf, gf), (lr, gr) = results
    assert ((lf - lr).norm() / lr.norm()).item() < 1e-5
    for a, b in zip(gf, gr):
        assert ((a - b).norm() / b.norm().clamp_min(1e-12)).item() < 1e-4


@pytest.mark.parametrize("preset", VARIANTS)
def test_incremental_logits_equal_full_recompute(preset):
    from wavegpt.model.cache import DecodeCache

    torch.manual_seed(0)
    model = WaveGPT(variant_config(preset)).eval()
    idx = torch.randint(0, TINY_VOCAB, (2, 24))
    full, _ = model(idx)
    cache = DecodeCache(model.config.n_layers)
    steps = [model(idx[:, :10], cache=cache)[0]] + [model(idx[:, i:i + 1], cache=cache)[0] for i in range(10, 24)]
    assert_close(torch.cat(steps, dim=1), full, name="incremental logits", atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", VARIANTS)
def test_generate_with_and_without_cache_gives_the_same_tokens(preset):
    """300 new tokens from a prompt, far past block_size (32), so the window slides."""
    torch.manual_seed(0)
    model = WaveGPT(variant_config(preset))
    prompt = torch.randint(0, TINY_VOCAB, (2, 7))
    outs = [model.generate(prompt, 300, temperature=1.0, top_k=40, use_cache=c,
                           generator=torch.Generator().manual_seed(3)) for c in (True, False)]
    assert outs[0].shape == (2, 307)
    assert torch.equal(outs[0], outs[1])


def test_save_and_load_round_trip_including_tied_weights(tmp_path):
    for preset in ("full_physics", "classic"):
        model = WaveGPT(tiny_config(preset))
        model.save_pretrained(tmp_path / preset)
        loaded = WaveGPT.from_pretrained(tmp_path / preset)
        idx = torch.randint(0, TINY_VOCAB, (1, 16))
        assert_close(model(idx)[0], loaded(idx)[0], name=f"{preset} logits after loading")
        if preset == "classic":
            assert loaded.head.proj.weight is loaded.embedding.token.weight


def test_half_precision_checkpoint_loads(tmp_path):
    model = WaveGPT(tiny_config())
    model.save_pretrained(tmp_path / "m", dtype=torch.float16)
    loaded = WaveGPT.from_pretrained(tmp_path / "m")
    idx = torch.randint(0, TINY_VOCAB, (1, 16))
    assert_close(model(idx)[0], loaded(idx)[0], name="float16 checkpoint logits", atol=5e-2, rtol=1e-5)


def _corrupt(folder, how):
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    if how == "missing":
        tensors.pop("head.proj.weight")
        save_file(tensors, str(path))
    elif how == "shape":
        tensors["head.proj.weight"] = torch.zeros(3, 3)
        save_file(tensors, str(path))
    elif how == "config":
        (folder / "config.json").write_text("{not json")
    elif how == "config_field":
        data = json.loads((folder / "config.json").read_text())
        data["attention"] = "telepathy"
        (folder / "config.json").write_text(json.dumps(data))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:100])


# A missing tensor or a wrong shape changes the weight count, which the safetensors header shows before anything
# is built: both are named as weights that do not belong to config.json.
@pytest.mark.parametrize("how,words", [("missing", "do not belong together"), ("shape", "do not belong together"),
                                       ("config", "not valid JSON"), ("config_field", "attention"),
                                       ("truncated", "not a readable")])
def test_broken_checkpoint_is_named_in_one_sentence(tmp_path, how, words):
    WaveGPT(tiny_config()).save_pretrained(tmp_path / "m")
    _corrupt(tmp_path / "m", how)
    with pytest.raises(CheckpointError) as e:
        WaveGPT.from_pretrained(tmp_path / "m")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_loading_a_folder_that_is_not_a_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not a wavegpt checkpoint"):
        WaveGPT.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        WaveGPT.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize("preset", ALL)
def test_every_preset_overfits_a_tiny_batch(preset):
    from wavegpt import RGD, QFELoss

    torch.manual_seed(0)
    config = tiny_config(preset)
    model = WaveGPT(config)
    idx = torch.randint(0, TINY_VOCAB, (4, 32))
    x, y = idx[:, :-1], idx[:, 1:]
    if config.optimizer == "rgd":
        opt = RGD(model.parameters(), lr=3e-3, weight_decay=0.0, resonance_strength=config.resonance_strength,
                  warmup_steps=20)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
    first = None
    for _ in range(120):
        logits, ce = model(x, y)
        loss = loss_fn(logits, y) if loss_fn else ce
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else ce.item()
    assert torch.isfinite(ce)
    assert ce.item() < 0.3 * first, (first, ce.item())
