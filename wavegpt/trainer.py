"""The one training loop, on Hugging Face Accelerate (one CPU, one GPU, or many processes).

A run folder (`--out`) holds:
  checkpoint/      the latest model folder plus accelerate/ (accelerator.save_state: optimizer,
                   GradScaler, every process's RNGs) and trainer_state.pt (step, every process's
                   data order): what --resume continues from
  best/            the model folder with the best held-out validation loss so far
  metrics.jsonl    one JSON object per logged step; learning_curve.png at the end
  run.json         the training arguments, and under "accelerate" how the run trained (precision,
                   processes, FSDP, compile)
  tensorboard/     TensorBoard events when it is installed (see --report-to)
Every folder is written atomically (see checkpoint.atomic_folder).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from .checkpoint import CheckpointError, atomic_folder, load_config, write_model_files
from .config import WaveGPTConfig
from .data import Corpus, check_corpus_fits, default_cache_dir, get_batch, iter_eval_batches, prepare_corpus
from .hub import machine_description
from .model import WaveGPT, is_wave_parameter
from .ownership import RUN_LOCK, RUN_MARKER, RunLock, RunLockedError, holds_run, is_run_folder, run_owned
from .physics import RGD, QFELoss
from .scaling import (
    all_finite,
    build_accelerator,
    check_optimizer_fits,
    describe,
    full_tensor,
    plain_state_dict,
    shared_atomic_folder,
    tracker_init_kwargs,
)
from .tokenizer import WaveTokenizer
from .validation import check_train_args

STATE_NAME = "trainer_state.pt"
ACCELERATE_STATE = "accelerate"  # accelerator.save_state's folder inside checkpoint/: optimizer, scaler, RNGs


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message is one sentence."""


@dataclass
class TrainArgs:
    preset: str = "full_physics"
    model: str = "tiny"
    dataset: str | None = "shakespeare"
    data: str | None = None
    out: str = "runs/wavegpt"
    max_steps: int = 2000
    stop_at: int | None = None  # end this invocation early, keeping the schedule of max_steps
    batch_size: int = 32
    grad_accum: int | None = None  # None: the launcher's (accelerate config / launch), else 1
    lr: float = 2e-3
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


def lr_at(step: int, args: TrainArgs) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr at max_steps."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    floor = args.lr * args.min_lr_ratio
    return floor + 0.5 * (args.lr - floor) * (1 + math.cos(math.pi * progress))


def wave_share_floor(step: int, max_steps: int) -> float:
    """The bootstrap schedule: the wave share may not fall below 0.5 -> 0.9 over the run."""
    return 0.5 + 0.4 * min(1.0, step / max(1, max_steps))


