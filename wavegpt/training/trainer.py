"""The one training loop, on Hugging Face Accelerate (one CPU, one GPU, or many processes).

`train(args)` opens the run folder (run_folder.py), builds or restores the run (`_set_up`), then
loops `train_step` over the steps, evaluating, logging and saving as the intervals say. What a
resumed run continues from is a `TrainState` (state.py) plus accelerator.save_state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..args import TrainArgs
from ..checkpoint import CheckpointError, load_config
from ..config import WaveGPTConfig
from ..data import Corpus, check_corpus_fits, default_cache_dir, get_batch, prepare_corpus
from ..evaluation import evaluate
from ..extras import missing_modules
from ..model.gpt import WaveGPT
from ..physics import RGD, QFELoss
from ..provenance import machine_description
from ..tokenizer import WaveTokenizer
from ..validation import check_launcher_environment, check_train_args
from ..viz.curves import plot_learning_curve
from . import run_folder
from .optim import build_loss, build_optimizer, fit_state_shapes, lr_at, set_lr, wave_share_floor
from .run_folder import ACCELERATE_STATE, TrainError
from .scaling import build_accelerator, check_optimizer_fits, describe, full_tensor, tracker_init_kwargs
from .state import TrainState


@dataclass
class Run:
    """What the loop works with, set up once by `_set_up`."""

    args: TrainArgs
    accelerator: Accelerator
    out: Path
    config: WaveGPTConfig
    corpus: Corpus
    model: torch.nn.Module  # as prepared by Accelerate (DDP, FSDP, compiled)
    raw: WaveGPT  # the plain module: its state_dict has no prefix
    optimizer: torch.optim.Optimizer
    loss_fn: QFELoss | None
    data_rng: torch.Generator
    state: TrainState
    scale: dict[str, Any]

    @property
    def tokens_per_step(self) -> int:
        a = self.accelerator
        return self.args.batch_size * self.config.block_size * a.gradient_accumulation_steps * a.num_processes


def train(args: TrainArgs) -> dict[str, Any]:
    """Train (or resume) one run; returns the final figures. Raises TrainError and friends.

    The arguments are checked before anything is written; the main process holds the run folder's
    lock (ownership.RunLock) for the whole run, so a second process refuses to train into it."""
    check_train_args(args)
    check_launcher_environment()
    held: list = []
    created = not Path(args.out).exists()
    try:
        accelerator = _open_run(args, held)
        return _loop(_set_up(args, accelerator, Path(args.out)))
    finally:
        for lock in held:
            lock.release()
        if held:
            run_folder.drop_unused_marker(Path(args.out), created)


def _open_run(args: TrainArgs, held: list) -> Accelerator:
    """The Accelerator, and --out locked, restored after an interrupted save, checked and marked."""
    accelerator = build_accelerator(cpu=args.cpu, mixed_precision=args.mixed_precision, grad_accum=args.grad_accum,
                                    compile=args.compile, report_to=args.report_to, out=args.out)
    launched = int(os.environ.get("WORLD_SIZE") or 1)  # set by torchrun / accelerate launch --multi_gpu
    if launched > accelerator.num_processes:  # else each process would train alone and write the same files
        raise TrainError(f"{launched} processes were launched but Accelerate joined {accelerator.num_processes} "
                         f"(no GPU for each?); pass --cpu to train.py to train on CPU processes.")
    out = Path(args.out)
    run_folder.lock_out(out, accelerator, held)
    if args.resume and accelerator.is_main_process:
        run_folder.restore_interrupted_saves(out)
    accelerator.wait_for_everyone()
    run_folder.prepare_out(out, args, accelerator.is_main_process)
    run_folder.mark_run(out, accelerator)
    return accelerator


def _config_and_corpus(args: TrainArgs, accelerator: Accelerator, out: Path,
                       state: TrainState | None) -> tuple[WaveGPTConfig, Corpus]:
    """The model's config (the preset's, or the resumed run's) and the corpus, checked against each other."""
    tokenizer = WaveTokenizer.load(out / "checkpoint") if state else None
    config = load_config(out / "checkpoint") if state else WaveGPTConfig.from_preset(
        args.model, args.preset, vocab_size=args.vocab_size, **args.overrides)
    if state:
        recorded = config.extra.get("tokenizer_vocab_sha256") if isinstance(config.extra, dict) else None
        if recorded is not None and recorded != tokenizer.vocab_sha256:  # the ids would mean other strings
            raise TrainError(f"{out / 'checkpoint' / 'tokenizer.json'} is not the tokenizer the checkpoint was "
                             f"trained with (its vocabulary hash differs from the one config.json recorded); put the "
                             f"run's own tokenizer.json back.")
        run_folder.check_resume(out, args, config, state.step)
        if len(state.data_rng) != accelerator.num_processes:
            raise TrainError(f"The run in {out} was saved by {len(state.data_rng)} process(es); resume it with "
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
    extra = {"data": corpus.name, "train_tokens": len(corpus.train), "val_tokens": len(corpus.val),
             "machine": machine_description(), "tokenizer_vocab_sha256": corpus.tokenizer.vocab_sha256,
             "recipe": {"lr": args.lr, "warmup_steps": args.warmup_steps, "weight_decay": args.weight_decay,
                        "min_lr_ratio": args.min_lr_ratio, "batch_size": args.batch_size}}
    return dataclasses.replace(config, vocab_size=corpus.tokenizer.vocab_size, extra=extra), corpus


def _set_up(args: TrainArgs, accelerator: Accelerator, out: Path) -> Run:
    """Build the run (or restore it from checkpoint/), prepare it with Accelerate, write run.json."""
    resumed = TrainState.load(out / "checkpoint") if args.resume else None
    config, corpus = _config_and_corpus(args, accelerator, out, resumed)
    set_seed(args.seed)  # the same initial weights on every process (FSDP shards each process's own copy)
    model = WaveGPT(config)
    if accelerator.process_index > 0:  # each process its own dropout
        set_seed(args.seed + accelerator.process_index)
    optimizer = build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay, max_steps=args.max_steps)
    data_rng = torch.Generator().manual_seed(args.seed * 1000 + accelerator.process_index)
    state = TrainState()
    legacy = resumed is not None and bool(resumed.legacy)  # from before accelerator.save_state
    if resumed and not legacy and not (out / "checkpoint" / ACCELERATE_STATE).is_dir():
        raise CheckpointError(f"{out / 'checkpoint' / ACCELERATE_STATE} is missing; it holds the optimizer and the "
                              f"random states --resume needs, so the run cannot continue exactly (train a new run "
                              f"in another --out, or --overwrite this one).")
    if resumed:
        model.load_state_dict(WaveGPT.from_pretrained(out / "checkpoint").state_dict())
        state = dataclasses.replace(resumed, data_rng=[])
        data_rng.set_state(resumed.data_rng[accelerator.process_index].clone())
    if legacy:  # a checkpoint from before accelerator.save_state: optimizer and RNG in trainer_state.pt
        optimizer.load_state_dict(resumed.legacy["optimizer"])
        fit_state_shapes(optimizer)
        torch.set_rng_state(resumed.legacy["torch_rng"][accelerator.process_index].clone())
    prepared, optimizer = accelerator.prepare(model, optimizer)
    # model.safetensors holds the weights; save_state keeps optimizer, scaler and RNGs (and under FSDP or
    # DeepSpeed, which save the model themselves, their own copy of the sharded model).
    accelerator.register_save_state_pre_hook(lambda models, weights, folder: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, folder: models.clear())
    if resumed and not legacy:
        try:
            accelerator.load_state(str(out / "checkpoint" / ACCELERATE_STATE))
        except Exception as e:  # a torn or foreign file: name it, don't dump a traceback
            raise CheckpointError(f"{out / 'checkpoint' / ACCELERATE_STATE} cannot be read ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}).") from None
    raw = accelerator.unwrap_model(prepared, keep_torch_compile=False)
    run = Run(args, accelerator, out, config, corpus, prepared, raw, optimizer, build_loss(config), data_rng, state,
              describe(accelerator))
    _announce(run)
    return run


