"""Text classification with the Wave Network (Zhang & Sheng, arXiv 2411.02674) and a same-size
one-layer transformer control: data, models, training, evaluation, checkpoints.

The paper's single-layer Wave Network: token embeddings w -> two linear views w1, w2 ->
per text and dimension the global semantics G = sqrt(sum over the text's tokens of w^2)
(padding masked out of it) and each token's phase against it -> complex tokens Z1, Z2 ->
interference |Z1 + Z2| or modulation |Z1 * Z2| -> LayerNorm -> feed-forward (residual,
LayerNorm) -> mean over the real tokens -> linear classifier. No extra energy rescaling: |Z| is
G, as the paper states (`wavegpt.ops.wave_network`).

The control (`transformer`): token + learned position embeddings -> one post-norm encoder
layer (4-head self-attention with padding masked, feed-forward) -> the same pooling and
classifier, its feed-forward width chosen so it has the Wave Network's parameter count.

Data: a local CSV / JSONL / parquet file or any Hugging Face dataset with a text and a
label column (`datasets.load_dataset(name)`, or a folder written by `save_to_disk`). The
held-out rows are the dataset's `test` split (HF), the rows whose `split` column says
`test` (local files), or else the last 10% of the rows, so the split never depends on a
seed. Labels may be strings or integers; a ClassLabel column keeps its names.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops.wave_network import global_wave_network
from .tokenizer import WaveTokenizer

VARIANTS = ("interference", "modulation", "transformer")
LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
HELD_OUT_FRACTION = 0.1
MODEL_NAME, CONFIG_NAME, TOKENIZER_NAME = "model.safetensors", "config.json", "tokenizer.json"
RUN_MARKER = ".wavegpt-classify"  # marks a folder wavegpt-classify wrote (only such folders are replaced)
OUTPUTS = ("checkpoint", "metrics.json", "confusion_matrix.png", RUN_MARKER)


class ClassifyError(ValueError):
    """Bad input: one sentence for the user."""


# --- data ------------------------------------------------------------------------------------


@dataclass
class TextData:
    texts: list[str]
    labels: list[Any]
    test_texts: list[str]
    test_labels: list[Any]
    label_names: list[str] | None  # from a ClassLabel column
    source: str
    split_rule: str


def _read_local(path: Path) -> list[dict[str, Any]]:
    fmt = LOCAL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        kind = path.suffix or "a file without an extension"
        raise ClassifyError(f"{path} must be a .csv, .tsv, .jsonl or .parquet file, not {kind}.")
    if not path.exists():
        raise ClassifyError(f"{path} does not exist.")
    if not path.is_file():
        raise ClassifyError(f"{path} is not a file.")
    try:
        if fmt == "csv":
            with path.open(newline="", encoding="utf-8") as f:
                sample = f.read(8192)
                f.seek(0)
                delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
                if not sample.strip():
                    raise ClassifyError(f"{path} is empty.")
                return list(csv.DictReader(f, delimiter=delimiter))
        if fmt == "jsonl":
            rows = []
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError:
                            raise ClassifyError(f"{path} line {n} is not valid JSON.") from None
                        if not isinstance(row, dict):
                            raise ClassifyError(f"{path} line {n} is not a JSON object.")
                        rows.append(row)
            return rows
        require_extra("pyarrow")
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise ClassifyError(f"{path} is not a readable parquet file ({type(e).__name__}).") from None
    except UnicodeDecodeError:
        raise ClassifyError(f"{path} is not UTF-8 text.") from None
    except csv.Error as e:
        raise ClassifyError(f"{path} is not a readable CSV file ({e}).") from None


def _columns(rows: list[dict[str, Any]], source: str, text_column: str, label_column: str) -> None:
    if not rows:
        raise ClassifyError(f"{source} holds no rows.")
    names = list(rows[0].keys())
    for col, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if col not in names:
            raise ClassifyError(f"{source} has no column {col!r} (columns: {', '.join(map(str, names))}); "
                                f"name it with {flag}.")


def _held_out(n: int) -> int:
    """Rows held out from n when there is no test split: the last 10%, at least one."""
    return max(1, int(round(n * HELD_OUT_FRACTION)))


def _split_rows(rows: list[dict[str, Any]], source: str) -> tuple[list, list, str]:
    if rows and "split" in rows[0]:
        test = [r for r in rows if str(r.get("split", "")).strip().lower() == "test"]
        train = [r for r in rows if str(r.get("split", "")).strip().lower() != "test"]
        if test and train:
            return train, test, "the rows whose split column is 'test'"
    if len(rows) < 2:
        raise ClassifyError(f"{source} needs at least two rows (training and held-out).")
    k = _held_out(len(rows))
    return rows[:-k], rows[-k:], f"the last {k} of {len(rows)} rows (10%)"


def _clean(rows: list[dict[str, Any]], text_column: str, label_column: str, source: str) -> tuple[list[str], list]:
    texts, labels = [], []
    for n, row in enumerate(rows, 1):
        text, label = row.get(text_column), row.get(label_column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise ClassifyError(f"{source} row {n} has no label in column {label_column!r}.")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise ClassifyError(f"{source} row {n}: labels must be strings or integers, not {type(label).__name__}.")
        texts.append("" if text is None else str(text))
        labels.append(label.strip() if isinstance(label, str) else label)
    if not any(t.strip() for t in texts):
        raise ClassifyError(f"{source} has no text in column {text_column!r}.")
    return texts, labels


def load_local(path: str | os.PathLike[str], text_column: str = "text", label_column: str = "label") -> TextData:
    path = Path(path)
    rows = _read_local(path)
    _columns(rows, str(path), text_column, label_column)
    train, test, rule = _split_rows(rows, str(path))
    tr_texts, tr_labels = _clean(train, text_column, label_column, str(path))
    te_texts, te_labels = _clean(test, text_column, label_column, str(path))
    return TextData(tr_texts, tr_labels, te_texts, te_labels, None, str(path), rule)


def load_hf(name: str, text_column: str = "text", label_column: str = "label") -> TextData:
    """A Hugging Face dataset by name (or local folder), through `datasets` (the `classify` extra)."""
    require_extra("datasets")
    import datasets

    datasets.utils.logging.disable_progress_bar()
    try:
        saved = Path(name) / "dataset_dict.json", Path(name) / "state.json"  # what save_to_disk writes
        if Path(name).is_dir() and any(p.is_file() for p in saved):
            ds = datasets.load_from_disk(name)
        else:
            ds = datasets.load_dataset(name)
    except FileNotFoundError as e:
        raise ClassifyError(f"The dataset {name!r} was not found ({_first_line(e)}).") from None
    except Exception as e:  # network, hub and format errors come as many types
        raise ClassifyError(f"The dataset {name!r} could not be loaded ({type(e).__name__}: "
                            f"{_first_line(e)}).") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    if "train" not in ds:
        raise ClassifyError(f"The dataset {name!r} has no train split (splits: {', '.join(ds)}).")
    train = ds["train"]
    missing = [c for c in (text_column, label_column) if c not in train.column_names]
    if missing:
        raise ClassifyError(f"The dataset {name!r} has no column {missing[0]!r} (columns: "
                            f"{', '.join(train.column_names)}); name it with "
                            f"{'--text-column' if missing[0] == text_column else '--label-column'}.")
    feature = train.features[label_column]
    label_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    test_name = next((s for s in ("test", "validation") if s in ds), None)
    if test_name is not None:
        test, rule = ds[test_name], f"the dataset's {test_name} split"
    else:
        if len(train) < 2:
            raise ClassifyError(f"The dataset {name!r} needs at least two rows (training and held-out).")
        k = _held_out(len(train))
        test = train.select(range(len(train) - k, len(train)))
        train = train.select(range(len(train) - k))
        rule = f"the last {k} of {len(train) + k} rows (10%)"
    tr = _clean(train.select_columns([text_column, label_column]).to_list(), text_column, label_column, name)
    te = _clean(test.select_columns([text_column, label_column]).to_list(), text_column, label_column, name)
    return TextData(tr[0], tr[1], te[0], te[1], label_names, name, rule)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).rstrip(".")[:200]


def load_data(data: str | None, hf_dataset: str | None, text_column: str, label_column: str) -> TextData:
    if (data is None) == (hf_dataset is None):
        raise ClassifyError("Give the data with exactly one of --data FILE and --hf-dataset NAME.")
    if data is not None:
        return load_local(data, text_column, label_column)
    return load_hf(hf_dataset, text_column, label_column)


# --- models ----------------------------------------------------------------------------------


@dataclass
class ClassifierConfig:
    variant: str = "modulation"
    vocab_size: int = 8192
    d_model: int = 256
    ffn_hidden: int = 1024  # the Wave Network's feed-forward width; the control's is matched to its size
    n_heads: int = 4  # the control's attention heads
    max_len: int = 256
    num_classes: int = 2
    dropout: float = 0.1
    labels: list[Any] = field(default_factory=list)  # class index -> label as it appears in the data
    label_names: list[str] = field(default_factory=list)  # display names (ClassLabel names, else str(label))
    text_column: str = "text"
    label_column: str = "label"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ClassifyError(f"variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}.")
        for name in ("vocab_size", "d_model", "ffn_hidden", "n_heads", "max_len", "num_classes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ClassifyError(f"{name} must be a positive integer, not {getattr(self, name)!r}.")
        if self.d_model % self.n_heads:
            raise ClassifyError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")
        if self.variant == "transformer" and self._control_gap() >= self.ffn_hidden:
            raise ClassifyError(f"The transformer control cannot be made as small as the Wave Network with "
                                f"--ffn-hidden {self.ffn_hidden}; use at least {self._control_gap() + 64}.")

    def _control_gap(self) -> int:
        d = self.d_model
        return round((self.max_len * d + 2 * (d * d + d)) / (2 * d + 1))

    @property
    def control_hidden(self) -> int:
        """The transformer control's feed-forward width that matches the Wave Network's parameter count."""
        # positions + attention's q, k (its v and out projections weigh what the two views weigh)
        return max(1, self.ffn_hidden - self._control_gap())


class _Head(nn.Module):
    """Mean over the real tokens, then a linear classifier."""

    def __init__(self, d: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(d, num_classes)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(h.dtype)[..., None]
        return self.classifier((h * m).sum(1) / m.sum(1).clamp_min(1.0))


class _FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class WaveNetworkClassifier(nn.Module):
    """The paper's single-layer Wave Network (interference or modulation)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        d = config.d_model
        self.op = config.variant
        self.embedding = nn.Embedding(config.vocab_size, d)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.proj1, self.proj2 = nn.Linear(d, d), nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = _FeedForward(d, config.ffn_hidden, config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.head = _Head(d, config.num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = self.drop(self.embedding(ids))
        z = global_wave_network(self.proj1(w), self.proj2(w), self.op, mask)
        h = self.norm1(z)
        h = self.norm2(h + self.ffn(h))
        return self.head(h, mask)


class TransformerClassifier(nn.Module):
    """The control: one post-norm encoder layer with learned positions, the same pooling and head."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        d = config.d_model
        self.embedding = nn.Embedding(config.vocab_size, d)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.position = nn.Embedding(config.max_len, d)
        nn.init.normal_(self.position.weight, std=0.02)
        self.attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = _FeedForward(d, config.control_hidden, config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.head = _Head(d, config.num_classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.embedding(ids) + self.position(pos))
        a, _ = self.attn(x, x, x, key_padding_mask=~mask.bool(), need_weights=False)
        h = self.norm1(x + self.drop(a))
        h = self.norm2(h + self.ffn(h))
        return self.head(h, mask)


def build_classifier(config: ClassifierConfig) -> nn.Module:
    config.validate()
    if config.variant == "transformer":
        return TransformerClassifier(config)
    return WaveNetworkClassifier(config)


def count_classifier_parameters(config: ClassifierConfig) -> int:
    """Parameter count without building the model."""
    d, V, C = config.d_model, config.vocab_size, config.num_classes
    ln, head = 2 * d, d * C + C
    if config.variant == "transformer":
        h = config.control_hidden
        return V * d + config.max_len * d + 4 * (d * d + d) + 2 * ln + (2 * d * h + h + d) + head
    h = config.ffn_hidden
    return V * d + 2 * (d * d + d) + 2 * ln + (2 * d * h + h + d) + head


# --- batches, metrics ------------------------------------------------------------------------


def encode(tokenizer: WaveTokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids, cut to max_len; an empty text becomes one end-of-text token (never zero length)."""
    return [(ids[:max_len] or [tokenizer.eot_id]) for ids in tokenizer.encode_batch(texts)]


def batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = True
    return ids, mask


@torch.no_grad()
def predict(model: nn.Module, seqs: list[list[int]], batch_size: int = 128) -> list[int]:
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths: little padding
    preds = [0] * len(seqs)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = batch([seqs[i] for i in chunk])
        for i, p in zip(chunk, model(ids, mask).argmax(-1).tolist()):
            preds[i] = p
    return preds


def metrics(y_true: list[int], y_pred: list[int], names: list[str]) -> dict[str, Any]:
    C = len(names)
    cm = [[0] * C for _ in range(C)]
    for t, p in zip(y_true, y_pred):
        cm[t][p] += 1
    per_class = {}
    f1s = []
    for c in range(C):
        tp = cm[c][c]
        fp = sum(cm[r][c] for r in range(C)) - tp
        fn = sum(cm[c]) - tp
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[names[c]] = {"precision": prec, "recall": rec, "f1": f1, "support": sum(cm[c])}
        f1s.append(f1)
    accuracy = sum(cm[c][c] for c in range(C)) / max(1, len(y_true))
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / C, "n": len(y_true), "confusion_matrix": cm,
            "labels": names, "per_class": per_class}


def require_extra(module: str) -> None:
    """The [classify] extra's packages, named in one sentence when missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ClassifyError(f"wavegpt-classify needs {module} (the [classify] extra): pip install 'wavegpt[classify]'.")


def plot_confusion(cm: list[list[int]], names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.array(cm, dtype=float)
    norm = a / np.maximum(a.sum(1, keepdims=True), 1)
    C = len(names)
    size = min(12.0, 2.5 + 0.55 * C)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(C), [n[:18] for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(C), [n[:18] for n in names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if C <= 20:
        for i in range(C):
            for j in range(C):
                ax.text(j, i, f"{int(a[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- checkpoints -----------------------------------------------------------------------------


def save_classifier(model: nn.Module, config: ClassifierConfig, tokenizer: WaveTokenizer, folder: Path) -> None:
    """config.json, model.safetensors, tokenizer.json, written into a temp folder renamed into place."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / MODEL_NAME), metadata={"format": "pt", "wavegpt": "classifier"})
        (tmp / CONFIG_NAME).write_text(json.dumps({"model_type": "wave_network_classifier", **asdict(config)},
                                                  indent=2) + "\n", encoding="utf-8")
        tokenizer.save(tmp / TOKENIZER_NAME)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_classifier(folder: str | os.PathLike[str]) -> tuple[nn.Module, ClassifierConfig, WaveTokenizer]:
    """A checkpoint folder, or a `wavegpt-classify train --out` folder holding one."""
    folder = Path(folder)
    if not folder.exists():
        raise ClassifyError(f"{folder} does not exist.")
    if (folder / "checkpoint" / CONFIG_NAME).is_file():
        folder = folder / "checkpoint"
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file() or not (folder / MODEL_NAME).is_file() or not (folder / TOKENIZER_NAME).is_file():
        raise ClassifyError(f"{folder} is not a wavegpt-classify checkpoint (it needs {CONFIG_NAME}, {MODEL_NAME} "
                            f"and {TOKENIZER_NAME}).")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ClassifyError(f"{cfg_path} is not valid JSON.") from None
    if not isinstance(data, dict) or data.pop("model_type", None) != "wave_network_classifier":
        raise ClassifyError(f"{folder} holds a model that is not a wavegpt-classify classifier.")
    try:
        config = ClassifierConfig(**data)
    except TypeError:
        raise ClassifyError(f"{cfg_path} does not describe a wavegpt-classify classifier.") from None
    model = build_classifier(config)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(folder / MODEL_NAME))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise ClassifyError(f"{folder / MODEL_NAME} does not match its config or is damaged "
                            f"({_first_line(e)}).") from None
    try:
        tokenizer = WaveTokenizer.load(folder / TOKENIZER_NAME)
    except Exception as e:
        raise ClassifyError(f"{folder / TOKENIZER_NAME} cannot be read ({_first_line(e)}).") from None
    model.eval()
    return model, config, tokenizer


