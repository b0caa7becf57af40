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
figures (safetensors) or checked on random windows (onnx).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ONNX_TOLERANCE = 1e-4  # largest absolute logit difference onnxruntime may show against torch


def build_parser() -> argparse.ArgumentParser:
    from ..data import DATASETS

    p = argparse.ArgumentParser(prog="wavegpt-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a training run folder (its best/ model is exported) or a model folder")
    source.add_argument("--checkpoint", metavar="FOLDER",
                        help="any model folder (or a Hub repo id, org/name) instead of a run")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                   help="safetensors: a wavegpt/Hugging Face model folder (default); onnx: model.onnx")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
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


def _corpus(ns: argparse.Namespace, run: dict[str, Any], config_data: Any, tokenizer, block_size: int):
    """The corpus to evaluate on (see the module docstring), or None."""
    from ..data import DATASETS, check_corpus_fits, default_cache_dir, prepare_corpus

    dataset, data = ns.dataset, ns.data
    if dataset is None and data is None:
        dataset, data = run.get("dataset"), run.get("data")
        if dataset is None and data is None and config_data in DATASETS:
            dataset = config_data
    if dataset is None and data is None:
        return None
    cache = ns.cache_dir or run.get("cache_dir") or default_cache_dir()
    corpus = prepare_corpus(dataset, data, tokenizer.vocab_size, Path(cache).expanduser(), tokenizer=tokenizer)
    check_corpus_fits(corpus, block_size)
    return corpus


def _safetensors(ns, source: Path, model, tokenizer, corpus, run: dict[str, Any], tmp: Path) -> dict[str, Any]:
    from accelerate import Accelerator

    from ..checkpoint import load_model, write_model_files
    from ..hub import CARD_NAME, build_model_card
    from ..trainer import TrainArgs, evaluate

    dtype = getattr(torch, ns.dtype)
    figures: dict[str, Any] = {}
    if corpus is not None:
        accelerator = Accelerator(cpu=True)
        args = TrainArgs(batch_size=ns.batch_size, eval_batches=ns.eval_batches)
        full = evaluate(model, corpus, args, model.config.block_size, accelerator)
        exported = load_model(source)
        exported.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
        figures = {"float32": full, ns.dtype: evaluate(exported, corpus, args, model.config.block_size, accelerator)}
        model.config.extra = {**model.config.extra, "export": {"dtype": ns.dtype, **figures}}
    write_model_files(model, tmp, dtype=dtype)
    tokenizer.save_pretrained(tmp, model_max_length=model.config.block_size)
    if not (Path(ns.out) / CARD_NAME).exists():  # an existing card (hand-written or not) is kept
        build_model_card(tmp, run=run or None, repo_id=ns.push_to_hub).save(tmp / CARD_NAME)
    return figures


def _onnx(model, tokenizer, corpus, tmp: Path, out: Path) -> dict[str, Any]:
    from ..data import iter_eval_batches
    from ..onnx_export import ONNX_NAME, export_onnx, max_difference

    block = model.config.block_size
    path = export_onnx(model, tmp / ONNX_NAME)
    if corpus is not None:
        windows, _ = next(iter_eval_batches(corpus.val, 8, block, 1))
        checked_on = f"{len(windows)} held-out windows of {block} tokens"
    else:
        windows = torch.randint(0, model.config.vocab_size, (8, block), generator=torch.Generator().manual_seed(0))
        checked_on = f"{len(windows)} random windows of {block} tokens"
    short = windows[:3, : max(1, block // 2 + 3)]  # another batch size and length: the axes are dynamic
    diff = max(max_difference(path, model, windows), max_difference(path, model, short))
    if diff > ONNX_TOLERANCE:
        raise ValueError(f"onnxruntime's logits differ from torch's by up to {diff:.2e} (more than "
                         f"{ONNX_TOLERANCE:g}); nothing was written.")
    model.config.extra = {**model.config.extra, "onnx": {"max_abs_logit_difference": diff, "checked_on": checked_on}}
    (tmp / "config.json").write_text(model.config.to_json() + "\n", encoding="utf-8")
    tokenizer.save_pretrained(tmp, model_max_length=block)
    return {"onnx": str(out / ONNX_NAME), "max_abs_logit_difference": diff, "checked_on": checked_on}


def main(argv: list[str] | None = None) -> None:
    from ..checkpoint import CheckpointError, load_model, model_folder_writer, resolve_checkpoint
    from ..data import DataError
    from ..generation import check_tokenizer_matches
    from ..ownership import check_model_target
    from ..tokenizer import WaveTokenizer

    ns = build_parser().parse_args(argv)
    try:
        if ns.format == "onnx":
            from ..extras import require

            require("onnx", "wavegpt-export --format onnx")
        given = ns.run or ns.checkpoint
        source = resolve_checkpoint(given)
        check_model_target(Path(ns.out))  # before the slow evaluation: never a file, a run, or another's model
        model = load_model(source)
        tokenizer = WaveTokenizer.load(source)
        check_tokenizer_matches(tokenizer, model, source / "tokenizer.json", source)  # never ship a mismatched pair
        run_json = Path(given) / "run.json"
        run = json.loads(run_json.read_text()) if run_json.is_file() else {}
        corpus = _corpus(ns, run, model.config.extra.get("data"), tokenizer, model.config.block_size)
        with model_folder_writer(ns.out) as tmp:
            if ns.format == "onnx":
                result = _onnx(model, tokenizer, corpus, tmp, Path(ns.out))
            else:
                result = _safetensors(ns, source, model, tokenizer, corpus, run, tmp)
        if ns.push_to_hub:
            from ..hub import push

            result["pushed"] = push(ns.out, ns.push_to_hub, private=ns.private or None)
    except (CheckpointError, DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if corpus is None:
        print("note: no corpus known for this model (pass --dataset or --data), so no held-out figures",
              file=sys.stderr)
    print(json.dumps({"source": str(source), "out": str(ns.out), **result}, indent=2))


if __name__ == "__main__":
    main()
