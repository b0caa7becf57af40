"""Interference attention: the wave model's default mixer."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import WaveGPTConfig
from ...ops.rotary import apply_rotary_pair
from ..cache import LayerCache
from .base import SoftmaxMixer


class InterferenceAttention(SoftmaxMixer):
    """Scores are the cosine between query and key wave amplitudes.

    q and k are n_heads x num_waves amplitudes, each shifted by a learned per-wave phase
    offset and L2-normalised, so q.k is a cosine: in phase (+1) interferes constructively,
    opposite phase (-1) destructively. With position "rotary", pair j of the query and key
    waves is advanced by the phase t * omega_j (RoPE spacing) before they interfere, so the
    score depends on cos(dphi + (t - s) omega): position is a relative phase. A learned
    per-head temperature, kept in log space so it can change by factors, sets the sharpness:
    it starts at 1/sqrt(num_waves), so the logits span +-sqrt(num_waves) and attention is not
    uniform at init (the seed-faithful start, sqrt(num_waves), leaves every logit within +-0.2).
    """

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        nh, W, d = config.n_heads, config.qk_width, config.d_model
        self.n_heads, self.dropout = nh, config.dropout
        self.q_proj, self.k_proj = nn.Linear(d, nh * W), nn.Linear(d, nh * W)
        self.q_phase = self.k_phase = self.log_temperature = None
        if config.phase_offsets:
            self.q_phase = nn.Parameter(torch.zeros(nh, 1, W))
            self.k_phase = nn.Parameter(torch.zeros(nh, 1, W))
        self.dot_scale = W**-0.5 if config.scoring == "dot" else None  # the ablation: scaled dot products
        if self.dot_scale is None:
            sign = 1.0 if config.temperature_init == "sqrt_waves" else -1.0
            self.log_temperature = nn.Parameter(torch.full((nh, 1, 1), sign * 0.5 * math.log(W)))
        self.v_proj, self.out = nn.Linear(d, d), nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)
        self.rotary_base = config.rope_base if config.position == "rotary" else None

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The interfering waves q (already divided by the temperature) and k, (B, H, T, W), and v."""
        B, T, _ = x.shape
        weight, bias = self._fused_projection(cache)
        n = self.q_proj.out_features
        q, k, v = F.linear(x, weight, bias).split([n, n, self.v_proj.out_features], dim=-1)
        q, k = self._heads(q, B, T), self._heads(k, B, T)
        if self.q_phase is not None:
            q, k = q + self.q_phase, k + self.k_phase
        if self.dot_scale is None:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if self.rotary_base is not None:
            q, k = apply_rotary_pair(q, k, start_pos, self.rotary_base)
        scale = self.dot_scale if self.dot_scale is not None else torch.exp(-self.log_temperature)
        return q * scale, k, self._heads(v, B, T)

    def _fused_projection(self, cache: LayerCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One matrix product for the three projections (they stay three modules in the checkpoint);
        while decoding without gradients the concatenation is made once and kept in the layer's cache."""
        fused = cache.fused if cache is not None else None
        if fused is None:
            fused = (torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]),
                     torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            if cache is not None and not torch.is_grad_enabled():
                cache.fused = fused
        return fused
