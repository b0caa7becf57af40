"""Held-out loss by position in the window: position 0 predicts from the current token alone.

    python benchmarks/position_loss.py RUN_OR_MODEL_FOLDER [...] [--dataset shakespeare | --data PATH]

Prints nats/token at position 0, 1-7, 8-31, 32+ and overall, over the non-overlapping held-out
windows training's evaluation uses (all of them), for each folder (a run folder reads best/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wavegpt import WaveGPT
from wavegpt.data import default_cache_dir, prepare_corpus
from wavegpt.tokenizer import WaveTokenizer

BANDS = ((0, 1), (1, 8), (8, 32), (32, None))


@torch.no_grad()
def position_losses(model: WaveGPT, tokens: np.ndarray, batch_size: int = 32) -> np.ndarray:
    T = model.config.block_size
    n = (len(tokens) - 1) // T
    total, count = np.zeros(T), 0
    for i in range(0, n, batch_size):
        starts = np.arange(i, min(n, i + batch_size)) * T
        x = torch.from_numpy(np.stack([tokens[s:s + T] for s in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([tokens[s + 1:s + T + 1] for s in starts]).astype(np.int64))
        logits, _ = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(starts), T)
        total += loss.sum(0).numpy()
        count += len(starts)
    return total / count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None)
    src.add_argument("--data", default=None)
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    print("folder | pos 0 | 1-7 | 8-31 | 32+ | all (nats/token)")
    for name in args.folders:
        folder = Path(name)
        folder = folder / "best" if (folder / "best").is_dir() else folder
        model = WaveGPT.from_pretrained(folder).eval()
        tok = WaveTokenizer.load(folder / "tokenizer.json")
        dataset = None if args.data else (args.dataset or "shakespeare")
        corpus = prepare_corpus(dataset, args.data, tok.vocab_size, default_cache_dir(), tokenizer=tok)
        per = position_losses(model, np.asarray(corpus.val))
        bands = [per[a:b].mean() for a, b in BANDS]
        print(f"{name} | " + " | ".join(f"{v:.4f}" for v in bands) + f" | {per.mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
