"""ONNX export of a model's logits, checked against torch with onnxruntime.

The graph maps `input_ids` (batch, sequence) int64 to `logits` (batch, sequence, vocab) float32;
batch and sequence are dynamic (sequence up to the model's context, block_size). It is the
full-context forward pass: no key/value cache, so a sampler feeds it the window it would feed
the torch model without `use_cache`. Needs the [onnx] extra (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .extras import require
from .model.gpt import WaveGPT

ONNX_NAME = "model.onnx"
MAX_EXPORT_BATCH = 4096


class _Logits(torch.nn.Module):
    """forward(input_ids) -> logits: the one output ONNX consumers expect."""

    def __init__(self, model: WaveGPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)[0]


def export_onnx(model: WaveGPT, path: str | Path) -> Path:
    """Write the float32 logits graph of `model` (on the CPU, in eval mode) to `path`, one file."""

    require("onnx", "ONNX export")
    path = Path(path)
    model = model.float().cpu().eval()
    # Linear attention's chunked form fixes the sequence length in the traced graph; its naive
    # (masked quadratic) twin computes the same thing for any length.
    linear = model.config.mode == "linear"
    if linear:
        model.set_attention_impl("reference")
    block = model.config.block_size
    example = torch.zeros(2, min(8, block), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    shapes = {"input_ids": {0: batch, 1: torch.export.Dim("sequence", min=1, max=block)}}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):  # stdout stays the command's
            warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's business
            program = torch.onnx.export(_Logits(model), (example,), dynamo=True, input_names=["input_ids"],
                                        output_names=["logits"], dynamic_shapes=shapes, external_data=False,
                                        verbose=False)
    except Exception as e:  # noqa: BLE001 -- the exporter raises many types; the user needs one sentence
        raise ValueError(f"torch.onnx could not export this model ({' '.join(str(e).split())[:300]}).") from None
    finally:
        if linear:
            model.set_attention_impl("fast")
    program.save(str(path))
    return path


def onnx_logits(path: str | Path, input_ids: torch.Tensor) -> np.ndarray:
    """Run the exported graph with onnxruntime on the CPU."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"input_ids": input_ids.cpu().numpy().astype(np.int64)})[0]
    except Exception as e:  # noqa: BLE001 -- onnxruntime's errors are not one Python type
        raise ValueError(f"onnxruntime could not run {path} on input of shape {tuple(input_ids.shape)} "
                         f"({' '.join(str(e).split())[:300]}).") from None


@torch.no_grad()
def max_difference(path: str | Path, model: WaveGPT, input_ids: torch.Tensor) -> float:
    """Largest absolute logit difference between onnxruntime and torch on the given windows."""
    model = model.float().cpu().eval()
    reference = model(input_ids.cpu())[0].numpy()
    return float(np.abs(onnx_logits(path, input_ids) - reference).max())
