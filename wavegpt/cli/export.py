"""wavegpt-export: turn a training run's best model into a shippable checkpoint folder.

    wavegpt-export --run runs/ship --out checkpoints --dtype float16

Writes model.safetensors (in --dtype), config.json and tokenizer.json atomically, after
evaluating the held-out split with the full-precision and the exported weights, so the
figures in config.json (`extra.export`) are those of the file that ships.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    from accelerate import Accelerator

    from ..checkpoint import CheckpointError, atomic_folder, load_model, resolve_checkpoint, write_model_files
    from ..data import DataError, check_corpus_fits, default_cache_dir, prepare_corpus
    from ..tokenizer import WaveTokenizer
    from ..trainer import TrainArgs, evaluate

    p = argparse.ArgumentParser(prog="wavegpt-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a training run folder (its best/ model is exported) or a model folder")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16")
    p.add_argument("--eval-batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    ns = p.parse_args(argv)
    try:
        source = resolve_checkpoint(ns.run)
        model = load_model(source)
        tokenizer = WaveTokenizer.load(source)
        run_json = Path(ns.run) / "run.json"
        run = json.loads(run_json.read_text()) if run_json.is_file() else {}
        corpus = prepare_corpus(run.get("dataset"), run.get("data"), tokenizer.vocab_size,
                                Path(run.get("cache_dir") or default_cache_dir()), tokenizer=tokenizer)
        check_corpus_fits(corpus, model.config.block_size)
        accelerator = Accelerator(cpu=True)
        args = TrainArgs(batch_size=ns.batch_size, eval_batches=ns.eval_batches)
        dtype = getattr(torch, ns.dtype)
        full = evaluate(model, corpus, args, model.config.block_size, accelerator)
        exported = load_model(source)
        exported.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
        low = evaluate(exported, corpus, args, model.config.block_size, accelerator)
        model.config.extra = {**model.config.extra, "export": {"dtype": ns.dtype, "float32": full, ns.dtype: low}}
        with atomic_folder(ns.out) as tmp:
            write_model_files(model, tmp, dtype=dtype)
            tokenizer.save(tmp / "tokenizer.json")
            card = Path(ns.out) / "README.md"
            if card.is_file():  # keep the model card across re-exports
                (tmp / "README.md").write_text(card.read_text())
    except (CheckpointError, DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"source": str(source), "float32": full, ns.dtype: low}, indent=2))


if __name__ == "__main__":
    main()
