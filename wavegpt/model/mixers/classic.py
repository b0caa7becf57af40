"""The classic transformer's mixer: nanoGPT's causal self-attention, optionally with rotary positions."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import WaveGPTConfig
from ...ops.rotary import apply_rotary_pair
from ..cache import LayerCache
from .base import SoftmaxMixer


class CausalSelfAttention(SoftmaxMixer):
    """nanoGPT's attention: one fused qkv projection, scaled dot products, causal softmax;
    with position "rotary", queries and keys are rotated by position first (RoPE)."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.scale = (d // config.n_heads) ** -0.5
        self.log_temperature = None
        if config.scoring == "cosine":  # QK-norm: the cosine of q and k over a learned temperature
            self.log_temperature = nn.Parameter(torch.full((config.n_heads, 1, 1), math.log(self.scale)))
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)
        self.rotary_base = config.rope_base if config.position == "rotary" else None

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q, k, v = (self._heads(t, B, T) for t in self.qkv(x).chunk(3, dim=-1))
        if self.log_temperature is not None:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if self.rotary_base is not None:
            q, k = apply_rotary_pair(q, k, start_pos, self.rotary_base)
        scale = self.scale if self.log_temperature is None else torch.exp(-self.log_temperature)
        return q * scale, k, v
