"""Attention operators: each fast form sits beside the naive reference it is tested against."""

from .kernel_attention import kernel_attention, naive_kernel_attention
from .linear_attention import (
    EPS,
    chunk_linear_attention,
    feature_map,
    naive_linear_attention,
    recurrent_linear_attention,
)
from .rotary import apply_rotary, apply_rotary_pair, naive_rotary, rotary_angles
from .softmax_attention import naive_softmax_attention, softmax_attention
from .wave_network import naive_wave_network, wave_network, wave_network_step, wave_phases

__all__ = [
    "softmax_attention", "naive_softmax_attention",
    "kernel_attention", "naive_kernel_attention",
    "apply_rotary", "apply_rotary_pair", "naive_rotary", "rotary_angles",
    "EPS", "feature_map", "naive_linear_attention", "chunk_linear_attention", "recurrent_linear_attention",
    "naive_wave_network", "wave_network", "wave_network_step", "wave_phases",
]
