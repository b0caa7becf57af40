"""ONNX export of the linear-attention model: its chunked training form would fix the sequence length
in the graph, so the export goes through the naive twin and runs at any batch and length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from wavegpt import WaveGPT


def test_linear_attention_exports_with_dynamic_batch_and_length(tmp_path):
    pytest.importorskip("onnxruntime")
    from wavegpt.onnx_export import export_onnx, onnx_logits

    torch.manual_seed(0)
    model = WaveGPT(tiny_config("pure_wave_linear", vocab_size=300)).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    assert all(block.attn.impl == "fast" for block in model.blocks)  # the model is left as it was
    for shape in [(3, 32), (1, 13), (2, 1)]:  # lengths that are and are not multiples of the chunk
        x = torch.randint(0, 300, shape, generator=torch.Generator().manual_seed(shape[1]))
        with torch.no_grad():
            expected = model(x)[0].numpy()
        assert np.abs(onnx_logits(path, x) - expected).max() < 1e-4
