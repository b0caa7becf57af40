"""What the trainer needs to run unchanged from one CPU to many GPUs: the Accelerator built from the
launcher's settings (`accelerate config` / `accelerate launch`) with train.py's flags overriding only
when given, FSDP on CPU processes, plain (un-prefixed, unsharded) weights for saving, a temporary
folder that every process writes into, and trackers that a resumed run continues.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, GradientAccumulationPlugin, ProjectConfiguration

from ..checkpoint import atomic_folder

COMPILE_PREFIX = "_orig_mod."  # what torch.compile's wrapper puts before every state-dict key
TRACKERS_NAME = "trackers.json"  # the tracker run ids of a run folder, so that --resume continues them
# The trackers Accelerate knows (its LoggerType values), for --report-to.
TRACKERS = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab", "trackio")


class ScaleError(ValueError):
    """A launch configuration the trainer cannot honour; the message is one sentence."""


def build_accelerator(*, cpu: bool, mixed_precision: str | None, grad_accum: int | None, compile: bool,
                      report_to: str, out: str | Path) -> Accelerator:
    """Accelerator(...) with only the settings train.py was given; everything else comes from the
    launcher's environment (ACCELERATE_MIXED_PRECISION, ACCELERATE_GRADIENT_ACCUMULATION_STEPS,
    ACCELERATE_DYNAMO_BACKEND, ACCELERATE_USE_FSDP / FSDP_*, ACCELERATE_USE_DEEPSPEED, ...)."""
    kwargs: dict[str, Any] = {}
    if mixed_precision is not None:
        kwargs["mixed_precision"] = mixed_precision
    if grad_accum is not None:  # a plugin, because a plain gradient_accumulation_steps loses to the environment
        kwargs["gradient_accumulation_plugin"] = GradientAccumulationPlugin(num_steps=grad_accum)
    if compile:
        kwargs["dynamo_backend"] = "inductor"
    if int(os.environ.get("WORLD_SIZE") or 1) <= 1:
        # train() may run several times in one Python process (wavegpt-bench, notebooks, tests): each run
        # gets an Accelerator built from its own settings, as a fresh process would (Accelerate keeps its
        # state in process-wide singletons that would otherwise refuse or ignore the new settings).
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    project = ProjectConfiguration(project_dir=str(out), logging_dir=str(Path(out) / "tensorboard"))
    accelerator = Accelerator(cpu=cpu, log_with=tracker_names(report_to), project_config=project, **kwargs)
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        # Accelerate would silently train in float32 here: no fp16 autocast or GradScaler on the CPU.
        raise ScaleError("fp16 mixed precision needs a GPU; on the CPU use bf16 (--mixed-precision bf16).")
    _fsdp_on_cpu_processes(accelerator)
    return accelerator


def _fsdp_on_cpu_processes(accelerator: Accelerator) -> None:
    """`accelerate launch --use_fsdp` with CPU processes: Accelerate ignores FSDP on CPUs (it sets up
    plain data parallelism over gloo); switch its state to FSDP so that Accelerate's own FSDP code
    shards the model over the gloo group, exactly as it does over NCCL on GPUs."""
    state = accelerator.state
    wanted = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    on_cpus = state.distributed_type == DistributedType.MULTI_CPU or (
        state.distributed_type == DistributedType.FSDP and getattr(state, "fsdp_plugin", None) is None)
    if not wanted or not on_cpus:
        return
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads the launcher's FSDP_* settings
    if plugin.fsdp_version != 2:
        raise ScaleError("FSDP on CPU processes needs FSDP2 (accelerate launch --fsdp_version 2); "
                         "FSDP1 runs only on GPUs.")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    from accelerate.state import PartialState

    # AcceleratorState copies PartialState's fields each time it is constructed: switch both.
    PartialState().distributed_type = DistributedType.FSDP
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin


def describe(accelerator: Accelerator) -> dict[str, Any]:
    """How this run actually trains, for run.json, the metrics and the summary."""
    fsdp = accelerator.state.fsdp_plugin if accelerator.distributed_type == DistributedType.FSDP else None
    dynamo = accelerator.state.dynamo_plugin.backend
    return {"precision": precision_of(accelerator), "distributed_type": str(accelerator.distributed_type.value),
            "num_processes": accelerator.num_processes, "device": str(accelerator.device.type),
            "grad_accum": accelerator.gradient_accumulation_steps,
            "dynamo_backend": str(getattr(dynamo, "value", dynamo)).lower(),
            "fsdp_version": getattr(fsdp, "fsdp_version", None)}


def precision_of(accelerator: Accelerator) -> str:
    return {"no": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}.get(accelerator.mixed_precision,
                                                                              accelerator.mixed_precision)


def check_optimizer_fits(optimizer_kind: str, accelerator: Accelerator) -> None:
    fsdp = accelerator.state.fsdp_plugin if accelerator.distributed_type == DistributedType.FSDP else None
    refuse_unshardable(optimizer_kind, accelerator.distributed_type, getattr(fsdp, "fsdp_version", None))


def refuse_unshardable(optimizer_kind: str, distributed_type: DistributedType, fsdp_version: int | None) -> None:
    """RGD gates each whole weight matrix in the 2-D Fourier domain. FSDP2 keeps every parameter's shape
    (a DTensor sharded by rows), and RGD gathers the full matrix to compute its gate; FSDP1 and DeepSpeed
    ZeRO hand the optimizer flat 1-D shards, on which the gate would never run: refuse those."""
    if optimizer_kind != "rgd":
        return
    kind = distributed_type
    if kind == DistributedType.DEEPSPEED or (kind == DistributedType.FSDP and fsdp_version != 2):
        name = "DeepSpeed" if kind == DistributedType.DEEPSPEED else "FSDP1"
        raise ScaleError(f"RGD needs whole weight matrices for its Fourier gate, but {name} gives the optimizer "
                         f"flattened shards; use FSDP2 (accelerate launch --fsdp_version 2) or an AdamW preset "
                         f"(baseline, qfe_only, classic).")


def plain_state_dict(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full, unsharded state dict with torch.compile's prefix removed, as generate, --resume,
    export and the app read it. A collective under FSDP (every process must call it); the tensors
    arrive on the main process (others may get an empty dict)."""
    state = accelerator.get_state_dict(model)
    return {_strip_compile_prefix(k): v for k, v in state.items()}