def build_optimizer(model: WaveGPT, *, lr: float = TrainArgs.lr, weight_decay: float = TrainArgs.weight_decay,
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
    rest = [(n, p) for n, p in named if not (separate and is_wave_parameter(n))]
    groups = [{"params": [p for _, p in rest if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for _, p in rest if p.dim() < 2], "weight_decay": 0.0}]
    if wave:
        decay = weight_decay if c.wave_param_decay else 0.0
        groups.append({"params": wave, "weight_decay": decay, "lr_scale": c.wave_lr_scale})
    if c.optimizer == "rgd":
        return RGD(groups, lr=lr, betas=betas, resonance_strength=c.resonance_strength,
                   warmup_steps=c.rgd_warmup_steps)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def _restore_interrupted_saves(out: Path) -> None:
    """A kill between atomic_folder's two renames leaves `<name>.old` and no `<name>`: put the previous
    version back before anything looks for it (as checkpoint.resolve_checkpoint does for readers).
    A kill mid-save leaves a `.<name>.tmp-*` folder that nothing will read: delete it."""
    for name in ("checkpoint", "best"):
        old = out / f"{name}.old"
        if old.is_dir() and not (out / name).exists():
            os.replace(old, out / name)
        for tmp in out.glob(f".{name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def _prepare_out(out: Path, args: TrainArgs, is_main: bool) -> None:
    """Decide what --out may hold. The rule (wavegpt/ownership.py): only what a wavegpt run wrote is ever
    replaced; --overwrite deletes the run's own entries and leaves every other file where it is."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file, not a folder.")
    is_run = is_run_folder(out)
    if args.resume:
        if not (out / "checkpoint" / STATE_NAME).is_file():
            raise TrainError(f"There is no checkpoint to resume in {out} (expected {out / 'checkpoint'}).")
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


def _check_resume(out: Path, args: TrainArgs, config: WaveGPTConfig, step: int) -> None:
    """A resumed run keeps its model and its place: a value that would be ignored is refused instead."""
    try:
        recorded = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
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


def _load_state(out: Path) -> dict[str, Any]:
    try:
        return torch.load(out / "checkpoint" / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: name it, don't dump a traceback
        raise CheckpointError(f"{out / 'checkpoint' / STATE_NAME} cannot be read ({type(e).__name__}).") from None


@torch.no_grad()
def evaluate(model: torch.nn.Module, corpus: Corpus, *, block_size: int, batch_size: int = TrainArgs.batch_size,
             eval_batches: int = TrainArgs.eval_batches, accelerator: Accelerator | None = None) -> dict[str, float]:
    """Mean held-out loss over `eval_batches` evenly spaced batches of `batch_size` validation windows of
    `block_size` tokens, shared across the accelerator's processes (None: one CPU process)."""
    if accelerator is None:
        accelerator = Accelerator(cpu=True)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, device=accelerator.device)  # summed nats, token count
    batches = list(iter_eval_batches(corpus.val, batch_size, block_size, eval_batches))
    processes, rank = accelerator.num_processes, accelerator.process_index
    # Every process runs the same number of forward passes (sharded models gather weights in each one):
    # a process whose share runs out repeats its last batch with weight 0.
    for j in range(-(-len(batches) // processes)):
        i = j * processes + rank
        x, y = batches[min(i, len(batches) - 1)]
        x, y = x.to(accelerator.device), y.to(accelerator.device)
        with accelerator.autocast():
            _, loss = model(x, y)
        weight = 1.0 if i < len(batches) else 0.0
        total += weight * torch.stack([loss.float() * y.numel(), torch.tensor(float(y.numel()), device=total.device)])
    total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    nats_token = (total[0] / total[1]).item()
    chars_per_token = corpus.val_chars / len(corpus.val)
    return {"val_nats_per_token": nats_token, "val_nats_per_char": nats_token / chars_per_token}


def train(args: TrainArgs) -> dict[str, Any]:
    """Train (or resume) one run; returns the final figures. Raises TrainError and friends.

    The arguments are checked before anything is written; the main process holds the run folder's
    lock (ownership.RunLock) for the whole run, so a second process refuses to train into it."""
    check_train_args(args)
    held: list[RunLock] = []
    created = not Path(args.out).exists()
    try:
        return _train(args, held)
    finally:
        for lock in held:
            lock.release()
        if held:
            _drop_unused_marker(Path(args.out), created)


def _lock_out(out: Path, accelerator: Accelerator, held: list[RunLock]) -> None:
    """Main process: create --out if needed and take its lock; every process refuses when it is taken."""
    error = ""
    if accelerator.is_main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            held.append(RunLock(out).acquire())
        except RunLockedError as e:
            error = str(e)
    if _all_agree(bool(error), accelerator):
        raise TrainError(error or f"{out} is in use by another wavegpt process; choose another --out.")


def _drop_unused_marker(out: Path, created: bool) -> None:
    """A run that stopped before writing anything leaves no marker, and no folder it created."""
    try:
        if holds_run(out):
            return
        (out / RUN_MARKER).unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
    except OSError:
        pass


def _train(args: TrainArgs, held: list[RunLock]) -> dict[str, Any]:
    accelerator = build_accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision, grad_accum=args.grad_accum,
                                    compile=args.compile, report_to=args.report_to, out=args.out)
    grad_accum = accelerator.gradient_accumulation_steps  # train.py's flag, else the launcher's
    launched = int(os.environ.get("WORLD_SIZE") or 1)  # set by torchrun / accelerate launch --multi_gpu
    if launched > accelerator.num_processes:  # else each process would train alone and write the same files
        raise TrainError(f"{launched} processes were launched but Accelerate joined {accelerator.num_processes} "
                         f"(no GPU for each?); pass --cpu to train.py to train on CPU processes.")
    out = Path(args.out)
    _lock_out(out, accelerator, held)
    if args.resume and accelerator.is_main_process:
        _restore_interrupted_saves(out)
    accelerator.wait_for_everyone()
    _prepare_out(out, args, accelerator.is_main_process)
    if accelerator.is_main_process and not (out / RUN_MARKER).exists():
        (out / RUN_MARKER).write_text('{"created_by": "wavegpt", "kind": "training run"}\n')
    accelerator.wait_for_everyone()

    state = _load_state(out) if args.resume else None
    tokenizer = WaveTokenizer.load(out / "checkpoint") if state else None
    config = load_config(out / "checkpoint") if state else WaveGPTConfig.from_preset(
        args.model, args.preset, vocab_size=args.vocab_size, **args.overrides)
    if state:
        _check_resume(out, args, config, state["step"])
        if len(state["data_rng"]) != accelerator.num_processes:
            raise TrainError(f"The run in {out} was saved by {len(state['data_rng'])} process(es); resume it with "
                             f"the same number (this launch has {accelerator.num_processes}).")
    check_optimizer_fits(config.optimizer, accelerator)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    with accelerator.main_process_first():
        corpus = prepare_corpus(args.dataset, args.data, config.vocab_size, cache, tokenizer=tokenizer)
    check_corpus_fits(corpus, config.block_size)
    if args.batch_size * config.block_size > len(corpus.train):  # an oversized request, refused before allocating
        raise TrainError(f"--batch-size {args.batch_size} x context {config.block_size} is "
                         f"{args.batch_size * config.block_size:,} tokens per micro-batch, more than the whole "
                         f"training split ({len(corpus.train):,} tokens); lower --batch-size.")
    config.vocab_size = corpus.tokenizer.vocab_size
    config.extra = {"data": corpus.name, "train_tokens": len(corpus.train), "val_tokens": len(corpus.val),
                    "machine": machine_description(),
                    "tokenizer_vocab_sha256": corpus.tokenizer.vocab_sha256}

    set_seed(args.seed)  # the same initial weights on every process (FSDP shards each process's own copy)
    model = WaveGPT(config)
    if accelerator.process_index > 0:  # each process its own dropout
        set_seed(args.seed + accelerator.process_index)
    optimizer = build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = QFELoss(lambda_coherence=config.lambda_coherence) if config.loss == "qfe" else None
    data_rng = torch.Generator().manual_seed(args.seed * 1000 + accelerator.process_index)
    start_step, best_val, bad_in_row, skipped = 0, float("inf"), 0, 0
    legacy_state = state is not None and not (out / "checkpoint" / ACCELERATE_STATE).is_dir()
    if state:
        model.load_state_dict(WaveGPT.from_pretrained(out / "checkpoint").state_dict())
        start_step, best_val, skipped = state["step"], state["best_val"], state["skipped_steps"]
        data_rng.set_state(state["data_rng"][accelerator.process_index].clone())
    if legacy_state:  # a checkpoint from before accelerator.save_state: optimizer and RNG in trainer_state.pt
        optimizer.load_state_dict(state["optimizer"])
        _fit_state_shapes(optimizer)
        torch.set_rng_state(state["torch_rng"][accelerator.process_index].clone())
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model, keep_torch_compile=False)  # plain module: its state_dict has no prefix
    inner_optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps it
    # model.safetensors holds the weights; save_state keeps optimizer, scaler and RNGs (and under FSDP or
    # DeepSpeed, which save the model themselves, their own copy of the sharded model).
    accelerator.register_save_state_pre_hook(lambda models, weights, folder: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, folder: models.clear())
    if state and not legacy_state:
        try:
            accelerator.load_state(str(out / "checkpoint" / ACCELERATE_STATE))
        except Exception as e:  # a torn or foreign file: name it, don't dump a traceback
            raise CheckpointError(f"{out / 'checkpoint' / ACCELERATE_STATE} cannot be read ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}).") from None
    scale = describe(accelerator)

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "run.json.tmp"  # --resume reads it back: never leave it truncated
        tmp.write_text(json.dumps({**dataclasses.asdict(args), "accelerate": scale}, indent=2) + "\n")
        os.replace(tmp, out / "run.json")
        corpus.tokenizer.save(out / "tokenizer.json")
        _trim_metrics(out / "metrics.jsonl", start_step)
    if accelerator.log_with:
        accelerator.init_trackers("wavegpt", config={k: v for k, v in {**dataclasses.asdict(args), **scale}.items()
                                                     if isinstance(v, (int, float, str, bool))},
                                  init_kwargs=tracker_init_kwargs(out, accelerator, start_step))
    accelerator.print(f"wavegpt: {config.preset} / {args.model}, {raw.num_parameters() / 1e6:.2f}M parameters, "
                      f"{len(corpus.train):,} train and {len(corpus.val):,} val tokens ({corpus.name}), "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, {scale['precision']}"
                      f"{', ' + scale['distributed_type'] if accelerator.num_processes > 1 else ''}"
                      f"{', compiled (' + scale['dynamo_backend'] + ')' if scale['dynamo_backend'] != 'no' else ''}")

    T = config.block_size
    tokens_per_step = args.batch_size * T * grad_accum * accelerator.num_processes
    end_step = min(args.max_steps, args.stop_at) if args.stop_at else args.max_steps
    bar = _progress(args, accelerator, start_step, end_step)
    metrics: dict[str, Any] = {}
    t0 = time.perf_counter()
    window_start, window_tokens, eval_time = t0, 0, 0.0
    step = start_step
    for step in range(start_step, end_step):
        lr = lr_at(step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        sums = torch.zeros(3, device=accelerator.device)  # loss, ce, coherence over micro-batches
        for _ in range(grad_accum):
            x, y = get_batch(corpus.train, args.batch_size, T, data_rng)
            x, y = x.to(accelerator.device), y.to(accelerator.device)
            with accelerator.accumulate(model):
                # Autocast here too: Accelerate wraps a DDP model's forward in it, but under FSDP2 it only
                # casts parameters (float32 activations would then meet bf16 weights); and the loss runs in it.
                with accelerator.autocast():
                    logits, ce = model(x, y)
                    if loss_fn is not None:
                        parts = loss_fn(logits, y, return_components=True)
                        loss, coherence = parts["total"], parts["coherence"]
                    else:
                        loss, coherence = ce, torch.zeros((), device=ce.device)
                accelerator.backward(loss)
            sums += torch.stack([loss.detach().float(), ce.detach().float(), coherence.detach().float()])
        sums = accelerator.reduce(sums, reduction="mean") / grad_accum
        if not torch.isfinite(sums).all():  # every process sees the same reduced value
            optimizer.zero_grad(set_to_none=True)
            skipped += 1
            bad_in_row += 1
            accelerator.print(f"step {step + 1}: loss is not finite; step skipped ({bad_in_row} in a row)")
            if bad_in_row >= args.max_bad_steps:
                raise TrainError(f"Training stopped at step {step + 1}: the loss was NaN or infinite for "
                                 f"{bad_in_row} steps in a row; lower --lr or check the data.")
            continue
        bad_in_row = 0
        if args.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if config.model_type == "wave" and config.bootstrap_embedding:
            floor = wave_share_floor(step + 1, args.max_steps)
            with torch.no_grad():
                raw.embedding.wave_ratio.clamp_(min=math.log(floor / (1 - floor)))

        window_tokens += tokens_per_step
        done = step + 1
        if args.max_time and _all_agree(time.perf_counter() - t0 > args.max_time, accelerator):
            end_step = done  # every process stops on the same step
        log_now = done % args.log_interval == 0 or done == end_step
        evaluate_now = done % args.eval_interval == 0 or done == end_step
        if log_now or evaluate_now:
            now = time.perf_counter()
            metrics = {"step": done, "loss": sums[0].item(), "ce": sums[1].item(), "coherence": sums[2].item(),
                       "lr": lr, "wave_ratio": _wave_share(raw) if config.model_type == "wave" else None,
                       "tokens_per_s": window_tokens / max(now - window_start, 1e-9),
                       "tokens": done * tokens_per_step, "skipped_steps": skipped, "precision": scale["precision"]}
            if isinstance(inner_optimizer, RGD):
                metrics["resonance_alpha"] = inner_optimizer.current_alpha()
            if evaluate_now:
                metrics.update(evaluate(model, corpus, block_size=T, batch_size=args.batch_size,
                                        eval_batches=args.eval_batches, accelerator=accelerator))
                metrics["val"] = metrics["val_nats_per_token"]
                eval_time += time.perf_counter() - now
            _log(out, metrics, accelerator)
            if bar is not None:
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{lr:.1e}", tok_s=f"{metrics['tokens_per_s']:,.0f}")
            window_start, window_tokens = time.perf_counter(), 0
        if evaluate_now and metrics["val"] < best_val:
            best_val = metrics["val"]
            _save_best(model, raw, corpus, out, metrics, accelerator)
        if done % args.save_interval == 0 or done == end_step:
            _save_checkpoint(model, raw, corpus, out, done, best_val, skipped, data_rng, accelerator)
        if bar is not None:
            bar.update(1)
        if done == end_step:
            break
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    wall = time.perf_counter() - t0
    trained = (end_step - start_step) * tokens_per_step
    summary = {"steps": end_step, "tokens": end_step * tokens_per_step, "wall_time_s": wall,
               "tokens_per_s": trained / max(wall - eval_time, 1e-9),
               "best_val_nats_per_token": best_val, "skipped_steps": skipped,
               "parameters": raw.num_parameters(), "peak_memory_mb": _peak_memory_mb(accelerator),
               "precision": scale["precision"], "processes": accelerator.num_processes,
               **{k: metrics[k] for k in metrics if k.startswith("val_")}}
    if accelerator.is_main_process:
        from .extras import missing_modules

        if missing_modules("viz", ("matplotlib",)):
            accelerator.print("learning_curve.png not drawn: it needs the [viz] extra (pip install 'wavegpt[viz]')")
        else:
            from .plots import plot_learning_curve

            plot_learning_curve(out / "metrics.jsonl", out / "learning_curve.png")
        accelerator.print(json.dumps(summary))
    accelerator.end_training()
    return summary


def _all_agree(flag: bool, accelerator: Accelerator) -> bool:
    return accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), reduction="sum").item() > 0


