"""The training run's arguments: `TrainArgs`, checked when made, and the resume merge
(the flags given, then the run's run.json, then the defaults)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PRESETS, recipe_of
from .validation import InputError, check_train_values

# What a resumed run does not take back from its run.json: how this invocation runs, not what the run is.
NOT_RESUMED = ("resume", "overwrite", "stop_at")


@dataclass
class TrainArgs:
    preset: str = "baseline"  # the best wave preset at its tuned rate (docs/tuning.md)
    model: str = "tiny"
    dataset: str | None = "shakespeare"
    data: str | None = None
    out: str = "runs/wavegpt"
    max_steps: int = 2000
    stop_at: int | None = None  # end this invocation early, keeping the schedule of max_steps
    batch_size: int = 32
    grad_accum: int | None = None  # None: the launcher's (accelerate config / launch), else 1
    lr: float | None = None  # None: the preset's tuned rate (config.recipe_of)
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1337
    vocab_size: int = 1024
    overrides: dict[str, Any] = field(default_factory=dict)  # config fields (block_size, dropout...)
    eval_interval: int = 250
    eval_batches: int = 40
    save_interval: int = 500
    log_interval: int = 10
    mixed_precision: str | None = None  # no, bf16, fp16; None: the launcher's setting, else no
    compile: bool = False  # torch.compile (inductor); without it the launcher's --dynamo_backend applies
    max_time: float | None = None  # seconds: end early for equal wall-clock comparisons
    max_bad_steps: int = 5
    resume: bool = False
    overwrite: bool = False
    cpu: bool = False
    progress: bool = True
    report_to: str = "auto"  # an Accelerate tracker; auto = tensorboard when installed, else none
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.lr is None and self.preset in PRESETS:
            self.lr = recipe_of(self.preset)["lr"]
        check_train_values(self)  # the folder itself is checked when the run starts (it may change until then)


def read_run_json(out: Path) -> dict[str, Any]:
    """The arguments a run recorded in OUT/run.json, checked as a TrainArgs is (each value in its range), without
    the fields a resume does not take back; {} when OUT holds no checkpoint either (nothing to resume, which the
    run itself reports). A run.json that is gone or damaged beside a checkpoint is one sentence naming it: a
    resumed run needs its batch size, evaluation batches and schedule, and guessing them would change the run."""
    run_json = out / "run.json"
    if not run_json.is_file():
        if (out / "checkpoint").is_dir():
            raise ValueError(f"{run_json} is missing; it records the run's arguments (batch size, schedule, "
                             f"evaluation), which --resume needs: put it back, or train a new run in another --out.")
        return {}
    try:
        base = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{run_json} cannot be read ({type(e).__name__}); it holds the run's arguments.") from None
    if not isinstance(base, dict) or not isinstance(base.get("overrides", {}), dict):
        raise ValueError(f"{run_json} does not hold a run's arguments.")
    names = {f.name for f in dataclasses.fields(TrainArgs)}
    base = {k: v for k, v in base.items() if k in names and k not in NOT_RESUMED}
    try:
        TrainArgs(**base)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{run_json} does not hold a run's arguments: {e}") from None
    return base


def merge_train_args(given: dict[str, Any]) -> TrainArgs:
    """TrainArgs from the values given (flags), on --resume completed by the run's run.json, then the defaults.

    `given` holds only what was given; `overrides` (config fields) are merged key by key. A --data given
    drops the run's --dataset and the other way round."""
    given = dict(given)
    base: dict[str, Any] = {}
    out = Path(given.get("out", TrainArgs.out))
    if given.get("resume"):
        base = read_run_json(out)
    if "data" in given:
        base.pop("dataset", None)
        given["dataset"] = None
    elif "dataset" in given:
        base.pop("data", None)
    fields = {**base, **given}
    fields["overrides"] = {**base.get("overrides", {}), **given.get("overrides", {})}
    accum = fields.get("grad_accum")
    if fields.get("max_steps", TrainArgs.max_steps) < 1 or fields.get("batch_size", TrainArgs.batch_size) < 1 \
            or (accum is not None and accum < 1):  # the command's own sentence for the three step sizes
        raise InputError("--max-steps, --batch-size and --grad-accum must be at least 1.")
    names = {f.name for f in dataclasses.fields(TrainArgs)}
    return TrainArgs(**{k: v for k, v in fields.items() if k in names})