def _announce(run: Run) -> None:
    """run.json, the trackers and the banner line."""
    args, accelerator, scale, corpus = run.args, run.accelerator, run.scale, run.corpus
    run_folder.write_run_start(run.out, args, scale, corpus, run.state.step, accelerator)
    if accelerator.log_with:
        accelerator.init_trackers("wavegpt", config={k: v for k, v in {**dataclasses.asdict(args), **scale}.items()
                                                     if isinstance(v, (int, float, str, bool))},
                                  init_kwargs=tracker_init_kwargs(run.out, accelerator, run.state.step))
    accelerator.print(f"wavegpt: {run.config.preset} / {args.model}, {run.raw.num_parameters() / 1e6:.2f}M "
                      f"parameters, {len(corpus.train):,} train and {len(corpus.val):,} val tokens ({corpus.name}), "
                      f"{accelerator.num_processes} process(es) on {accelerator.device}, {scale['precision']}"
                      f"{', ' + scale['distributed_type'] if accelerator.num_processes > 1 else ''}"
                      f"{', compiled (' + scale['dynamo_backend'] + ')' if scale['dynamo_backend'] != 'no' else ''}")


def train_step(run: Run, lr: float) -> torch.Tensor:
    """One optimizer step's forward and backward passes over its micro-batches; returns the mean
    (loss, ce, coherence), reduced over processes, before the optimizer steps."""
    accelerator, args = run.accelerator, run.args
    set_lr(run.optimizer, lr)
    grad_accum = accelerator.gradient_accumulation_steps  # train.py's flag, else the launcher's
    sums = torch.zeros(3, device=accelerator.device)  # loss, ce, coherence over micro-batches
    for _ in range(grad_accum):
        x, y = get_batch(run.corpus.train, args.batch_size, run.config.block_size, run.data_rng)
        x, y = x.to(accelerator.device), y.to(accelerator.device)
        with accelerator.accumulate(run.model):
            # Autocast here too: Accelerate wraps a DDP model's forward in it, but under FSDP2 it only
            # casts parameters (float32 activations would then meet bf16 weights); and the loss runs in it.
            with accelerator.autocast():
                logits, ce = run.model(x, y)
                if run.loss_fn is not None:
                    parts = run.loss_fn(logits, y, return_components=True)
                    loss, coherence = parts["total"], parts["coherence"]
                else:
                    loss, coherence = ce, torch.zeros((), device=ce.device)
            accelerator.backward(loss)
        sums += torch.stack([loss.detach().float(), ce.detach().float(), coherence.detach().float()])
    return accelerator.reduce(sums, reduction="mean") / grad_accum


