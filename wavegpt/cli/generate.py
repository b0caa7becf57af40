"""wavegpt-generate: sample text from a trained Wave-Native GPT, streamed as it is produced.

    python generate.py --prompt "ROMEO:" --max-new-tokens 300 --seed 1
    python generate.py --checkpoint runs/tiny --temperature 0 --no-cache

The text goes to stdout (the prompt first); the seed and the speed go to stderr, so
`--seed` reproduces a run exactly, with or without --no-cache.
"""

from __future__ import annotations

import argparse
import sys
import time

from .. import generation
from ..sampling import DEFAULT_MAX_NEW_TOKENS
from . import add_sampling_arguments, checkpoint_or_shipped, prompt_parser, run_command, sampling_settings


def build_parser() -> argparse.ArgumentParser:
    p = prompt_parser("wavegpt-generate", __doc__)
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                   help=f"tokens to generate per sample, 1 to {generation.MAX_NEW_TOKENS} "
                        f"(default {DEFAULT_MAX_NEW_TOKENS})")
    add_sampling_arguments(p)
    p.add_argument("--num-samples", type=int, default=1,
                   help=f"independent samples, 1 to {generation.MAX_SAMPLES}, drawn together as one batch and "
                        "printed one after another, separated by a line of dashes; sample i is the text --seed "
                        "SEED+i gives alone (default 1)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end a sample before this text (repeatable; the stop text itself is not printed)")
    p.add_argument("--ignore-eot", action="store_true",
                   help="keep generating past the end-of-text token (default: a sample ends there)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute the whole context for every token instead of decoding incrementally "
                        "(same tokens, much slower; for checking)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's, one per core); pass 1 when other programs keep "
                        "the cores busy, where waiting threads make decoding many times slower")
    return p


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    generation.check_prompt_text(args.prompt)  # before anything is printed or loaded
    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise ValueError(f"--threads must be a whole number from 1 to 1024, not {args.threads}.")
        import torch

        torch.set_num_threads(args.threads)
    checkpoint = checkpoint_or_shipped(args.checkpoint)
    settings = sampling_settings(args, args.max_new_tokens, num_samples=args.num_samples, use_cache=not args.no_cache,
                                 stop_at_eot=not args.ignore_eot, stop=args.stop)
    model, tokenizer = generation.load_for_generation(checkpoint, args.device)
    if settings.seed is None:
        settings = settings.replace(seed=generation.random_seed())
    print(f"seed {settings.seed} (rerun with --seed {settings.seed} to get the same text)", file=sys.stderr)
    stats: dict = {}
    pieces = generation.stream_samples(model, tokenizer, args.prompt, settings=settings, stats=stats)
    start = time.perf_counter()
    _write(args.prompt)
    current = 0
    for sample, piece in pieces:
        while current < sample:  # the next sample begins: a line of dashes, then its prompt
            _write(generation.SAMPLE_SEPARATOR + args.prompt)
            current += 1
        _write(piece)
    while current < args.num_samples - 1:  # samples that produced no text still get their line
        _write(generation.SAMPLE_SEPARATOR + args.prompt)
        current += 1
    _write("\n")
    elapsed = time.perf_counter() - start
    n = stats.get("tokens", 0)
    cache = "off" if args.no_cache else "on"
    ended = [e for e in stats.get("ended", []) if e in ("eot", "stop")]
    why = f"; {len(ended)} of {args.num_samples} sample(s) ended at end-of-text or a stop string" if ended else ""
    print(f"{n} tokens in {elapsed:.2f} s ({n / max(elapsed, 1e-9):.1f} tokens/s, cache {cache}{why})",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    if hasattr(sys.stdout, "reconfigure"):  # a non-UTF-8 console prints '?' rather than crash
        sys.stdout.reconfigure(errors="replace")
    with run_command(quiet_broken_pipe=True):  # a closed pipe (`| head`) stops quietly
        run(argv)


if __name__ == "__main__":
    main()
