"""Attention operators: each fast form sits beside the naive reference it is tested against."""

from .kernel_attention import kernel_attention, naive_kernel_attention
from .linear_attention import (
    chunk_linear_attention,
    feature_map,
    naive_linear_attention,
    recurrent_linear_attention,
)
from .softmax_attention import naive_softmax_attention, softmax_attention

__all__ = [
    "softmax_attention", "naive_softmax_attention",
    "kernel_attention", "naive_kernel_attention",
    "feature_map", "naive_linear_attention", "chunk_linear_attention", "recurrent_linear_attention",
]
