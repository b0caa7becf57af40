"""The counters a run carries from step to step and across --resume: `TrainState`, saved as
checkpoint/trainer_state.pt (beside accelerator.save_state's optimizer, scaler and RNGs)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError

STATE_NAME = "trainer_state.pt"
LEGACY_KEYS = ("optimizer", "torch_rng")  # what checkpoints from before accelerator.save_state kept here


@dataclass
class TrainState:
    """Where the run stands: steps done, the best held-out loss, the steps skipped for a non-finite loss,
    and every process's data-order generator state (the list index is the process index)."""

    step: int = 0
    best_val: float = math.inf
    skipped_steps: int = 0
    data_rng: list[torch.Tensor] = field(default_factory=list)
    legacy: dict[str, Any] = field(default_factory=dict)  # optimizer and RNG state of an old checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "best_val": self.best_val, "skipped_steps": self.skipped_steps,
                "data_rng": [r.clone() for r in self.data_rng]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        return cls(step=data["step"], best_val=data["best_val"], skipped_steps=data["skipped_steps"],
                   data_rng=list(data["data_rng"]), legacy={k: data[k] for k in LEGACY_KEYS if k in data})

    def save(self, folder: Path) -> None:
        """trainer_state.pt, and trainer_state.json with the step and best loss for people to read."""
        torch.save(self.to_dict(), folder / STATE_NAME)
        (folder / "trainer_state.json").write_text(json.dumps({"step": self.step, "best_val": self.best_val}) + "\n")

    @classmethod
    def load(cls, folder: Path) -> TrainState:
        """trainer_state.pt, checked for what this program wrote there (a file another program saved under the
        name, or one from another version, is one sentence naming it)."""
        path = folder / STATE_NAME
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a torn or foreign file: name it, don't dump a traceback
            raise CheckpointError(f"{path} cannot be read ({type(e).__name__}).") from None
        problem = _state_problem(data)
        if problem:
            raise CheckpointError(f"{path} is not a wavegpt trainer state ({problem}).")
        return cls.from_dict(data)


def _state_problem(data: Any) -> str:
    """What is wrong with a loaded trainer_state.pt, or "" when it has the shape TrainState.save writes."""
    if not isinstance(data, dict):
        return f"it holds a {type(data).__name__}, not the run's counters"
    missing = [k for k in ("step", "best_val", "skipped_steps", "data_rng") if k not in data]
    if missing:
        return f"no {', '.join(missing)} in it"
    step, skipped = data["step"], data["skipped_steps"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        return f"step is {step!r}, not a step count of at least 1"
    if isinstance(skipped, bool) or not isinstance(skipped, int) or skipped < 0:
        return f"skipped_steps is {skipped!r}"
    if isinstance(data["best_val"], bool) or not isinstance(data["best_val"], int | float):
        return f"best_val is {data['best_val']!r}"
    rngs = data["data_rng"]
    if not isinstance(rngs, list | tuple) or not rngs or not all(
            torch.is_tensor(r) and r.dtype == torch.uint8 and r.dim() == 1 for r in rngs):
        return "data_rng is not one generator state per process"
    return ""
