"""Training and evaluating the classifier: tokenizer on the training texts, AdamW with training/optim.py's
parameter groups and warmup + cosine schedule, evaluation, and the output folder."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ownership import is_wavegpt_png
from ..tokenizer import WaveTokenizer
from ..training.optim import cosine_lr, decay_groups, set_lr
from ..validation import MAX_SEED, MAX_VOCAB, real, whole
from .common import RUN_MARKER, VARIANTS, ClassifyError, batch, encode, require_extra
from .data import TextData
from .metrics import metrics, predict, write_json_atomic, write_png_atomic
from .models import ClassifierConfig, build_classifier, load_classifier, save_classifier

EVAL_MARK, TRAIN_MARK = "wavegpt-classify eval", "wavegpt-classify train"  # metrics.json's "written_by"


def metrics_writer(path: Path) -> str | None:
    """Which command wrote a metrics.json: EVAL_MARK, TRAIN_MARK, or None (another program, or not one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("written_by") in (EVAL_MARK, TRAIN_MARK):
        return data["written_by"]
    if {"accuracy", "checkpoint", "rows"} <= set(data):  # eval's, from before the mark
        return EVAL_MARK
    return TRAIN_MARK if {"accuracy", "train_seconds", "held_out"} <= set(data) else None


def check_eval_out(out: Path) -> None:
    """eval writes metrics.json and confusion_matrix.png into --out only where those names are free or hold an
    earlier eval's: never over a user's file, and never over training's own figures (--out at the run folder)."""
    if out.exists() and not out.is_dir():
        raise ClassifyError(f"--out {out} is a file, not a folder.")
    metrics_path, png = out / "metrics.json", out / "confusion_matrix.png"
    if os.path.lexists(metrics_path):
        writer = metrics_writer(metrics_path) if metrics_path.is_file() and not metrics_path.is_symlink() else None
        if writer == TRAIN_MARK:
            raise ClassifyError(f"{metrics_path} holds the training run's own figures, which eval does not replace; "
                                f"give another --out (the default is the run folder's eval/).")
        if writer != EVAL_MARK:
            raise ClassifyError(f"{metrics_path} was not written by wavegpt-classify, so it will not be replaced; "
                                f"choose another --out.")
    elif os.path.lexists(png) and (png.is_symlink() or not is_wavegpt_png(png)):
        raise ClassifyError(f"{png} was not written by wavegpt, so it will not be replaced; choose another --out.")


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

    def __post_init__(self) -> None:
        """Every flag's range, checked when the settings are made, in one sentence naming the flag."""
        if self.variant not in VARIANTS:
            raise ClassifyError(f"--variant must be one of {', '.join(VARIANTS)}, not {self.variant!r}.")
        whole(self.max_steps, "max_steps", 0, 10**9)
        real(self.epochs, "epochs", 0.0, 10**6, low_open=True)
        whole(self.batch_size, "batch_size", 1, 10**6)
        real(self.lr, "lr", 0.0, low_open=True)
        real(self.weight_decay, "weight_decay", 0.0)
        whole(self.seed, "seed", 0, MAX_SEED)
        whole(self.vocab_size, "vocab_size", 300, MAX_VOCAB)  # 256 bytes plus merges
        whole(self.d_model, "d_model", 1, 16384)
        whole(self.ffn_hidden, "ffn_hidden", 1, 262144)
        whole(self.max_len, "max_len", 1, 65536)
        real(self.dropout, "dropout", 0.0, 1.0)
        if self.dropout >= 1.0:
            raise ClassifyError(f"--dropout must be a number in [0, 1), not {self.dropout!r}.")
        whole(self.threads, "threads", 0, 1024)


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


def train_classifier(data: TextData, settings: TrainSettings, out: Path, overwrite: bool = False,
                     log=print) -> dict[str, Any]:
    """Tokenizer on the training texts, model, AdamW with warmup + cosine, evaluation, outputs."""
    settings.__post_init__()  # a TrainSettings changed after it was made is checked again
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
    groups = decay_groups(model.named_parameters(), settings.weight_decay,  # no decay on the tables
                          exempt=lambda name: "embedding" in name or "position" in name)
    opt = torch.optim.AdamW(groups, lr=settings.lr)
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
        set_lr(opt, cosine_lr(step, lr=settings.lr, warmup_steps=warmup, max_steps=steps, min_lr_ratio=0.1))
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
    result["written_by"] = TRAIN_MARK
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
    check_eval_out(out)
    result = evaluate_texts(model, config, tokenizer, texts, labels)
    result.update(variant=config.variant, checkpoint=str(checkpoint), data=data.source, rows=rule,
                  written_by=EVAL_MARK)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_MARKER).is_file():
        (out / RUN_MARKER).write_text('{"created_by": "wavegpt-classify"}\n', encoding="utf-8")
    write_json_atomic(out / "metrics.json", result)
    write_png_atomic(out / "confusion_matrix.png", result["confusion_matrix"], result["labels"],
                     f"{config.variant} on {Path(data.source).name}: accuracy {result['accuracy']:.4f}, "
                     f"macro-F1 {result['macro_f1']:.4f}")
    return result
