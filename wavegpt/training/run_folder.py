"""The run folder (`--out`) and what lands in it, by the ownership rule (wavegpt/ownership.py):

  checkpoint/      the latest model folder plus accelerate/ (accelerator.save_state: optimizer,
                   GradScaler, every process's RNGs) and trainer_state.pt (training/state.py): what
                   --resume continues from
  best/            the model folder with the best held-out validation loss so far
  metrics.jsonl    one JSON object per logged step; learning_curve.png at the end
  run.json         the training arguments, and under "accelerate" how the run trained (precision,
                   processes, FSDP, compile)
  tensorboard/     TensorBoard events when it is installed (see --report-to)

Every folder is written atomically (checkpoint.atomic_folder), the main process holds the run lock
(ownership.RunLock) for the whole run, and only the run's own entries are ever replaced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from ..args import TrainArgs
from ..checkpoint import atomic_folder, write_model_files
from ..config import WaveGPTConfig
from ..data import Corpus
from ..model.gpt import WaveGPT
from ..ownership import RUN_LOCK, RUN_MARKER, RunLock, RunLockedError, holds_run, is_run_folder, run_owned
from .scaling import all_finite, plain_state_dict, shared_atomic_folder
from .state import STATE_NAME, TrainState

ACCELERATE_STATE = "accelerate"  # accelerator.save_state's folder inside checkpoint/: optimizer, scaler, RNGs
RUN_MARKER_TEXT = '{"created_by": "wavegpt", "kind": "training run"}\n'


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message is one sentence."""