def _peak_memory_mb(accelerator: Accelerator) -> float:
    """Peak GPU memory allocated, or on the CPU the process's peak resident set."""
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _progress(args: TrainArgs, accelerator: Accelerator, start: int, end: int):
    if not (args.progress and accelerator.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=end, initial=start, desc="train", unit="step", dynamic_ncols=True)


def _log(out: Path, metrics: dict[str, Any], accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
    if accelerator.log_with:
        accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=metrics["step"])


def _trim_metrics(path: Path, last_step: int) -> None:
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


def _wave_share(model: WaveGPT) -> float:
    """The bootstrap embedding's wave share (a collective under FSDP2, where wave_ratio is sharded)."""
    emb = model.embedding
    return 1.0 if emb.bootstrap is None else torch.sigmoid(full_tensor(emb.wave_ratio.detach())).item()


def _fit_state_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Optimizer state saved when wave_ratio was 0-d: give each moment its parameter's (1,) shape."""
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if key != "step" and torch.is_tensor(value) and value.shape != p.shape and value.numel() == p.numel():
                state[key] = value.reshape(p.shape)


def _with_figures(model: WaveGPT, extra: dict[str, Any]) -> WaveGPTConfig:
    model.config.extra = {**model.config.extra, **extra}
    return model.config


