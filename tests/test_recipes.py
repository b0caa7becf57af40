"""Presets carry their tuned recipe; the fields the ablations switch; Muon and RGD's warmup fraction.

Every field added for the ablations defaults to the form that was there before (old checkpoints and old
numbers reproduce), and the parameter arithmetic that sizes the presets stays equal to the built model.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from wavegpt import WaveGPT, WaveGPTConfig
from wavegpt.args import TrainArgs
from wavegpt.bench import BenchArgs, paired, paired_table, row_lr, split_spec
from wavegpt.config import DEFAULT_LR, LEGACY_DEFAULTS, RECIPES, ConfigError, count_parameters, recipe_of
from wavegpt.training.optim import ATTENTION_SCALARS, MuonAdamW, build_optimizer, wave_share_floor

from .conftest import TINY_ARCH, TINY_VOCAB, tiny_config

ABLATIONS = [
    ("baseline", dict(qk_waves=12)),
    ("baseline", dict(scoring="dot")),
    ("baseline", dict(phase_offsets=False)),
    ("baseline", dict(head_norm=False)),
    ("baseline", dict(embedding="table")),
    ("baseline", dict(activation="relu2")),
    ("classic_rope", dict(scoring="cosine")),
    ("classic_rope", dict(activation="sin")),
    ("classic_rope", dict(head_norm=False)),
]


@pytest.mark.parametrize("preset,fields", ABLATIONS, ids=[f"{p}-{next(iter(f))}" for p, f in ABLATIONS])
def test_every_ablation_builds_and_counts_its_parameters(preset, fields):
    config = tiny_config(preset, **fields)
    model = WaveGPT(config)
    assert model.num_parameters() == count_parameters(config)
    logits, loss = model(torch.randint(0, TINY_VOCAB, (2, 16)), torch.randint(0, TINY_VOCAB, (2, 16)))
    assert torch.isfinite(loss)
    loss.backward()


def test_a_changed_part_width_is_rematched_to_the_sizes_parameter_count():
    reference = count_parameters(WaveGPTConfig.from_preset("tiny", "baseline"))
    for fields in (dict(num_waves=64), dict(qk_waves=64), dict(num_harmonics=5)):
        variant = WaveGPTConfig.from_preset("tiny", "baseline", **fields)
        assert abs(count_parameters(variant) - reference) / reference < 1e-3, fields
        assert variant.mlp_hidden != 0


def test_the_new_fields_default_to_the_form_before_them():
    """A config.json without the new fields (every checkpoint before them) builds the same model."""
    old = WaveGPTConfig.from_dict({k: v for k, v in tiny_config("baseline").to_dict().items()
                                   if k not in LEGACY_DEFAULTS})
    assert (old.qk_width, old.wave_floor_start, old.wave_floor_end, old.scalar_decay) == (old.num_waves, 0.5, 0.9, True)
    assert (old.scoring, old.phase_offsets, old.head_norm, old.embedding) == ("default", True, True, "packet")
    torch.manual_seed(0)
    a = WaveGPT(old)
    torch.manual_seed(0)
    b = WaveGPT(dataclasses.replace(old))
    x = torch.randint(0, TINY_VOCAB, (1, 12))
    assert torch.equal(a(x)[0], b(x)[0])


@pytest.mark.parametrize("fields", [dict(qk_waves=-1), dict(wave_floor_end=1.0), dict(rgd_warmup_fraction=1.5),
                                    dict(scoring="sharp"), dict(embedding="bag")])
def test_bad_ablation_values_are_one_sentence(fields):
    with pytest.raises(ConfigError):
        tiny_config("baseline", **fields)


def test_table_embedding_only_in_the_wave_model():
    with pytest.raises(ConfigError, match="table"):
        tiny_config("classic_rope", embedding="table")


def test_presets_carry_their_tuned_learning_rate():
    for preset, recipe in RECIPES.items():
        assert TrainArgs(preset=preset).lr == recipe["lr"]
    assert TrainArgs(preset="pure_wave").lr == DEFAULT_LR == recipe_of("pure_wave")["lr"]
    assert TrainArgs(preset="classic_rope", lr=1e-3).lr == 1e-3  # a flag wins


def test_bench_rows_take_their_own_rate_then_the_flag_then_the_recipe():
    assert split_spec("classic_rope+lr=0.001") == ("classic_rope", {}, {"lr": 0.001})
    assert row_lr(BenchArgs(), "classic_rope+lr=0.001") == 0.001
    assert row_lr(BenchArgs(lr=3e-3), "classic_rope") == 3e-3
    assert row_lr(BenchArgs(), "classic_rope") == recipe_of("classic_rope")["lr"]
    with pytest.raises(ConfigError, match="learning rate"):
        split_spec("baseline+lr=-1")


def test_paired_differences_per_seed():
    runs = [dict(preset=p, seed=s, val_nats_per_char=v) for p, s, v in
            [("classic_rope", 0, 1.50), ("classic_rope", 1, 1.52), ("baseline", 0, 1.49), ("baseline", 1, 1.515),
             ("classic", 0, 1.6)]]
    pairs = {p["preset"]: p for p in paired(runs, "classic_rope")}
    assert pairs["baseline"]["differences"] == pytest.approx({0: -0.01, 1: -0.005})
    assert pairs["baseline"]["lower_on_every_seed"] and not pairs["classic"]["lower_on_every_seed"]
    assert "| baseline | 0: -0.0100, 1: -0.0050 |" in paired_table(list(pairs.values()), "classic_rope")


def test_scalar_decay_false_keeps_weight_decay_off_the_attention_scalars():
    model = WaveGPT(tiny_config("baseline", scalar_decay=False))
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1)
    names = {id(p): n.rsplit(".", 1)[-1] for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if names[id(p)] in ATTENTION_SCALARS:
                assert group["weight_decay"] == 0.0
    decayed = build_optimizer(WaveGPT(tiny_config("baseline")), lr=1e-3, weight_decay=0.1).param_groups[0]
    assert any(p.dim() == 3 for p in decayed["params"])  # the seed-faithful groups decay them


def test_wave_share_floor_schedules():
    assert wave_share_floor(0, 10) == 0.5 and wave_share_floor(10, 10) == pytest.approx(0.9)
    assert wave_share_floor(7, 10, 0.5, 0.5) == 0.5
    assert wave_share_floor(7, 10, 0.0, 0.0) == 0.0


def _steps(model: WaveGPT, optimizer: torch.optim.Optimizer, n: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, TINY_VOCAB, (2, 16), generator=g)
        model(x, x)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_muon_trains_the_hidden_matrices_and_resumes_exactly():
    torch.manual_seed(0)
    model = WaveGPT(tiny_config("baseline", optimizer="muon"))
    optimizer = build_optimizer(model, lr=1e-3)
    assert isinstance(optimizer, MuonAdamW)
    muon = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    on_muon = [n for n, p in model.named_parameters() if id(p) in muon]
    assert "blocks.0.mlp.fc1.weight" in on_muon and "blocks.0.attn.q_proj.weight" in on_muon
    assert all(n.startswith("blocks.") and n.endswith(".weight") for n in on_muon)
    assert len(muon) + sum(len(g["params"]) for g in optimizer.adamw.param_groups) == len(list(model.parameters()))
    _steps(model, optimizer, 2)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    _steps(model, optimizer, 2, seed=1)
    straight = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(saved_model)
    resumed = build_optimizer(model, lr=1e-3)
    resumed.load_state_dict(saved_opt)
    _steps(model, resumed, 2, seed=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, straight[k]), k


def test_rgd_warmup_as_a_fraction_of_the_run_reaches_its_strength():
    model = WaveGPT(tiny_config("full_physics", rgd_warmup_fraction=0.25, resonance_strength=1.0))
    optimizer = build_optimizer(model, lr=1e-3, max_steps=8)
    _steps(model, optimizer, 2)
    assert optimizer.current_alpha() == pytest.approx(1.0)


def test_a_run_with_muon_and_one_with_rgd_over_a_fraction_train_resume_and_record_their_recipe(tmp_path, corpus,
                                                                                                  cache):
    """`--set optimizer="muon"` trains; RGD's resonance reaches its strength within the run (metrics.jsonl);
    the run records the lr its preset's recipe gave it."""
    import json

    from wavegpt.training import train

    from .conftest import tiny_args

    summary = train(tiny_args(tmp_path / "m", corpus, cache, max_steps=4, stop_at=2,
                              overrides=dict(TINY_ARCH, optimizer="muon")))
    assert summary["steps"] == 2
    resumed = train(tiny_args(tmp_path / "m", corpus, cache, max_steps=4, resume=True))
    assert resumed["steps"] == 4
    run = tmp_path / "m" / "run"
    assert json.loads((run / "run.json").read_text())["lr"] == recipe_of("baseline")["lr"]
    assert json.loads((run / "checkpoint" / "config.json").read_text())["extra"]["recipe"]["lr"] == \
        recipe_of("baseline")["lr"]
    train(tiny_args(tmp_path / "r", corpus, cache, preset="full_physics", max_steps=4,
                    overrides=dict(TINY_ARCH, rgd_warmup_fraction=0.5, resonance_strength=1.0)))
    lines = [json.loads(line) for line in (tmp_path / "r" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(m.get("resonance_alpha", 0) for m in lines) == pytest.approx(1.0)
