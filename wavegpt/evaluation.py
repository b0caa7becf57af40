"""Held-out figures of a model on a corpus: training's figure (`evaluate`, the run's val loss) and
wavegpt-eval's (`evaluate_split`: nats/token, nats/char, perplexity and bits per byte).

`evaluate` scores `eval_batches` batches of the non-overlapping windows, spread evenly over the split
and shared across Accelerate's processes (a float32 mean per batch, reduced over the processes).
`evaluate_split` scores them all, in float64, in one process.

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
from accelerate import Accelerator

from .args import TrainArgs
from .data import Corpus, iter_eval_batches
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


@torch.no_grad()
def evaluate(model: torch.nn.Module, corpus: Corpus, *, block_size: int, batch_size: int = TrainArgs.batch_size,
             eval_batches: int = TrainArgs.eval_batches, accelerator: Accelerator | None = None) -> dict[str, float]:
    """Mean held-out loss over `eval_batches` evenly spaced batches of `batch_size` validation windows of
    `block_size` tokens, shared across the accelerator's processes (None: one CPU process)."""
    if accelerator is None:
        accelerator = Accelerator(cpu=True)
    was_training = model.training
    model.eval()
    total = torch.zeros(2, device=accelerator.device)  # summed nats, token count
    batches = list(iter_eval_batches(corpus.val, batch_size, block_size, eval_batches))
    processes, rank = accelerator.num_processes, accelerator.process_index
    # Every process runs the same number of forward passes (sharded models gather weights in each one):
    # a process whose share runs out repeats its last batch with weight 0.
    for j in range(-(-len(batches) // processes)):
        i = j * processes + rank
        x, y = batches[min(i, len(batches) - 1)]
        x, y = x.to(accelerator.device), y.to(accelerator.device)
        with accelerator.autocast():
            _, loss = model(x, y)
        weight = 1.0 if i < len(batches) else 0.0
        total += weight * torch.stack([loss.float() * y.numel(), torch.tensor(float(y.numel()), device=total.device)])
    total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    nats_token = (total[0] / total[1]).item()
    chars_per_token = corpus.val_chars / len(corpus.val)
    return {"val_nats_per_token": nats_token, "val_nats_per_char": nats_token / chars_per_token}
