"""wavegpt-eval: held-out figures of a checkpoint on a corpus, without training.

    wavegpt-eval --checkpoint checkpoints --dataset shakespeare
    wavegpt-eval --checkpoint runs/tiny --data input.txt --split all --stride 64

The corpus is cut and tokenized exactly as wavegpt-train does (with the checkpoint's own
tokenizer), so `--split val` is the held-out last 10% that training reported on. Prints
nats/token, perplexity, bits per byte and, on the last line, nats/char.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data import DATASETS, check_corpus_fits, default_cache_dir, prepare_corpus
from ..evaluation import evaluate_split
from ..generation import load_for_generation
from ..validation import whole
from . import add_checkpoint_argument, checkpoint_or_shipped, command_errors, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wavegpt-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_argument(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=DATASETS, help="named corpus, as wavegpt-train takes it")
    src.add_argument("--data", metavar="PATH", help="a local text file, or a folder of .txt/.md files")
    p.add_argument("--split", choices=["val", "all"], default="val",
                   help="val: the held-out last 10%% training never saw (default); all: the whole corpus")
    p.add_argument("--stride", type=int, default=None,
                   help="sliding-window evaluation: windows this many tokens apart, each scoring only its new "
                        "targets (1 to the context length; default: non-overlapping windows, as training "
                        "evaluates)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    p.add_argument("--cache-dir", help="data cache (default $WAVEGPT_CACHE or ~/.cache/wavegpt)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line before the last")
    return p


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    whole(args.batch_size, "batch_size", 1, 1_000_000)
    checkpoint = checkpoint_or_shipped(args.checkpoint)
    model, tokenizer = load_for_generation(checkpoint, args.device)
    if args.stride is not None:
        whole(args.stride, "stride", 1, model.config.block_size)
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    corpus = prepare_corpus(args.dataset, args.data, tokenizer.vocab_size, cache, tokenizer=tokenizer)
    check_corpus_fits(corpus, model.config.block_size,
                      f"the checkpoint's context is {model.config.block_size} tokens, so give a larger corpus")
    result = evaluate_split(model, corpus, args.split, args.stride, args.batch_size)
    how = (f"sliding windows, stride {args.stride}" if args.stride else "non-overlapping windows")
    split = "held-out last 10%" if args.split == "val" else "whole corpus"
    print(f"checkpoint   {checkpoint}")
    print(f"data         {corpus.name}, {split}: {result.tokens:,} tokens, {result.chars:,} characters, "
          f"{result.bytes:,} bytes")
    print(f"windows      {result.windows:,} of {model.config.block_size} tokens, {how}; "
          f"{result.scored:,} targets scored")
    print(f"nats/token   {result.nats_per_token:.5f}")
    print(f"perplexity   {result.perplexity:.3f}")
    print(f"bits/byte    {result.bits_per_byte:.5f}")
    if args.json:
        print(json.dumps({"checkpoint": str(checkpoint), "data": corpus.name, **result.to_dict()}))
    print(f"nats/char    {result.nats_per_char:.5f}")


def main(argv: list[str] | None = None) -> None:
    with run_command((*command_errors(), OSError)):
        run(argv)


if __name__ == "__main__":
    main()
