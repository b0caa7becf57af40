"""The Hugging Face Hub: download a model folder by repo id, push one, and write its model card.

`from_pretrained("org/name")` goes through `huggingface_hub.snapshot_download`, so the Hub's
cache, `HF_HUB_OFFLINE=1`, `HF_HUB_CACHE` and `HF_TOKEN` behave as in every other Hugging Face
library. A local folder always wins over a repo id of the same spelling.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

# What a model folder holds; nothing else is downloaded (no stray files from a repo).
MODEL_FILES = ["config.json", "model.safetensors", "model.onnx", "tokenizer.json", "tokenizer_config.json",
               "generation_config.json", "README.md"]
CARD_NAME = "README.md"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubError(ValueError):
    """The Hub could not give or take a model; the message is one sentence."""


def is_repo_id(name: str | Path) -> bool:
    """`org/name` as the Hub spells repository ids (a path that exists locally is never one)."""
    text = str(name)
    return bool(_REPO_ID.match(text)) and ".." not in text and "--" not in text and not Path(text).exists()


def download(repo_id: str, revision: str | None = None) -> Path:
    """The snapshot folder of a model repo (from the cache when offline or already there)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES,
                                      library_name="wavegpt"))
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id} is neither a local folder nor a model repository on the Hugging Face Hub "
                       "(or it is private: log in with `hf auth login` or set HF_TOKEN).") from None
    except LocalEntryNotFoundError:
        raise HubError(f"{repo_id} is not a local folder, and the Hugging Face Hub cache has no copy of it "
                       "(offline, or the Hub cannot be reached).") from None
    except Exception as e:  # noqa: BLE001 -- HTTP clients raise many unrelated types; the user needs one sentence
        raise HubError(f"Could not download {repo_id} from the Hugging Face Hub ({_one_line(e)}).") from None


def push(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
         commit_message: str | None = None, api: Any = None) -> str:
    """Create the repo if needed and upload the model folder in one commit; returns the commit URL.

    A folder without a README.md gets a generated model card first (an existing card is kept).
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.onnx")):
        raise HubError(f"{folder} holds no model (model.safetensors or model.onnx) to push.")
    if not (folder / CARD_NAME).exists():
        build_model_card(folder, repo_id=repo_id).save(folder / CARD_NAME)
    api = api if api is not None else HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=MODEL_FILES,
                                 commit_message=commit_message or f"Upload {folder.name} with wavegpt")
    except Exception as e:  # noqa: BLE001 -- HTTP clients raise many unrelated types; the user needs one sentence
        raise HubError(f"Could not push {folder} to {repo_id} on the Hugging Face Hub ({_one_line(e)}).") from None
    return str(getattr(info, "commit_url", info))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


# --- model card ---------------------------------------------------------------------------------------------


def machine_description() -> str:
    """The machine figures were measured on, as the README states it (CPU, cores, GPU, torch)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def training_command(run: dict[str, Any]) -> str:
    """The wavegpt-train command a run.json describes (flags that differ from the defaults)."""
    from .trainer import TrainArgs

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

    from .config import WaveGPTConfig

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
    eval_source = "--dataset shakespeare" if data == "shakespeare" else "--data YOUR_TEXT_FILE"
    command = training_command(run) if run else "not recorded (the model was not exported from a run folder)"
    body = (f"# {name}\n\nA Wave-Native GPT trained with [wavegpt](https://pypi.org/project/wavegpt/).\n\n"
            f"| | |\n|---|---|\n{table}\n\nTraining command:\n\n```bash\n{command}\n```\n\n"
            "Sample from it and evaluate it:\n\n```bash\npip install wavegpt\n"
            f"wavegpt-generate --checkpoint {where} --prompt \"ROMEO:\"\n"
            f"wavegpt-eval --checkpoint {where} {eval_source}\n```\n")
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _parameters(folder: Path) -> str:
    """Stored tensors' element count (tied weights are stored once, so this is the model's count)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            return f"{sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()):,}"
    except (OSError, SafetensorError):
        return "unknown"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "unknown"
