"""wavegpt-train: train a Wave-Native GPT (or the classic baseline) with Accelerate.

    python train.py --model tiny --dataset shakespeare
    accelerate launch --multi_gpu --num_processes 2 train.py --model tiny --data input.txt --out runs/x

Without GPUs, give train.py --cpu and that command trains two CPU processes (`accelerate launch --cpu
--num_processes 2` starts only one process unless it is given an MPI hostfile).
"""

from __future__ import annotations

import argparse

import torch

from ..args import TrainArgs, merge_train_args
from ..config import PRESETS, SIZES, parse_field_values
from ..data import DATASETS
from ..training import TrainError, train
from ..training.scaling import TRACKERS
from ..validation import describe_os_error
from . import command_errors, plain_warnings, run_command


def build_parser() -> argparse.ArgumentParser:
    d = TrainArgs()
    p = argparse.ArgumentParser(prog="wavegpt-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=list(PRESETS), help=f"training preset (default {d.preset})")
    p.add_argument("--model", choices=list(SIZES), help=f"model size (default {d.model})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=DATASETS, help="named corpus, downloaded on first use (default shakespeare)")
    src.add_argument("--data", metavar="PATH", help="a local text file, or a folder of .txt/.md files")
    p.add_argument("--out", metavar="FOLDER", help=f"run folder (default {d.out})")
    p.add_argument("--max-steps", type=int, help=f"optimizer steps in the run (default {d.max_steps})")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="end this invocation after STEP steps (saving a checkpoint), keeping the schedule of "
                        "--max-steps; continue later with --resume")
    p.add_argument("--max-time", type=float, metavar="SECONDS",
                   help="end the run after this much wall-clock time (equal-time comparisons)")
    p.add_argument("--batch-size", type=int, help=f"sequences per micro-batch per process (default {d.batch_size})")
    p.add_argument("--grad-accum", type=int,
                   help="micro-batches per optimizer step (default: accelerate launch's --gradient_accumulation_steps, "
                        "else 1)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's tuned rate, "
                                            "wavegpt.config.RECIPES; 2e-3 for a preset without one)")
    p.add_argument("--warmup-steps", type=int,
                   help=f"linear warmup steps before cosine decay (default {d.warmup_steps})")
    p.add_argument("--weight-decay", type=float, help=f"decoupled weight decay on matrices (default {d.weight_decay})")
    p.add_argument("--grad-clip", type=float, help=f"gradient norm clip, 0 = off (default {d.grad_clip})")
    p.add_argument("--seed", type=int, help=f"seed for init, data order and dropout (default {d.seed})")
    p.add_argument("--vocab-size", type=int, help=f"BPE vocabulary size (default {d.vocab_size})")
    p.add_argument("--block-size", type=int, help="context length (default: the size's)")
    p.add_argument("--dropout", type=float, help="dropout rate (default 0)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="config_set",
                   help="set a model config field the preset fixes, e.g. --set position=embedding "
                        "--set temperature_init=sqrt_waves (the seed-faithful wave model); repeatable; "
                        "VALUE is read as JSON when it parses, else as a string")
    p.add_argument("--eval-interval", type=int, help=f"steps between validations (default {d.eval_interval})")
    p.add_argument("--eval-batches", type=int, help=f"validation batches (default {d.eval_batches})")
    p.add_argument("--save-interval", type=int, help=f"steps between checkpoints (default {d.save_interval})")
    p.add_argument("--log-interval", type=int, help=f"steps between metric lines (default {d.log_interval})")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                   help="autocast precision (default: accelerate config / launch's --mixed_precision, else no); "
                        "bf16 runs on CPUs and GPUs, fp16 on GPUs (with a GradScaler)")
    p.add_argument("--compile", action="store_true",
                   help="train a torch.compile'd model (inductor); without it the launcher's --dynamo_backend "
                        "applies; checkpoints hold plain weights either way")
    p.add_argument("--max-bad-steps", type=int,
                   help=f"stop after this many NaN/inf losses in a row (default {d.max_bad_steps})")
    p.add_argument("--report-to", choices=["auto", "none", "all", *TRACKERS],
                   help=f"Accelerate tracker (default {d.report_to}: TensorBoard when installed, the [tensorboard] "
                        f"extra; logs in OUT/tensorboard); a --resume continues the same tracker run")
    p.add_argument("--cache-dir", help="data cache (default $WAVEGPT_CACHE or ~/.cache/wavegpt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def args_from_cli(argv: list[str] | None = None) -> TrainArgs:
    """Explicit flags win; on --resume the rest come from the run's run.json; then defaults (args.merge_train_args)."""
    ns = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(ns).items() if v is not None and v is not False}
    overrides = {k: given.pop(k) for k in ("block_size", "dropout") if k in given}
    overrides.update(parse_field_values(given.pop("config_set", [])))
    if "vocab_size" in overrides:  # the tokenizer's size: a training argument of its own (--vocab-size)
        vocab = overrides.pop("vocab_size")
        if given.setdefault("vocab_size", vocab) != vocab:
            raise ValueError(f"--set vocab_size={vocab} contradicts --vocab-size {given['vocab_size']}; give one.")
    given["progress"] = not given.pop("no_progress", False)
    return merge_train_args({**given, "overrides": overrides})


def main(argv: list[str] | None = None) -> None:
    plain_warnings()

    with run_command((*command_errors(), TrainError), also=[
        ((MemoryError, torch.OutOfMemoryError),
         lambda e: f"out of memory ({type(e).__name__}); lower --batch-size or --block-size (what was saved before "
                   f"is intact).", 2),
        (OSError,  # a full disk, a read-only folder: the checkpoints saved before are intact
         lambda e: f"the run stopped because writing failed ({describe_os_error(e)}); what was saved before is "
                   f"intact.", 2),
    ], interrupted="error: interrupted; the last saved checkpoint is intact (continue with --resume)."):
        train(args_from_cli(argv))


if __name__ == "__main__":
    main()
