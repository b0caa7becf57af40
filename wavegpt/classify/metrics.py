"""Predictions and their figures: accuracy, macro-F1, the confusion matrix (and its PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..ownership import write_file_atomic
from .common import batch


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
    fig.savefig(path, metadata={"Software": "wavegpt"})  # how wavegpt recognises its own PNGs
    plt.close(fig)



def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_file_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def write_png_atomic(path: Path, cm: list[list[int]], names: list[str], title: str) -> None:
    write_file_atomic(path, lambda tmp: plot_confusion(cm, names, Path(tmp), title), suffix=".png")
