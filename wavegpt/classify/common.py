"""What every part of the classifier shares: its error, its constants, the extras check and the batches."""

from __future__ import annotations

import torch

from ..extras import MissingExtraError, require
from ..ownership import CLASSIFY_MARKER
from ..tokenizer import WaveTokenizer

VARIANTS = ("interference", "modulation", "transformer")
HELD_OUT_FRACTION = 0.1
MODEL_NAME, CONFIG_NAME, TOKENIZER_NAME = "model.safetensors", "config.json", "tokenizer.json"
RUN_MARKER = CLASSIFY_MARKER  # marks a folder wavegpt-classify wrote (only such folders are replaced)
OUTPUTS = ("checkpoint", "metrics.json", "confusion_matrix.png", RUN_MARKER)


class ClassifyError(ValueError):
    """Bad input: one sentence for the user."""



def require_extra(module: str) -> None:
    """The [classify] extra's packages, named in one sentence when missing (extras.require's)."""
    try:
        require("classify", "wavegpt-classify", (module,))
    except MissingExtraError as e:
        raise ClassifyError(str(e)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__).rstrip(".")[:200]


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