def restore_interrupted_saves(out: Path) -> None:
    """A kill between atomic_folder's two renames leaves `<name>.old` and no `<name>`: put the previous
    version back before anything looks for it (as checkpoint.resolve_checkpoint does for readers).
    A kill mid-save leaves a `.<name>.tmp-*` folder that nothing will read: delete it."""
    for name in ("checkpoint", "best"):
        old = out / f"{name}.old"
        if old.is_dir() and not (out / name).exists():
            os.replace(old, out / name)
        for tmp in out.glob(f".{name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def prepare_out(out: Path, args: TrainArgs, is_main: bool) -> None:
    """Decide what --out may hold. The rule (wavegpt/ownership.py): only what a wavegpt run wrote is ever
    replaced; --overwrite deletes the run's own entries and leaves every other file where it is."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file, not a folder.")
    is_run = is_run_folder(out)
    if args.resume:
        if not (out / "checkpoint" / STATE_NAME).is_file():
            raise TrainError(f"There is no checkpoint to resume in {out} (expected {out / 'checkpoint'}).")
        if not (out / "run.json").is_file():  # the run's batch size, schedule and evaluation: never guessed
            raise TrainError(f"{out / 'run.json'} is missing; it records the run's arguments, which --resume needs: "
                             f"put it back, or train a new run in another --out.")
    elif is_run and holds_run(out) and not args.overwrite:
        raise TrainError(f"Output folder {out} already holds a run; pass --resume to continue it or "
                         f"--overwrite to replace it.")
    elif not is_run and out.is_dir() and any(p.name not in (RUN_LOCK, RUN_MARKER) for p in out.iterdir()):
        # (the run lock, taken before this check, does not make a new folder non-empty)
        taken = sorted(p.name for p in out.iterdir() if run_owned(p.name) and p.name not in (RUN_LOCK, RUN_MARKER))
        if args.overwrite:
            raise TrainError(f"--overwrite refused: {out} holds no wavegpt run, and wavegpt deletes only what it "
                             f"wrote; choose an empty or new --out.")
        if taken:
            raise TrainError(f"{out / taken[0]} was not written by wavegpt and a run would replace it; "
                             f"choose another --out.")
    elif args.overwrite and is_run and is_main:
        for child in out.iterdir():
            if run_owned(child.name) and child.name not in (RUN_LOCK, RUN_MARKER):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def check_resume(out: Path, args: TrainArgs, config: WaveGPTConfig, step: int) -> None:
    """A resumed run keeps its model and its place: a value that would be ignored is refused instead."""
    try:
        recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TrainError(f"{out / 'run.json'} cannot be read; it records the run's arguments.") from None
    if not isinstance(recorded, dict):
        raise TrainError(f"{out / 'run.json'} does not hold a run's arguments.")
    given = {"preset": (args.preset, config.preset), "model": (args.model, recorded.get("model", args.model)),
             "vocab_size": (args.vocab_size, recorded.get("vocab_size", args.vocab_size))}
    given.update({name: (value, getattr(config, name, value)) for name, value in args.overrides.items()})
    for name, (asked, kept) in given.items():
        if asked != kept:
            raise TrainError(f"--{name.replace('_', '-')} {asked} differs from the run's {kept}; a resumed run keeps "
                             f"its model, so drop the flag or train a new run in another --out.")
    if step >= args.max_steps:
        raise TrainError(f"The run in {out} already reached step {step} of --max-steps {args.max_steps}; pass a "
                         f"larger --max-steps to train it further.")
    if args.stop_at is not None and args.stop_at <= step:
        raise TrainError(f"--stop-at {args.stop_at} is not after the checkpoint's step {step}; give a later step.")


def lock_out(out: Path, accelerator: Accelerator, held: list[RunLock]) -> None:
    """Main process: create --out if needed and take its lock; every process refuses when it is taken."""
    error = ""
    if accelerator.is_main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            held.append(RunLock(out).acquire())
        except RunLockedError as e:
            error = str(e)
    if all_agree(bool(error), accelerator):
        raise TrainError(error or f"{out} is in use by another wavegpt process; choose another --out.")


def drop_unused_marker(out: Path, created: bool) -> None:
    """A run that stopped before writing anything leaves no marker, and no folder it created."""
    try:
        if holds_run(out):
            return
        (out / RUN_MARKER).unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
    except OSError:
        pass


def all_agree(flag: bool, accelerator: Accelerator) -> bool:
    return accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), reduction="sum").item() > 0


def log_metrics(out: Path, metrics: dict[str, Any], accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
    if accelerator.log_with:
        accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=metrics["step"])


def trim_metrics(path: Path, last_step: int) -> None:
    """A resumed run repeats the steps after its checkpoint: drop their old log lines (and a line
    torn by a crash mid-write)."""
    if not path.exists():
        return

    def step_of(line: str) -> int | None:
        try:
            return json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None

    keep = [line for line in path.read_text().splitlines() if (step_of(line) or last_step + 1) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def mark_run(out: Path, accelerator: Accelerator) -> None:
    """The run marker, written by the main process when the run first writes into --out."""
    if accelerator.is_main_process and not (out / RUN_MARKER).exists():
        (out / RUN_MARKER).write_text(RUN_MARKER_TEXT)
    accelerator.wait_for_everyone()


def write_run_start(out: Path, args: TrainArgs, scale: dict[str, Any], corpus: Corpus, start_step: int,
                    accelerator: Accelerator) -> None:
    """run.json (the arguments and how the run trains), the tokenizer, and the metrics up to the start step."""
    if not accelerator.is_main_process:
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "run.json.tmp"  # --resume reads it back: never leave it truncated
    tmp.write_text(json.dumps({**dataclasses.asdict(args), "accelerate": scale}, indent=2) + "\n")
    os.replace(tmp, out / "run.json")
    corpus.tokenizer.save(out / "tokenizer.json")
    trim_metrics(out / "metrics.jsonl", start_step)


def save_best(model: torch.nn.Module, raw: WaveGPT, corpus: Corpus, out: Path, metrics: dict[str, Any],
              accelerator: Accelerator) -> None:
    """best/: the model with this step's held-out figures in its config (finite weights only)."""
    weights = plain_state_dict(accelerator, model)  # every process: a gather under FSDP
    if not all_finite(raw, accelerator) or not accelerator.is_main_process:
        return
    figures = {k: metrics[k] for k in ("step", "tokens", "val_nats_per_token", "val_nats_per_char") if k in metrics}
    raw.config = dataclasses.replace(raw.config, extra={**raw.config.extra, **figures})
    with atomic_folder(out / "best") as tmp:
        write_model_files(raw, tmp, state=weights)
        corpus.tokenizer.save_pretrained(tmp, model_max_length=raw.config.block_size)


def write_failure(e: RuntimeError, path: Path) -> OSError:
    """torch's RuntimeError for a write it could not finish, as the OSError it is (ENOSPC when the disk is full)."""
    import errno

    try:
        full = shutil.disk_usage(path.parent if path.parent.exists() else path.parent.parent).free < 64 * 2**20
    except OSError:
        full = False
    reason = "No space left on device" if full else f"the write failed: {' '.join(str(e).split())[:160]}"
    return OSError(errno.ENOSPC if full else errno.EIO, reason, str(path))


def save_checkpoint(model: torch.nn.Module, raw: WaveGPT, corpus: Corpus, out: Path, state: TrainState,
                    data_rng: torch.Generator, accelerator: Accelerator) -> None:
    """Everything needed to continue exactly, from every process into one atomic folder: the plain
    weights (model.safetensors), accelerator.save_state (optimizer, sharded under FSDP; GradScaler;
    each process's torch, CUDA, numpy and Python RNG) and trainer_state.pt (step, best, each
    process's data order)."""
    data_rngs = accelerator.gather(data_rng.get_state().to(accelerator.device)[None]).cpu()  # (processes, n)
    weights = plain_state_dict(accelerator, model)
    if not all_finite(raw, accelerator):
        raise TrainError(f"Refusing to save step {state.step}: the weights hold NaN or infinite values.")
    saved = dataclasses.replace(state, data_rng=list(data_rngs))
    with shared_atomic_folder(out / "checkpoint", accelerator) as tmp:
        try:
            accelerator.save_state(str(tmp / ACCELERATE_STATE))
        except RuntimeError as e:  # torch.save reports a failed write (a full disk) as a RuntimeError
            raise write_failure(e, out / "checkpoint" / ACCELERATE_STATE) from None
        if accelerator.is_main_process:
            write_model_files(raw, tmp, state=weights)
            corpus.tokenizer.save_pretrained(tmp, model_max_length=raw.config.block_size)
            saved.save(tmp)
