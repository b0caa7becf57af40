"""Export a training run's best model (or any model folder) as a shippable folder: safetensors in a
chosen precision with held-out figures and a model card, or ONNX checked against torch.

    from wavegpt.export import export_run
    result = export_run("runs/ship", "checkpoints", dtype="float16")
    result.figures     # {"float32": {...}, "float16": {...}} held-out figures, {} without a corpus

The held-out split is the run's corpus (run.json), else `dataset` / `data`, else the dataset
named in the model's config.json; a model folder with none of these is exported without
figures (safetensors) or checked on random windows (onnx), and so is an ONNX export whose corpus,
named by the run or the config but not by `dataset` / `data`, cannot be had (offline and not cached;
`ExportResult.note` says why). wavegpt-export is this function behind flags.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .card import CARD_NAME, build_model_card, ensure_card
from .checkpoint import model_folder_writer, resolve_checkpoint, write_model_files
from .data import DATASETS, DataError, check_corpus_fits, default_cache_dir, iter_eval_batches, prepare_corpus
from .evaluation import evaluate
from .extras import require
from .generation import check_tokenizer_matches
from .hub import push
from .model.gpt import WaveGPT
from .onnx_export import ONNX_NAME, export_onnx, max_difference
from .ownership import check_model_target
from .tokenizer import WaveTokenizer
from .validation import whole

FORMATS = ("safetensors", "onnx")
DTYPES = ("float32", "float16", "bfloat16")
ONNX_TOLERANCE = 1e-4  # largest absolute logit difference onnxruntime may show against torch


@dataclass
class ExportResult:
    source: Path  # the model folder that was exported
    out: str | Path  # the folder written, as given
    details: dict[str, Any] = field(default_factory=dict)  # figures (safetensors) or the ONNX check; "pushed"
    evaluated: bool = False  # whether a held-out corpus was known (else no figures / random windows)
    note: str | None = None  # why a known corpus was not used (ONNX offline: checked on random windows)

    @property
    def figures(self) -> dict[str, Any]:
        """The held-out figures per precision (safetensors with a corpus), else {}."""
        return {k: v for k, v in self.details.items() if isinstance(v, dict)}

    def to_dict(self) -> dict[str, Any]:
        """What wavegpt-export prints: source, out, then the details."""
        return {"source": str(self.source), "out": str(self.out), **self.details}


def find_corpus(run: dict[str, Any], config_data: Any, tokenizer, block_size: int, *, dataset: str | None = None,
                data: str | None = None, cache_dir: str | Path | None = None):
    """The corpus to evaluate on (see the module docstring), or None."""

    if dataset is None and data is None:
        dataset, data = run.get("dataset"), run.get("data")
        if dataset is None and data is None and config_data in DATASETS:
            dataset = config_data
    if dataset is None and data is None:
        return None
    cache = cache_dir or run.get("cache_dir") or default_cache_dir()
    corpus = prepare_corpus(dataset, data, tokenizer.vocab_size, Path(cache).expanduser(), tokenizer=tokenizer)
    check_corpus_fits(corpus, block_size)
    return corpus


def _read_run(path: Path) -> dict[str, Any]:
    """The run.json beside an exported run's best/ model ({} when there is none), or one sentence naming it."""
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        run = None
    if not isinstance(run, dict):
        raise ValueError(f"{path} does not hold a run's arguments; move it away to export the model alone.")
    return run


