"""wavegpt-bench: train the classic baseline and wave presets on equal budgets, several seeds,
and compare them on held-out data.

    wavegpt-bench --model tiny --max-tokens 1000000 --seeds 0 1 2 --out bench-results
"""

from __future__ import annotations

import argparse

from ..bench import BenchArgs, run_benchmark
from ..config import PRESETS, SIZES
from ..data import DATASETS
from ..extras import require
from . import run_command


def main(argv: list[str] | None = None) -> None:
    d = BenchArgs()
    p = argparse.ArgumentParser(prog="wavegpt-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=d.presets, metavar="PRESET",
                   help=f"rows to compare (default all presets: {', '.join(PRESETS)}); a row may add config "
                        "fields to a preset, e.g. baseline+amplitude_init=small, or be `seed_faithful` "
                        "(full_physics with position in the packet, as in wavegpt 0.1)")
    p.add_argument("--model", choices=list(SIZES), default=d.model, help=f"model size (default {d.model})")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help=f"training tokens per run, the same for every model (default {d.max_tokens:,})")
    p.add_argument("--max-time", type=float, help="compare at equal wall-clock time instead: seconds per run")
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds, help="seeds (default 0 1 2)")
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=DATASETS, default=d.dataset, help="named corpus (default shakespeare)")
    src.add_argument("--data", help="a local text file or folder instead")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--block-size", type=int, help="context length (default: the size's)")
    p.add_argument("--lr", type=float, help="peak learning rate of every row (default: each row's preset's tuned "
                                            "rate, wavegpt.config.RECIPES; a row's own +lr=VALUE wins)")
    p.add_argument("--dropout", type=float, default=d.dropout, help=f"dropout (default {d.dropout})")
    p.add_argument("--eval-batches", type=int, default=d.eval_batches, help="validation batches per evaluation")
    p.add_argument("--threads", type=int, help="CPU threads per run (OMP_NUM_THREADS)")
    p.add_argument("--jobs", type=int, default=d.jobs, help="runs trained at the same time (default 1)")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="do not add the two controls (classic, classic_rope) to the rows")
    p.add_argument("--reference", metavar="ROW",
                   help="the row every other is paired against seed by seed (default classic_rope when it runs)")
    p.add_argument("--cache-dir", help="data cache (default $WAVEGPT_CACHE or ~/.cache/wavegpt)")
    ns = p.parse_args(argv)
    # ConfigError, MissingExtraError: ValueErrors; RuntimeError: e.g. a foreign results.json
    with run_command((ValueError, RuntimeError)):
        args = BenchArgs(**{k: v for k, v in vars(ns).items() if v is not None})
        require("viz", "wavegpt-bench", ("matplotlib",))  # for its comparison plot
        run_benchmark(args)


if __name__ == "__main__":
    main()
