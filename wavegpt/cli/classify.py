"""wavegpt-classify: the Wave Network text classifier (arXiv 2411.02674) and its transformer control.

    wavegpt-classify train --hf-dataset ag_news --variant modulation --out runs/agnews
    wavegpt-classify train --data speakers.csv --variant interference --seed 0 --out runs/speakers
    wavegpt-classify eval --checkpoint runs/speakers --data speakers.csv

Data: a local .csv / .tsv / .jsonl / .parquet file or a Hugging Face dataset (name or a folder
written by save_to_disk) with a text and a label column. Held out: the dataset's test split,
a local file's rows whose `split` column is `test`, or else the last 10% of the rows.
`train` writes OUT/checkpoint/ (model.safetensors, config.json, tokenizer.json),
OUT/metrics.json and OUT/confusion_matrix.png; `eval` writes metrics.json and the
confusion matrix into --out (default: CHECKPOINT's run folder / eval). Both end with the line
`accuracy A macro_f1 F`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..classify import (
    VARIANTS,
    ClassifyError,
    TrainSettings,
    evaluate_checkpoint,
    load_classifier,
    load_data,
    train_classifier,
)
from ..validation import whole
from . import run_command


def build_parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    p = argparse.ArgumentParser(prog="wavegpt-classify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="train|eval")
    sub.required = True

    def data_args(q: argparse.ArgumentParser) -> None:
        src = q.add_mutually_exclusive_group()
        src.add_argument("--data", metavar="FILE", help="a local .csv, .tsv, .jsonl or .parquet file")
        src.add_argument("--hf-dataset", metavar="NAME",
                         help="a Hugging Face dataset name (e.g. ag_news) or a folder written by save_to_disk")
        q.add_argument("--text-column", default="text", help="column holding the text (default text)")
        q.add_argument("--label-column", default="label", help="column holding the label (default label)")
        q.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")

    t = sub.add_parser("train", help="train a classifier and evaluate it on the held-out rows",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    data_args(t)
    t.add_argument("--variant", choices=VARIANTS, default=d.variant,
                   help=f"Wave Network interference or modulation, or the transformer control (default {d.variant})")
    t.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="optimizer steps (default 0: --epochs passes over the training rows)")
    t.add_argument("--epochs", type=float, default=d.epochs, help=f"passes when --max-steps is 0 (default {d.epochs})")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"texts per step (default {d.batch_size})")
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate, warmup then cosine (default {d.lr})")
    t.add_argument("--seed", type=int, default=d.seed, help=f"seed for init and data order (default {d.seed})")
    t.add_argument("--vocab-size", type=int, default=d.vocab_size,
                   help=f"BPE vocabulary trained on the training texts (default {d.vocab_size})")
    t.add_argument("--d-model", type=int, default=d.d_model, help=f"embedding width (default {d.d_model})")
    t.add_argument("--ffn-hidden", type=int, default=d.ffn_hidden,
                   help=f"the Wave Network's feed-forward width; the control's is matched to the same parameter "
                        f"count (default {d.ffn_hidden})")
    t.add_argument("--max-len", type=int, default=d.max_len, help=f"tokens kept per text (default {d.max_len})")
    t.add_argument("--dropout", type=float, default=d.dropout, help=f"dropout (default {d.dropout})")
    t.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    t.add_argument("--overwrite", action="store_true", help="replace a classifier this command wrote into --out")

    e = sub.add_parser("eval", help="evaluate a trained classifier",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="the train command's --out folder, or its checkpoint/ folder")
    data_args(e)
    e.add_argument("--split", choices=["heldout", "all"], default="heldout",
                   help="heldout: the rows train held out (the same rule); all: every row (default heldout)")
    e.add_argument("--out", metavar="DIR", help="folder for metrics.json and the confusion matrix "
                                                "(default: the checkpoint's run folder / eval)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with run_command(interrupted="error: interrupted; files saved before are intact."):
        whole(args.threads, "threads", 0, 1024)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.command == "train":
            settings = TrainSettings(variant=args.variant, max_steps=args.max_steps, epochs=args.epochs,
                                     batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                     vocab_size=args.vocab_size, d_model=args.d_model, ffn_hidden=args.ffn_hidden,
                                     max_len=args.max_len, dropout=args.dropout, threads=args.threads)
            out = Path(args.out)
            if out.exists() and not out.is_dir():
                raise ClassifyError(f"--out {out} is a file, not a folder.")
            data = load_data(args.data, args.hf_dataset, args.text_column, args.label_column)
            result = train_classifier(data, settings, out, overwrite=args.overwrite,
                                      log=lambda m: print(m, file=sys.stderr, flush=True))
            print(f"checkpoint {out / 'checkpoint'} · metrics {out / 'metrics.json'} · "
                  f"{result['train_seconds']:.1f} s training, {result['parameters']:,} parameters")
        else:
            ckpt = Path(args.checkpoint)
            load_classifier(ckpt)  # a bad checkpoint is named before the data is read
            run = ckpt.parent if ckpt.name == "checkpoint" else ckpt
            out = Path(args.out) if args.out else run / "eval"
            data = load_data(args.data, args.hf_dataset, args.text_column, args.label_column)
            result = evaluate_checkpoint(str(ckpt), data, out, args.split)
            print(f"{result['n']:,} rows ({result['rows']}) · metrics {out / 'metrics.json'}")
        print(f"accuracy {result['accuracy']:.4f} macro_f1 {result['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
