"""Position as a relative phase inside the mixers, and the seed-faithful form kept loadable."""

from pathlib import Path

import pytest
import torch

from wavegpt import WaveGPT
from wavegpt.config import WaveGPTConfig
from wavegpt.model.gpt import is_wave_parameter
from wavegpt.ops import apply_rotary, naive_rotary

from .conftest import TINY_VOCAB, assert_close, tiny_config

LEGACY = Path(__file__).parent / "data" / "legacy_v0_1"


@pytest.mark.parametrize("preset", ["full_physics", "classic", "pure_wave_linear"])
def test_checkpoints_saved_before_the_change_give_the_same_logits(preset):
    """Folders written by wavegpt 0.1 (no position / temperature fields in config.json)."""
    model = WaveGPT.from_pretrained(LEGACY / preset).eval()
    expected = torch.load(LEGACY / preset / "expected_logits.pt")
    with torch.no_grad():
        logits, _ = model(expected["idx"])
    assert model.config.position == "embedding"
    assert_close(logits, expected["logits"], name=f"{preset} logits", atol=1e-6, rtol=1e-5)


def test_the_shipped_checkpoint_keeps_its_seed_faithful_settings():
    config = WaveGPTConfig.from_json(Path(__file__).parents[1] / "checkpoints" / "config.json")
    assert config.position in ("embedding", "rotary")  # whichever model is shipped, it says so


@pytest.mark.parametrize("shape", [(2, 3, 17, 24), (1, 1, 5, 7), (2, 4, 1, 48)])
@pytest.mark.parametrize("start", [0, 3, 100])
def test_fast_rotary_equals_the_complex_reference(shape, start):
    torch.manual_seed(0)
    x = torch.randn(shape)
    fast, ref = apply_rotary(x, start, 10000.0), naive_rotary(x, start, 10000.0)
    assert_close(fast, ref, name="rotary", atol=1e-5, rtol=1e-5)
    assert torch.allclose(fast.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps lengths


def test_rotated_dot_products_depend_on_the_offset_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 24), torch.randn(1, 24)
    scores = [(apply_rotary(q, t, 10000.0) @ apply_rotary(k, t - 5, 10000.0).T).item() for t in (5, 20, 90)]
    assert max(scores) - min(scores) < 1e-4


@pytest.mark.parametrize("position,same", [("rotary", True), ("none", True), ("embedding", False)])
def test_the_wave_packet_no_longer_depends_on_position(position, same):
    torch.manual_seed(0)
    emb = WaveGPT(tiny_config("full_physics", position=position)).embedding
    idx = torch.full((1, 20), 7)
    x = emb(idx)
    assert torch.allclose(x[0, 0], x[0, -1], atol=1e-6) is same


def test_interference_attention_is_not_uniform_at_init():
    """Temperature 1/sqrt(W): logits span +-sqrt(W), so attention entropy is clearly below uniform."""
    def entropy_ratio(config):
        torch.manual_seed(0)
        model = WaveGPT(config).eval()
        attn = model.blocks[0].attn
        x = torch.randn(4, 32, config.d_model)
        rows = attn.attention_weights(x)[:, :, -1]  # the last query over all 32 keys
        entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1).mean()
        return (entropy / torch.log(torch.tensor(32.0))).item()

    assert entropy_ratio(tiny_config("baseline", num_waves=24)) < 0.95
    assert entropy_ratio(tiny_config("baseline", num_waves=24, temperature_init="sqrt_waves")) > 0.99


def test_classic_rope_has_no_position_table_and_matches_the_parameter_count():
    config = WaveGPTConfig.from_preset("tiny", "classic_rope")
    model = WaveGPT(config)
    assert model.embedding.position is None
    wave = WaveGPT(WaveGPTConfig.from_preset("tiny", "full_physics")).num_parameters()
    unit = config.n_layers * (2 * config.d_model + 1)  # the MLP width moves a count in these steps
    assert abs(model.num_parameters() - wave) <= unit  # each within half a unit of the size's budget


def test_pure_wave_attention_refuses_rotary_in_one_sentence():
    with pytest.raises(ValueError, match="own position handling"):
        tiny_config("pure_wave", position="rotary")


def test_wave_parameters_get_their_own_learning_rate_and_no_decay():
    from wavegpt.training.optim import build_optimizer

    model = WaveGPT(tiny_config("baseline", wave_lr_scale=0.5, wave_param_decay=False))
    optimizer = build_optimizer(model)
    wave_group = optimizer.param_groups[-1]
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in wave_group["params"]} >= {"frequencies", "phases",
                                                                                 "amplitudes", "q_phase"}
    assert wave_group["lr_scale"] == 0.5 and wave_group["weight_decay"] == 0.0
    assert not any(is_wave_parameter(names[id(p)]) for g in optimizer.param_groups[:-1] for p in g["params"])
    seed_faithful = build_optimizer(WaveGPT(tiny_config("baseline")))
    assert len(seed_faithful.param_groups) == 2  # old optimizer states keep loading


def test_tied_head_saves_once_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = WaveGPT(tiny_config("baseline", tie_head=True)).eval()
    assert model.head.proj.weight is model.embedding.bootstrap.weight
    model.save_pretrained(tmp_path / "m")
    loaded = WaveGPT.from_pretrained(tmp_path / "m").eval()
    idx = torch.randint(0, TINY_VOCAB, (1, 12))
    assert_close(model(idx)[0], loaded(idx)[0], name="tied-head logits after loading")
    assert loaded.head.proj.weight is loaded.embedding.bootstrap.weight
