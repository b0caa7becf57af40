"""wavegpt-export: turn a training run's best model (or any model folder) into a shippable folder.

    wavegpt-export --run runs/ship --out checkpoints --dtype float16
    wavegpt-export --checkpoint checkpoints --format onnx --out onnx/
    wavegpt-export --run runs/ship --out ship/ --push-to-hub my-org/wavegpt-tiny

--format safetensors (default) writes model.safetensors (in --dtype), config.json and the
tokenizer files, after evaluating the held-out split with the full-precision and the exported
weights, so the figures in config.json (`extra.export`) are those of the file that ships; a
folder without a README.md gets a model card generated from them. --format onnx writes
model.onnx (float32 logits, dynamic batch and sequence), config.json and the tokenizer files,
after checking onnxruntime against torch on held-out windows. --push-to-hub uploads the
written folder to a Hugging Face Hub model repo (token: HF_TOKEN or `hf auth login`).

The held-out split is the run's corpus (run.json), else --dataset/--data, else the dataset
named in the model's config.json; a model folder with none of these is exported without
figures (safetensors) or checked on random windows (onnx); so is an ONNX export whose corpus
(named by the run or the config, not by --dataset/--data) cannot be had offline, with a one-line
note. The work is wavegpt.export.export_run.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..data import DATASETS
from ..export import DTYPES, FORMATS, export_run
from . import command_errors, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wavegpt-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a training run folder (its best/ model is exported) or a model folder")
    source.add_argument("--checkpoint", metavar="FOLDER",
                        help="any model folder (or a Hub repo id, org/name) instead of a run")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors: a wavegpt/Hugging Face model folder (default); onnx: model.onnx")
    p.add_argument("--dtype", choices=DTYPES, default="float16",
                   help="weights' precision in model.safetensors (default float16; ONNX is always float32)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=DATASETS, help="corpus whose held-out split to evaluate on "
                                                          "(default: the run's)")
    data.add_argument("--data", metavar="PATH", help="a local text file or folder instead")
    p.add_argument("--cache-dir", help="data cache (default: the run's, else $WAVEGPT_CACHE or ~/.cache/wavegpt)")
    p.add_argument("--eval-batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload the folder to this Hub model repo")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private (with --push-to-hub)")
    return p


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    with run_command((*command_errors(), OSError)):
        result = export_run(ns.run or ns.checkpoint, ns.out, format=ns.format, dtype=ns.dtype, dataset=ns.dataset,
                            data=ns.data, cache_dir=ns.cache_dir, eval_batches=ns.eval_batches,
                            batch_size=ns.batch_size, push_to_hub=ns.push_to_hub, private=ns.private)
        if result.note:
            print(f"note: {result.note}", file=sys.stderr)
        elif not result.evaluated:
            print("note: no corpus known for this model (pass --dataset or --data), so no held-out figures",
                  file=sys.stderr)
        print(json.dumps(result.to_dict(), indent=2))  # inside the tail: a full disk under stdout is one sentence


if __name__ == "__main__":
    main()
