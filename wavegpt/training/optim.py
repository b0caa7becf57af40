"""What the optimizer does each step: the learning-rate schedule, the parameter groups, RGD or AdamW,
and the loss (cross-entropy or QFE). The classifier (wavegpt.classify) trains with the same pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ..args import TrainArgs
from ..config import WaveGPTConfig
from ..model.gpt import is_wave_parameter
from ..physics import RGD, QFELoss

NamedParameters = Iterable[tuple[str, torch.nn.Parameter]]


def cosine_lr(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr at max_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    floor = lr * min_lr_ratio
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * progress))


def lr_at(step: int, args: TrainArgs) -> float:
    """The training run's schedule (cosine_lr with the run's arguments)."""
    return cosine_lr(step, lr=args.lr, warmup_steps=args.warmup_steps, max_steps=args.max_steps,
                     min_lr_ratio=args.min_lr_ratio)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr` times its own `lr_scale` (1 when it has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def wave_share_floor(step: int, max_steps: int) -> float:
    """The bootstrap schedule: the wave share may not fall below 0.5 -> 0.9 over the run."""
    return 0.5 + 0.4 * min(1.0, step / max(1, max_steps))


def decay_groups(named: NamedParameters, weight_decay: float,
                 exempt: Callable[[str], bool] = lambda name: False) -> list[dict]:
    """Two groups, as in nanoGPT: weight decay on matrices (parameters of 2 or more dimensions that are not
    `exempt`), none on the rest."""
    named = list(named)
    decayed = [p for n, p in named if p.dim() >= 2 and not exempt(n)]
    rest = [p for n, p in named if not (p.dim() >= 2 and not exempt(n))]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, *, lr: float = TrainArgs.lr, weight_decay: float = TrainArgs.weight_decay,
                    betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.Optimizer:
    """Weight decay on matrices only (as in nanoGPT); RGD or AdamW as the model's config says
    (`optimizer`, with RGD's `resonance_strength` and `rgd_warmup_steps`).

    The wave parameters (frequencies, phases, amplitudes, phase offsets, temperatures) get a
    group of their own when the config asks for a different learning rate (`wave_lr_scale`)
    or for no weight decay on them (`wave_param_decay` false); otherwise the two groups are
    exactly the seed-faithful ones, so older optimizer states still load.
    """
    c = model.config
    named = list(model.named_parameters())
    separate = c.wave_lr_scale != 1.0 or not c.wave_param_decay
    wave = [p for n, p in named if separate and is_wave_parameter(n)]
    groups = decay_groups([(n, p) for n, p in named if not (separate and is_wave_parameter(n))], weight_decay)
    if wave:
        decay = weight_decay if c.wave_param_decay else 0.0
        groups.append({"params": wave, "weight_decay": decay, "lr_scale": c.wave_lr_scale})
    if c.optimizer == "rgd":
        return RGD(groups, lr=lr, betas=betas, resonance_strength=c.resonance_strength,
                   warmup_steps=c.rgd_warmup_steps)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def build_loss(config: WaveGPTConfig) -> QFELoss | None:
    """The preset's loss: QFE, or None for the model's own cross-entropy."""
    return QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None


def fit_state_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state saved when wave_ratio was 0-d: give each moment its parameter's (1,) shape."""
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value) and value.shape != p.shape and value.numel() == p.numel():
                state[key] = value.reshape(p.shape)