def _save_best(model: torch.nn.Module, raw: WaveGPT, corpus: Corpus, out: Path, metrics: dict[str, Any],
               accelerator: Accelerator) -> None:
    weights = plain_state_dict(accelerator, model)  # every process: a gather under FSDP
    if not all_finite(raw, accelerator) or not accelerator.is_main_process:
        return
    _with_figures(raw, {k: metrics[k] for k in ("step", "tokens", "val_nats_per_token", "val_nats_per_char")
                        if k in metrics})
    with atomic_folder(out / "best") as tmp:
        write_model_files(raw, tmp, state=weights)
        corpus.tokenizer.save_pretrained(tmp, model_max_length=raw.config.block_size)


def _save_checkpoint(model: torch.nn.Module, raw: WaveGPT, corpus: Corpus, out: Path, step: int, best_val: float,
                     skipped: int, data_rng: torch.Generator, accelerator: Accelerator) -> None:
    """Everything needed to continue exactly, from every process into one atomic folder: the plain
    weights (model.safetensors), accelerator.save_state (optimizer, sharded under FSDP; GradScaler;
    each process's torch, CUDA, numpy and Python RNG) and trainer_state.pt (step, best, each
    process's data order)."""
    data_rngs = accelerator.gather(data_rng.get_state().to(accelerator.device)[None]).cpu()  # (processes, n)
    weights = plain_state_dict(accelerator, model)
    if not all_finite(raw, accelerator):
        raise TrainError(f"Refusing to save step {step}: the weights hold NaN or infinite values.")
    state = {"step": step, "best_val": best_val, "skipped_steps": skipped,
             "data_rng": [r.clone() for r in data_rngs]}
    with shared_atomic_folder(out / "checkpoint", accelerator) as tmp:
        accelerator.save_state(str(tmp / ACCELERATE_STATE))
        if accelerator.is_main_process:
            write_model_files(raw, tmp, state=weights)
            corpus.tokenizer.save_pretrained(tmp, model_max_length=raw.config.block_size)
            torch.save(state, tmp / STATE_NAME)
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "best_val": best_val}) + "\n")
