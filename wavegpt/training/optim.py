"""What the optimizer does each step: the learning-rate schedule, the parameter groups, RGD or AdamW,
and the loss (cross-entropy or QFE). The classifier (wavegpt.classify) trains with the same pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ..args import TrainArgs
from ..config import DEFAULT_LR, WaveGPTConfig
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


def wave_share_floor(step: int, max_steps: int, start: float = 0.5, end: float = 0.9) -> float:
    """The bootstrap schedule: the wave share may not fall below a floor moving from start to end over the run
    (the config's wave_floor_start / wave_floor_end; 0.5 -> 0.9 is the seed-faithful schedule)."""
    return start + (end - start) * min(1.0, step / max(1, max_steps))


# Interference attention's per-head temperature and phase offsets: stored as broadcastable (H, 1, W) and
# (H, 1, 1) tensors, not matrices; `scalar_decay` false keeps weight decay off them.
ATTENTION_SCALARS = ("log_temperature", "q_phase", "k_phase")


def decay_groups(named: NamedParameters, weight_decay: float,
                 exempt: Callable[[str], bool] = lambda name: False) -> list[dict]:
    """Two groups, as in nanoGPT: weight decay on matrices (parameters of 2 or more dimensions that are not
    `exempt`), none on the rest."""
    named = list(named)
    decayed = [p for n, p in named if p.dim() >= 2 and not exempt(n)]
    rest = [p for n, p in named if not (p.dim() >= 2 and not exempt(n))]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, *, lr: float = DEFAULT_LR, weight_decay: float = TrainArgs.weight_decay,
                    betas: tuple[float, float] = (0.9, 0.95), max_steps: int | None = None) -> torch.optim.Optimizer:
    """Weight decay on matrices only (as in nanoGPT); RGD, AdamW or Muon as the model's config says
    (`optimizer`, with RGD's `resonance_strength` and its warmup: `rgd_warmup_fraction` of `max_steps`
    when both are set, else `rgd_warmup_steps`). `scalar_decay` false exempts the attention's per-head
    temperature and phase offsets from weight decay.

    The wave parameters (frequencies, phases, amplitudes, phase offsets, temperatures) get a
    group of their own when the config asks for a different learning rate (`wave_lr_scale`)
    or for no weight decay on them (`wave_param_decay` false); otherwise the two groups are
    exactly the seed-faithful ones, so older optimizer states still load.
    """
    c = model.config
    named = list(model.named_parameters())
    separate = c.wave_lr_scale != 1.0 or not c.wave_param_decay
    wave = [p for n, p in named if separate and is_wave_parameter(n)]
    scalars = (lambda name: False) if c.scalar_decay else (lambda name: name.rsplit(".", 1)[-1] in ATTENTION_SCALARS)
    groups = decay_groups([(n, p) for n, p in named if not (separate and is_wave_parameter(n))], weight_decay,
                          exempt=scalars)
    if wave:
        decay = weight_decay if c.wave_param_decay else 0.0
        groups.append({"params": wave, "weight_decay": decay, "lr_scale": c.wave_lr_scale})
    if c.optimizer == "rgd":
        warmup = c.rgd_warmup_steps
        if c.rgd_warmup_fraction > 0 and max_steps:
            warmup = max(1, round(c.rgd_warmup_fraction * max_steps))
        return RGD(groups, lr=lr, betas=betas, resonance_strength=c.resonance_strength, warmup_steps=warmup)
    if c.optimizer == "muon":
        hidden = {id(p) for n, p in named if is_hidden_matrix(n, p)}
        return MuonAdamW(groups, hidden, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """What Muon orthogonalises: the 2-D weights inside the blocks (attention and MLP projections); the
    embeddings, the head, gains, biases and wave parameters stay with AdamW, as in the modded-nanogpt speedrun."""
    return p.dim() == 2 and name.startswith("blocks.") and name.endswith(".weight") and not is_wave_parameter(name)


class MuonAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on the hidden matrices and AdamW on every other parameter, as one optimizer: one
    param_groups list for the schedule, one state_dict for checkpoints. Muon's update is scaled to AdamW's
    RMS (adjust_lr_fn "match_rms_adamw"), so both share the learning rate and the weight decay."""

    def __init__(self, groups: list[dict], hidden: set[int], *, lr: float, betas: tuple[float, float],
                 weight_decay: float):
        muon = [p for g in groups for p in g["params"] if id(p) in hidden]
        rest = [dict(g, params=[p for p in g["params"] if id(p) not in hidden]) for g in groups]
        self.muon = torch.optim.Muon(muon, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW([g for g in rest if g["params"]], lr=lr, betas=betas)
        super().__init__([p for g in groups for p in g["params"]], dict(lr=lr))
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self.muon.step(closure)
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


def build_loss(config: WaveGPTConfig) -> QFELoss | None:
    """The preset's loss: QFE, or None for the model's own cross-entropy."""
    return QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None


def fit_state_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state saved when wave_ratio was 0-d: give each moment its parameter's (1,) shape."""
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value) and value.shape != p.shape and value.numel() == p.numel():
                state[key] = value.reshape(p.shape)
