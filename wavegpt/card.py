"""The model card of a model folder: architecture, data, held-out figures, the machine and the training
command rebuilt from the run's run.json (`huggingface_hub.ModelCard`, written as README.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from .args import TrainArgs
from .config import WaveGPTConfig
from .data import DATASETS

CARD_NAME = "README.md"


def training_command(run: dict[str, Any]) -> str:
    """The wavegpt-train command a run.json describes (flags that differ from the defaults)."""
    defaults = TrainArgs()
    skip = {"resume", "overwrite", "stop_at", "progress", "overrides", "cache_dir", "report_to", "out"}
    parts = ["wavegpt-train", "--model", str(run.get("model") or defaults.model),
             "--preset", str(run.get("preset") or defaults.preset)]
    for key, value in run.items():
        if key in skip or key in ("model", "preset") or not hasattr(defaults, key) or value is None:
            continue
        if value == getattr(defaults, key):
            continue
        parts += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    if not run.get("data") and "--dataset" not in parts:
        parts += ["--dataset", str(run.get("dataset") or defaults.dataset)]
    for key, value in sorted((run.get("overrides") or {}).items()):  # config fields
        if key in ("block_size", "dropout"):  # the two with their own flag; the rest go through --set
            parts += [f"--{key.replace('_', '-')}", str(value)]
        else:
            parts += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return " ".join(parts + ["--out", str(run.get("out") or defaults.out)])


def build_model_card(folder: str | Path, run: dict[str, Any] | None = None, machine: str | None = None,
                     repo_id: str | None = None):
    """A `huggingface_hub.ModelCard` from the folder's config.json (architecture, data, held-out
    figures, the machine the trainer recorded) and, when given, the training run's arguments
    (run.json) and the Hub repo it is meant for (used in the card's commands)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    config = WaveGPTConfig.from_json(folder / "config.json")
    extra = config.extra if isinstance(config.extra, dict) else {}
    data = str(extra.get("data") or (run or {}).get("dataset") or (run or {}).get("data") or "unknown")
    val = extra.get("val_nats_per_char")
    name = f"wavegpt {config.preset} ({config.model_type}, {config.d_model}x{config.n_layers})"
    results = []
    if isinstance(val, (int, float)):
        results.append(EvalResult(task_type="text-generation", dataset_type=data, dataset_name=data,
                                  dataset_split="last 10% (held out)", metric_type="nats_per_char",
                                  metric_name="held-out nats/char", metric_value=round(float(val), 5)))
    card_data = ModelCardData(library_name="wavegpt", pipeline_tag="text-generation", model_name=name,
                              tags=["wavegpt", "wave-native-gpt", config.preset, "safetensors"],
                              eval_results=results or None)
    rows = [("architecture", f"{config.model_type}, preset `{config.preset}`: d_model {config.d_model}, "
                             f"{config.n_layers} layers, {config.n_heads} heads, context {config.block_size}"),
            ("parameters", _parameters(folder)),
            ("training", f"optimizer {config.optimizer}, loss {config.loss}"),
            ("data", f"{data}; first 90% trained on ({_count(extra.get('train_tokens'))} tokens), last 10% "
                     f"held out ({_count(extra.get('val_tokens'))} tokens)"),
            ("steps", f"{_count(extra.get('step'))} ({_count(extra.get('tokens'))} tokens seen)")]
    if isinstance(val, (int, float)):
        rows.append(("held-out val", f"**{val:.3f} nats/char** ({extra.get('val_nats_per_token', float('nan')):.3f} "
                                     "nats/token)"))
    export = extra.get("export")
    if isinstance(export, dict) and export.get("dtype") in export:
        low = export[export["dtype"]].get("val_nats_per_char")
        if isinstance(low, (int, float)):
            rows.append(("weights", f"{export['dtype']} ({low:.5f} nats/char after conversion)"))
    rows.append(("machine", machine or extra.get("machine") or "not recorded"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    where = repo_id or "ORG/NAME"
    eval_source = f"--dataset {data}" if data in DATASETS else "--data YOUR_TEXT_FILE"
    command = training_command(run) if run else "not recorded (the model was not exported from a run folder)"
    body = (f"# {name}\n\nA Wave-Native GPT trained with [wavegpt](https://pypi.org/project/wavegpt/).\n\n"
            f"| | |\n|---|---|\n{table}\n\nTraining command:\n\n```bash\n{command}\n```\n\n"
            "Sample from it and evaluate it:\n\n```bash\npip install wavegpt\n"
            f"wavegpt-generate --checkpoint {where} --prompt \"ROMEO:\"\n"
            f"wavegpt-eval --checkpoint {where} {eval_source}\n```\n")
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _parameters(folder: Path) -> str:
    """Stored tensors' element count (tied weights are stored once, so this is the model's count)."""
    try:
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            return f"{sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()):,}"
    except (OSError, SafetensorError):
        return "unknown"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "unknown"


def ensure_card(folder: str | Path, repo_id: str | None = None) -> None:
    """Give a model folder without a README.md a generated model card (an existing card is kept)."""
    folder = Path(folder)
    has_model = any((folder / name).is_file() for name in ("model.safetensors", "model.onnx"))
    if has_model and not (folder / CARD_NAME).exists():
        build_model_card(folder, repo_id=repo_id).save(folder / CARD_NAME)