# --- output folder ---------------------------------------------------------------------------


def prepare_out(out: Path, overwrite: bool) -> None:
    """--out is new, empty, or a folder this command wrote before (replaced only with --overwrite)."""
    if out.exists() and not out.is_dir():
        raise ClassifyError(f"--out {out} is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RUN_MARKER).is_file():
            raise ClassifyError(f"--out {out} already holds files wavegpt-classify did not write; choose a new or "
                                f"empty folder.")
        if not overwrite:
            raise ClassifyError(f"--out {out} already holds a classifier; pass --overwrite to replace it.")
        # --overwrite replaces only OUTPUTS; any other file in the folder stays where it is
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_MARKER).write_text('{"created_by": "wavegpt-classify"}\n', encoding="utf-8")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_png_atomic(path: Path, cm: list[list[int]], names: list[str], title: str) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    plot_confusion(cm, names, tmp, title)
    os.replace(tmp, path)


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    variant: str = "modulation"
    max_steps: int = 0  # 0: --epochs passes over the training rows
    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    vocab_size: int = 8192
    d_model: int = 256
    ffn_hidden: int = 1024
    max_len: int = 256
    dropout: float = 0.1
    threads: int = 0


def _label_space(data: TextData) -> tuple[list[Any], list[str]]:
    values = set(data.labels)
    if len(values) < 2:
        raise ClassifyError(f"{data.source} has only one label ({next(iter(values))!r}) in its training rows; "
                            f"a classifier needs at least two.")
    if all(isinstance(v, int) for v in values):
        labels: list[Any] = sorted(values)
    else:
        labels = sorted(values, key=str)
    if data.label_names is not None and all(isinstance(v, int) and 0 <= v < len(data.label_names) for v in labels):
        names = [data.label_names[v] for v in labels]
    else:
        names = [str(v) for v in labels]
    return labels, names


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_classifier(data: TextData, settings: TrainSettings, out: Path, overwrite: bool = False,
                     log=print) -> dict[str, Any]:
    """Tokenizer on the training texts, model, AdamW with warmup + cosine, evaluation, outputs."""
    if settings.variant not in VARIANTS:
        raise ClassifyError(f"--variant must be one of {', '.join(VARIANTS)}, not {settings.variant!r}.")
    for name in ("batch_size", "vocab_size", "d_model", "ffn_hidden", "max_len"):
        if getattr(settings, name) < 1:
            raise ClassifyError(f"--{name.replace('_', '-')} must be at least 1.")
    if settings.max_steps < 0 or settings.epochs <= 0:
        raise ClassifyError("--max-steps must be 0 or more and --epochs more than 0.")
    if settings.vocab_size < 300:
        raise ClassifyError("--vocab-size must be at least 300 (256 bytes plus merges).")
    if not settings.lr > 0:
        raise ClassifyError("--lr must be more than 0.")
    require_extra("matplotlib")  # the confusion matrix, before minutes of training
    labels, names = _label_space(data)
    index = {v: i for i, v in enumerate(labels)}
    unseen = sorted({str(v) for v in data.test_labels if v not in index})
    if unseen:
        raise ClassifyError(f"The held-out rows ({data.split_rule}) have label(s) never seen in training: "
                            f"{', '.join(unseen[:5])}.")
    prepare_out(out, overwrite)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    tokenizer = WaveTokenizer.train(data.texts, vocab_size=settings.vocab_size)
    config = ClassifierConfig(variant=settings.variant, vocab_size=tokenizer.vocab_size, d_model=settings.d_model,
                              ffn_hidden=settings.ffn_hidden, max_len=settings.max_len, num_classes=len(labels),
                              dropout=settings.dropout, labels=labels, label_names=names)
    config.validate()
    model = build_classifier(config)
    params = sum(p.numel() for p in model.parameters())
    train_seqs = encode(tokenizer, data.texts, config.max_len)
    y = torch.tensor([index[v] for v in data.labels])
    n = len(train_seqs)
    steps = settings.max_steps or max(1, math.ceil(settings.epochs * n / settings.batch_size))
    decay = [p for name, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in name
             and "position" not in name]
    no_decay = [p for name, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in name
                                                                    and "position" not in name)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    warmup = max(1, steps // 20)
    gen = torch.Generator().manual_seed(settings.seed)
    log(f"wavegpt-classify: {settings.variant}, {params / 1e6:.2f}M parameters, {len(labels)} classes, "
        f"{n:,} training and {len(data.test_texts):,} held-out rows ({data.split_rule}), {steps} steps")
    model.train()
    order: list[int] = []
    losses = []
    for step in range(steps):
        if len(order) < settings.batch_size:
            order += torch.randperm(n, generator=gen).tolist()
        chunk, order = order[:settings.batch_size], order[settings.batch_size:]
        ids, mask = batch([train_seqs[i] for i in chunk])
        for g in opt.param_groups:
            g["lr"] = settings.lr * _schedule(step, steps, warmup)
        loss = F.cross_entropy(model(ids, mask), y[chunk])
        if not torch.isfinite(loss):
            raise ClassifyError(f"The loss became {loss.item()} at step {step + 1}; try a lower --lr.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps}: loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    train_s = time.perf_counter() - start
    config.extra = {"data": data.source, "held_out": data.split_rule, "steps": steps, "seed": settings.seed,
                    "train_rows": n, "train_seconds": round(train_s, 1)}
    save_classifier(model, config, tokenizer, out / "checkpoint")
    result = evaluate_texts(model, config, tokenizer, data.test_texts, data.test_labels)
    result.update(variant=settings.variant, parameters=params, steps=steps, seed=settings.seed,
                  train_seconds=round(train_s, 2), seconds=round(time.perf_counter() - start, 2), data=data.source,
                  held_out=data.split_rule, train_rows=n, final_train_loss=sum(losses[-50:]) / len(losses[-50:]))
    write_json_atomic(out / "metrics.json", result)
    write_png_atomic(out / "confusion_matrix.png", result["confusion_matrix"], result["labels"],
                     f"{settings.variant}: accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} "
                     f"({result['n']} held-out rows)")
    return result


def evaluate_texts(model: nn.Module, config: ClassifierConfig, tokenizer: WaveTokenizer, texts: list[str],
                   labels: list[Any]) -> dict[str, Any]:
    index = {v: i for i, v in enumerate(config.labels)}
    # JSON turns integer labels into ints again; labels read from a CSV are strings: accept either spelling
    by_text = {str(v): i for i, v in enumerate(config.labels)}
    y_true = []
    for v in labels:
        i = index.get(v, by_text.get(str(v)))
        if i is None:
            raise ClassifyError(f"The label {v!r} is not one this classifier knows ({', '.join(config.label_names)}).")
        y_true.append(i)
    y_pred = predict(model, encode(tokenizer, texts, config.max_len))
    return metrics(y_true, y_pred, list(config.label_names))


def evaluate_checkpoint(checkpoint: str, data: TextData, out: Path, split: str = "heldout") -> dict[str, Any]:
    require_extra("matplotlib")
    model, config, tokenizer = load_classifier(checkpoint)
    if split == "all":
        texts, labels = data.texts + data.test_texts, data.labels + data.test_labels
        rule = "every row"
    else:
        texts, labels, rule = data.test_texts, data.test_labels, data.split_rule
    if out.exists() and not out.is_dir():
        raise ClassifyError(f"--out {out} is a file, not a folder.")
    if out.is_dir() and any(p.name not in ("metrics.json", "confusion_matrix.png", RUN_MARKER) for p in out.iterdir()
                            if not p.name.startswith(".")) and not (out / RUN_MARKER).is_file():
        raise ClassifyError(f"--out {out} already holds files wavegpt-classify did not write; choose a new or "
                            f"empty folder.")
    result = evaluate_texts(model, config, tokenizer, texts, labels)
    result.update(variant=config.variant, checkpoint=str(checkpoint), data=data.source, rows=rule)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_MARKER).is_file():
        (out / RUN_MARKER).write_text('{"created_by": "wavegpt-classify"}\n', encoding="utf-8")
    write_json_atomic(out / "metrics.json", result)
    write_png_atomic(out / "confusion_matrix.png", result["confusion_matrix"], result["labels"],
                     f"{config.variant} on {Path(data.source).name}: accuracy {result['accuracy']:.4f}, "
                     f"macro-F1 {result['macro_f1']:.4f}")
    return result
