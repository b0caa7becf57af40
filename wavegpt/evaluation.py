"""Held-out figures of a checkpoint on a corpus, without training: nats/token, nats/char,
perplexity and bits per byte.

Two ways to cut the split into windows of the model's context:
- non-overlapping (the default): the windows training's evaluation uses, all of them, so the
  figure is the one train.py reported (a last partial window is left out, as there);
- sliding (`stride` S <= block_size): windows S tokens apart, each scoring only the targets the
  previous windows did not, so every target after the first block is predicted from at least
  block_size - S tokens of context, and every target of the split is scored exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import Corpus
from .model.gpt import WaveGPT


@dataclass
class EvalResult:
    split: str
    tokens: int  # in the split
    chars: int
    bytes: int
    scored: int  # targets scored
    windows: int
    stride: int | None
    nats_per_token: float
    nats_per_char: float
    perplexity: float
    bits_per_byte: float

    def to_dict(self) -> dict:
        return asdict(self)


def split_tokens(corpus: Corpus, split: str) -> tuple[np.ndarray, int]:
    """The tokens of `val` (the held-out last 10%) or `all` (the whole corpus), with their characters."""
    if split == "val":
        return np.asarray(corpus.val), corpus.val_chars
    if split == "all":
        return np.concatenate([corpus.train, corpus.val]), corpus.train_chars + corpus.val_chars
    raise ValueError(f"split must be val or all, not {split!r}.")


def windows(n_tokens: int, block_size: int, stride: int | None) -> list[tuple[int, int]]:
    """(start, first scored target within the window) for each window of block_size inputs.

    stride None: the non-overlapping windows of training's evaluation, every target scored.
    """
    last_start = n_tokens - 1 - block_size  # the last window that still has a target after each input
    if last_start < 0:
        raise ValueError(f"The split holds {n_tokens} tokens, fewer than one window of {block_size}+1.")
    if stride is None:
        return [(s * block_size, 0) for s in range((n_tokens - 1) // block_size)]
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and the context length {block_size}, not {stride}.")
    out, covered = [], 0  # targets [0, covered) of the split (target i = token i + 1) are scored
    start = 0
    while covered < n_tokens - 1:
        start = min(start, last_start)
        out.append((start, covered - start))
        covered = start + block_size
        start += stride
    return out


def _batches(tokens: np.ndarray, spans: list[tuple[int, int]], block_size: int,
             batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    for i in range(0, len(spans), batch_size):
        chunk = spans[i : i + batch_size]
        w = torch.from_numpy(np.stack([tokens[s : s + block_size + 1] for s, _ in chunk]).astype(np.int64))
        keep = torch.arange(block_size)[None, :] >= torch.tensor([first for _, first in chunk])[:, None]
        yield w[:, :-1], w[:, 1:], keep


@torch.no_grad()
def evaluate_split(model: WaveGPT, corpus: Corpus, split: str = "val", stride: int | None = None,
                   batch_size: int = 32) -> EvalResult:
    """Summed cross-entropy over the split's windows, in float64, turned into the four figures."""
    tokens, chars = split_tokens(corpus, split)
    block = model.config.block_size
    spans = windows(len(tokens), block, stride)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, scored = 0.0, 0
    try:
        for x, y, keep in _batches(tokens, spans, block, batch_size):
            logits, _ = model(x.to(device))
            nats = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="none")
            total += float(nats[keep.to(device).flatten()].double().sum())
            scored += int(keep.sum())
    finally:
        model.train(was_training)
    n_bytes = len(corpus.tokenizer.decode(tokens.tolist()).encode("utf-8"))
    per_token = total / scored
    return EvalResult(split=split, tokens=len(tokens), chars=chars, bytes=n_bytes, scored=scored, windows=len(spans),
                      stride=stride, nats_per_token=per_token, nats_per_char=per_token * len(tokens) / chars,
                      perplexity=math.exp(per_token), bits_per_byte=per_token * len(tokens) / n_bytes / math.log(2))