def _strip_compile_prefix(name: str) -> str:
    return name.replace(COMPILE_PREFIX, "")


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (a sharded parameter under FSDP2) gathered whole; a plain tensor as it is. Collective."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def all_finite(model: torch.nn.Module, accelerator: Accelerator) -> bool:
    """Whether every process's parameters (or shards) are finite; every process gets the same answer."""
    local = all(torch.isfinite(getattr(p, "_local_tensor", p)).all() for p in model.parameters())
    flag = torch.tensor(0.0 if local else 1.0, device=accelerator.device)
    return accelerator.reduce(flag, reduction="sum").item() == 0


@contextmanager
def shared_atomic_folder(folder: Path, accelerator: Accelerator) -> Iterator[Path]:
    """checkpoint.atomic_folder across processes: the main process makes the temporary folder, every
    process writes into it (sharded optimizer state, its own RNG state), and once all have finished
    the main process swaps it into place. On several machines the run folder must be shared storage."""
    if accelerator.num_processes == 1:
        with atomic_folder(folder) as tmp:
            yield tmp
        return
    from accelerate.utils import broadcast_object_list

    if accelerator.is_main_process:
        with atomic_folder(folder) as tmp:
            broadcast_object_list([str(tmp)])
            yield tmp
            accelerator.wait_for_everyone()
    else:
        path = [None]
        broadcast_object_list(path)
        yield Path(path[0])
        accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()  # nobody reads the folder before it is in place


def tracker_names(report_to: str) -> list[str] | str | None:
    import accelerate.utils as available

    if report_to == "auto":
        return "tensorboard" if available.is_tensorboard_available() else None
    if report_to in ("none", "all"):
        return None if report_to == "none" else report_to
    check = getattr(available, f"is_{report_to}_available", None)
    if check is not None and not check():  # Accelerate would drop it with a log line and train untracked
        hint = "pip install 'wavegpt[tensorboard]'" if report_to == "tensorboard" else f"pip install {report_to}"
        raise ScaleError(f"--report-to {report_to} needs the {report_to} package, which is not installed ({hint}).")
    return report_to


def tracker_init_kwargs(out: Path, accelerator: Accelerator, start_step: int) -> dict[str, dict[str, Any]]:
    """Per-tracker arguments that make a resumed run continue the same tracker run: TensorBoard writes
    into the same log folder and hides the events a crash left after the checkpoint's step; wandb
    resumes the run id recorded in the run folder's trackers.json at the first start."""
    names = {str(t) for t in accelerator.log_with}
    kwargs: dict[str, dict[str, Any]] = {}
    if "tensorboard" in names and start_step > 0:
        kwargs["tensorboard"] = {"purge_step": start_step + 1}
    if "wandb" in names:
        ids = read_tracker_ids(out)
        if "wandb" not in ids:  # the main process records it; the others never start a tracker
            ids["wandb"] = secrets.token_hex(4)
            if accelerator.is_main_process:
                write_tracker_ids(out, ids)
        kwargs["wandb"] = {"id": ids["wandb"], "resume": "allow", "name": out.name}
    return kwargs


def read_tracker_ids(out: Path) -> dict[str, str]:
    try:
        return json.loads((out / TRACKERS_NAME).read_text())
    except (OSError, ValueError):
        return {}


def write_tracker_ids(out: Path, ids: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{TRACKERS_NAME}.", dir=out)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(ids) + "\n")
    os.replace(tmp, out / TRACKERS_NAME)