def _apply_step(run: Run, step: int) -> None:
    """Clip, step, and hold the wave share above the bootstrap schedule's floor."""
    if run.args.grad_clip > 0:
        run.accelerator.clip_grad_norm_(run.model.parameters(), run.args.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    c = run.config
    if c.model_type == "wave" and c.bootstrap_embedding and c.embedding == "packet":
        floor = wave_share_floor(step + 1, run.args.max_steps, c.wave_floor_start, c.wave_floor_end)
        if floor > 0:
            with torch.no_grad():
                run.raw.embedding.wave_ratio.clamp_(min=math.log(floor / (1 - floor)))


def _skip_step(run: Run, step: int, bad_in_row: int) -> None:
    """A non-finite loss (every process sees the same reduced value): no update; several in a row stop the run."""
    run.optimizer.zero_grad(set_to_none=True)
    run.state.skipped_steps += 1
    run.accelerator.print(f"step {step + 1}: loss is not finite; step skipped ({bad_in_row} in a row)")
    if bad_in_row >= run.args.max_bad_steps:
        raise TrainError(f"Training stopped at step {step + 1}: the loss was NaN or infinite for "
                         f"{bad_in_row} steps in a row; lower --lr or check the data.")


def _metrics(run: Run, done: int, sums: torch.Tensor, lr: float, tokens_per_s: float, evaluate_now: bool) -> dict:
    metrics = {"step": done, "loss": sums[0].item(), "ce": sums[1].item(), "coherence": sums[2].item(),
               "lr": lr, "wave_ratio": _wave_share(run.raw) if run.config.model_type == "wave" else None,
               "tokens_per_s": tokens_per_s, "tokens": done * run.tokens_per_step,
               "skipped_steps": run.state.skipped_steps, "precision": run.scale["precision"]}
    inner = getattr(run.optimizer, "optimizer", run.optimizer)  # Accelerate wraps it
    if isinstance(inner, RGD):
        metrics["resonance_alpha"] = inner.current_alpha()
    if evaluate_now:
        metrics.update(evaluate(run.model, run.corpus, block_size=run.config.block_size,
                                batch_size=run.args.batch_size, eval_batches=run.args.eval_batches,
                                accelerator=run.accelerator))
        metrics["val"] = metrics["val_nats_per_token"]
    return metrics


def _loop(run: Run) -> dict[str, Any]:
    args, accelerator, state = run.args, run.accelerator, run.state
    start_step = state.step
    end_step = min(args.max_steps, args.stop_at) if args.stop_at else args.max_steps
    bar = tqdm(total=end_step, initial=start_step, desc="train", unit="step", dynamic_ncols=True) \
        if args.progress and accelerator.is_main_process else None
    metrics: dict[str, Any] = {}
    t0 = time.perf_counter()
    window_start, window_tokens, eval_time, bad_in_row = t0, 0, 0.0, 0
    for step in range(start_step, end_step):
        lr = lr_at(step, args)
        sums = train_step(run, lr)
        if not torch.isfinite(sums).all():
            bad_in_row += 1
            _skip_step(run, step, bad_in_row)
            continue
        bad_in_row = 0
        _apply_step(run, step)
        window_tokens += run.tokens_per_step
        done = state.step = step + 1
        if args.max_time and run_folder.all_agree(time.perf_counter() - t0 > args.max_time, accelerator):
            end_step = done  # every process stops on the same step
        evaluate_now = done % args.eval_interval == 0 or done == end_step
        if done % args.log_interval == 0 or evaluate_now:
            now = time.perf_counter()
            metrics = _metrics(run, done, sums, lr, window_tokens / max(now - window_start, 1e-9), evaluate_now)
            eval_time += time.perf_counter() - now if evaluate_now else 0.0
            run_folder.log_metrics(run.out, metrics, accelerator)
            if bar is not None:
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{lr:.1e}", tok_s=f"{metrics['tokens_per_s']:,.0f}")
            window_start, window_tokens = time.perf_counter(), 0
        if evaluate_now and metrics["val"] < state.best_val:
            state.best_val = metrics["val"]
            run_folder.save_best(run.model, run.raw, run.corpus, run.out, metrics, accelerator)
        if done % args.save_interval == 0 or done == end_step:
            run_folder.save_checkpoint(run.model, run.raw, run.corpus, run.out, state, run.data_rng, accelerator)
        if bar is not None:
            bar.update(1)
        if done == end_step:
            break
    if bar is not None:
        bar.close()
    return _finish(run, start_step, end_step, t0, eval_time, metrics)


def _finish(run: Run, start_step: int, end_step: int, t0: float, eval_time: float,
            metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary (printed as the last line), and the learning curve."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    wall = time.perf_counter() - t0
    trained = (end_step - start_step) * run.tokens_per_step
    summary = {"steps": end_step, "tokens": end_step * run.tokens_per_step, "wall_time_s": wall,
               "tokens_per_s": trained / max(wall - eval_time, 1e-9),
               "best_val_nats_per_token": run.state.best_val, "skipped_steps": run.state.skipped_steps,
               "parameters": run.raw.num_parameters(), "peak_memory_mb": _peak_memory_mb(accelerator),
               "precision": run.scale["precision"], "processes": accelerator.num_processes,
               **{k: metrics[k] for k in metrics if k.startswith("val_")}}
    if accelerator.is_main_process:
        if missing_modules("viz", ("matplotlib",)):
            accelerator.print("learning_curve.png not drawn: it needs the [viz] extra (pip install 'wavegpt[viz]')")
        else:
            plot_learning_curve(run.out / "metrics.jsonl", run.out / "learning_curve.png")
        accelerator.print(json.dumps(summary))
    accelerator.end_training()
    return summary


def _peak_memory_mb(accelerator: Accelerator) -> float:
    """Peak GPU memory allocated, or on the CPU the process's peak resident set."""
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    import resource  # POSIX only: imported where it is used, so the module still imports elsewhere

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _wave_share(model: WaveGPT) -> float:
    """The bootstrap embedding's wave share (a collective under FSDP2, where wave_ratio is sharded)."""
    emb = model.embedding
    return 1.0 if emb.bootstrap is None else torch.sigmoid(full_tensor(emb.wave_ratio.detach())).item()