def write_safetensors(source: Path, model, tokenizer, corpus, run: dict[str, Any], tmp: Path, *, dtype: str,
                      batch_size: int, eval_batches: int, card: bool = True,
                      repo_id: str | None = None) -> dict[str, Any]:
    """model.safetensors in `dtype`, config.json (with the figures of both precisions when there is a
    corpus) and the tokenizer into `tmp`, plus a model card unless `card` is false; returns the figures."""
    from accelerate import Accelerator


    weights_dtype = getattr(torch, dtype)
    figures: dict[str, Any] = {}
    if corpus is not None:
        sizes = dict(block_size=model.config.block_size, batch_size=batch_size, eval_batches=eval_batches,
                     accelerator=Accelerator(cpu=True))
        full = evaluate(model, corpus, **sizes)
        exported = WaveGPT.from_resolved(source)
        exported.load_state_dict({k: v.to(weights_dtype).float() for k, v in model.state_dict().items()})
        figures = {"float32": full, dtype: evaluate(exported, corpus, **sizes)}
        if not all(math.isfinite(v) for f in figures.values() for v in f.values()):  # never ship a NaN figure
            raise ValueError(f"The held-out figures of {source} are not finite ({figures[dtype]}); nothing was "
                             f"written.")
        model.config.extra = {**model.config.extra, "export": {"dtype": dtype, **figures}}
    write_model_files(model, tmp, dtype=weights_dtype)
    tokenizer.save_pretrained(tmp, model_max_length=model.config.block_size)
    if card:
        build_model_card(tmp, run=run or None, repo_id=repo_id).save(tmp / CARD_NAME)
    return figures


def write_onnx(model, tokenizer, corpus, tmp: Path, out: Path) -> dict[str, Any]:
    """model.onnx, config.json and the tokenizer into `tmp`, after checking onnxruntime's logits against
    torch's (ValueError past ONNX_TOLERANCE); returns the check."""

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


def export_run(source: str | Path, out: str | Path, *, format: str = "safetensors", dtype: str = "float16",
               dataset: str | None = None, data: str | None = None, cache_dir: str | Path | None = None,
               eval_batches: int = 40, batch_size: int = 32, push_to_hub: str | None = None,
               private: bool = False) -> ExportResult:
    """Export `source` (a training run folder, whose best/ model is exported, any model folder, or a Hub
    repo id) into the folder `out`, atomically; optionally upload it to the Hub model repo `push_to_hub`.

    format: "safetensors" (weights in `dtype`, figures of both precisions, a model card when `out` has no
    README.md) or "onnx" (float32, checked against torch). Raises CheckpointError, DataError, ValueError
    (MissingExtraError, OwnershipError...) or OSError with a one-sentence message; nothing is written
    then."""

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    whole(eval_batches, "eval_batches", 1, 1_000_000)
    whole(batch_size, "batch_size", 1, 1_000_000)
    if format == "onnx":
        require("onnx", "wavegpt-export --format onnx")
    folder = resolve_checkpoint(source)
    check_model_target(Path(out))  # before the slow evaluation: never a file, a run, or another's model
    model = WaveGPT.from_resolved(folder)
    tokenizer = WaveTokenizer.load(folder)
    check_tokenizer_matches(tokenizer, model, folder / "tokenizer.json", folder)  # never ship a mismatched pair
    run_json = Path(source) / "run.json"
    run = _read_run(run_json)
    note = None
    try:
        corpus = find_corpus(run, model.config.extra.get("data"), tokenizer, model.config.block_size,
                             dataset=dataset, data=data, cache_dir=cache_dir)
    except DataError as e:  # the config's (or run's) corpus cannot be had, e.g. offline and not cached
        if format != "onnx" or dataset is not None or data is not None:
            raise
        corpus, note = None, f"{str(e).rstrip('.')}; checking the ONNX graph on random windows instead."
    with model_folder_writer(out) as tmp:
        if format == "onnx":
            details = write_onnx(model, tokenizer, corpus, tmp, Path(out))
        else:
            details = write_safetensors(folder, model, tokenizer, corpus, run, tmp, dtype=dtype,
                                        batch_size=batch_size, eval_batches=eval_batches,
                                        card=not (Path(out) / CARD_NAME).exists(),  # an existing card is kept
                                        repo_id=push_to_hub)
    if push_to_hub:
        ensure_card(out, push_to_hub)
        details["pushed"] = push(out, push_to_hub, private=private or None)
    return ExportResult(source=folder, out=out, details=details, evaluated=corpus is not None, note=note)
