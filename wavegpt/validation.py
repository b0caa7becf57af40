"""One place that checks the values users hand wavegpt, before anything is computed or written.

Every check ends in one sentence naming the value and what is allowed (an `InputError`, a
ValueError, which each command turns into `error: ...` and exit status 2). The training
flags are checked here (TrainArgs checks its values when made); config.json fields by
`WaveGPTConfig.validate` (each field against its annotated type, then the ranges); sampling values
by `sampling.SamplingSettings`; app inputs by `app.WaveApp`; the checkpoint environment variable by
`generation.default_checkpoint`; paths by `check_output_folder` below.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

MAX_SEED = 2**31 - 1
MAX_VOCAB = 1_000_000


class InputError(ValueError):
    """A user-supplied value wavegpt cannot use; the message is one sentence."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse(name: str, value: Any, allowed: str) -> None:
    raise InputError(f"{_flag(name)} must be {allowed}, not {value!r}.")


def whole(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int (not a bool) within [low, high]; else an InputError naming the flag."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
            or (high is not None and value > high):
        allowed = (f"from {low} to {high}" if high is not None else f"of at least {low}") if low is not None else ""
        _refuse(name, value, f"a whole number {allowed}".rstrip())
    return value


def real(value: Any, name: str, low: float | None = None, high: float | None = None, *,
         low_open: bool = False) -> float:
    """A finite int/float within the bounds (low excluded when low_open); else an InputError."""
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok and low is None:
        _refuse(name, value, "a finite number")
    if not ok:
        bracket, words = ("(", "above") if low_open else ("[", "of at least")
        _refuse(name, value, f"a number in {bracket}{low:g}, {high:g}]" if high is not None else
                f"a number {words} {low:g}")
    return float(value)


def check_train_args(args: Any) -> None:
    """The training arguments (a TrainArgs), checked before the run touches a file."""
    check_train_values(args)
    check_output_folder(args.out, "--out")


def check_train_values(args: Any) -> None:
    """The training arguments' values, without looking at the file system (TrainArgs runs it when made)."""
    whole(args.max_steps, "max_steps", 1)
    if args.stop_at is not None:
        whole(args.stop_at, "stop_at", 1)
    whole(args.batch_size, "batch_size", 1)
    if args.grad_accum is not None:  # None: the launcher's setting
        whole(args.grad_accum, "grad_accum", 1)
    if args.mixed_precision is not None and args.mixed_precision not in ("no", "bf16", "fp16"):
        raise InputError(f"--mixed-precision must be no, bf16 or fp16, not {args.mixed_precision!r}.")
    real(args.lr, "lr", 0.0, low_open=True)
    real(args.min_lr_ratio, "min_lr_ratio", 0.0, 1.0)
    whole(args.warmup_steps, "warmup_steps", 0)
    real(args.weight_decay, "weight_decay", 0.0)
    real(args.grad_clip, "grad_clip", 0.0)
    whole(args.seed, "seed", 0, MAX_SEED)
    whole(args.vocab_size, "vocab_size", 257, MAX_VOCAB)  # 256 bytes + the separator at least
    whole(args.eval_interval, "eval_interval", 1)
    whole(args.eval_batches, "eval_batches", 1)
    whole(args.save_interval, "save_interval", 1)
    whole(args.log_interval, "log_interval", 1)
    whole(args.max_bad_steps, "max_bad_steps", 1)
    if args.max_time is not None:
        real(args.max_time, "max_time", 0.0, low_open=True)
    if not isinstance(args.out, str | os.PathLike) or not str(args.out).strip():
        raise InputError(f"--out must name a folder, not {args.out!r}.")
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite contradict each other; pass one of them.")
    if not isinstance(args.overrides, dict):
        raise InputError(f"overrides must be a dict of config fields, not {type(args.overrides).__name__}.")


# The launcher's variables train.py reads (accelerate launch / torchrun / accelerate config set them): name -> the
# values allowed. Accelerate itself would take a negative accumulation and train on no batch at all.
LAUNCHER_WHOLE = {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": 1, "WORLD_SIZE": 1, "RANK": 0, "LOCAL_RANK": 0,
                  "LOCAL_WORLD_SIZE": 1, "ACCELERATE_NUM_PROCESSES": 1}
LAUNCHER_CHOICES = {"ACCELERATE_MIXED_PRECISION": ("no", "fp16", "bf16", "fp8"),
                    "ACCELERATE_DYNAMO_BACKEND": None}  # None: any name (Accelerate checks it)


def check_launcher_environment(environ: Any = None) -> None:
    """The launcher's environment values, each checked once, in one sentence naming the variable."""
    environ = os.environ if environ is None else environ
    for name, low in LAUNCHER_WHOLE.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < low:
            raise InputError(f"${name} must be a whole number of at least {low}, not {raw!r} (set by accelerate "
                             f"launch, torchrun or your shell); fix or unset it.")
    for name, allowed in LAUNCHER_CHOICES.items():
        raw = environ.get(name)
        if raw and allowed is not None and raw.lower() not in allowed:
            raise InputError(f"${name} must be one of {', '.join(allowed)}, not {raw!r}; fix or unset it.")


def check_output_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """A folder wavegpt will create or write into: not a file, and under something writable."""
    path = Path(folder)
    if os.path.lexists(path) and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder.")
    existing = path
    while not existing.exists():  # the nearest existing ancestor must be a writable folder
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InputError(f"{what} {path} cannot be created: {existing} is a file, not a folder.")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path} cannot be written: {existing} is read-only.")
    return path


def describe_os_error(e: OSError) -> str:
    """An I/O failure as a clause: the path and the reason in words ("/x/y: the disk is full")."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EISDIR: "it is a folder", errno.EEXIST: "it already exists", errno.ENOENT: "it does not exist"}
    reason = reasons.get(e.errno if e.errno is not None else -1) or (e.strerror or str(e) or type(e).__name__)
    return f"{e.filename}: {reason}" if e.filename else reason
