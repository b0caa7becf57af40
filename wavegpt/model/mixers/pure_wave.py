"""Pure wave attention: waves sin(omega t + phi) as queries and keys, a positive kernel instead of softmax."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import WaveGPTConfig
from ...ops.kernel_attention import kernel_attention, naive_kernel_attention
from ...ops.linear_attention import (
    EPS,
    chunk_linear_attention,
    feature_map,
    naive_linear_attention,
    recurrent_linear_attention,
)
from ..cache import LayerCache, MixerWeights
from .base import Mixer, causal


class PureWaveAttention(Mixer):
    """Queries and keys are waves sampled at the token's position: sin(omega * t + phi).

    omega and phi are linear projections of the input, so each token chooses its own
    frequencies and phases; L2 normalisation then scaling by num_waves^(1/4) bounds
    q.k by sqrt(num_waves). No softmax: a positive kernel weighs the positions, either on
    the masked scores (`quadratic`) or as feature maps of q and k (`linear`, O(T)).
    """

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        nh, W, d = config.n_heads, config.num_waves, config.d_model
        self.n_heads, self.kernel, self.mode = nh, config.kernel, config.mode
        self.chunk_size = config.chunk_size
        self.scale = W**0.25
        self.omega_q, self.phi_q = nn.Linear(d, nh * W), nn.Linear(d, nh * W)
        self.omega_k, self.phi_k = nn.Linear(d, nh * W), nn.Linear(d, nh * W)
        self.v_proj, self.out = nn.Linear(d, d), nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)

    def _wave(self, omega: torch.Tensor, phi: torch.Tensor, t: torch.Tensor, B: int, T: int) -> torch.Tensor:
        w = torch.sin(self._heads(omega, B, T) * t + self._heads(phi, B, T))
        return F.normalize(w, dim=-1) * self.scale

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, MixerWeights | None]:
        B, T, _ = x.shape
        t = torch.arange(start_pos, start_pos + T, device=x.device, dtype=x.dtype)[:, None]
        q = self._wave(self.omega_q(x), self.phi_q(x), t, B, T)
        k = self._wave(self.omega_k(x), self.phi_k(x), t, B, T)
        v = self._heads(self.v_proj(x), B, T)
        if self.mode == "quadratic":
            if cache is not None:
                k, v = cache.append(k, v)
            fn = naive_kernel_attention if self.impl == "reference" else kernel_attention
            y = fn(q, k, v, self.kernel)
            return self._merge(y), (self._kernel_weights(q, k) if need_weights else None)
        fq, fk = feature_map(q, self.kernel), feature_map(k, self.kernel)
        weights = self._linear_weights(fq, fk, cache) if need_weights else None
        if self.impl == "reference":
            if cache is not None:
                raise ValueError("The naive linear attention has no decoding form; use impl='fast'.")
            return self._merge(naive_linear_attention(fq, fk, v)), weights
        state = cache.state if cache is not None else None
        if T == 1 and cache is not None:
            y, state = recurrent_linear_attention(fq, fk, v, state)
        else:
            y, state = chunk_linear_attention(fq, fk, v, self.chunk_size, state)
        if cache is not None:
            cache.state = state
        return self._merge(y), weights

    @torch.no_grad()
    def _kernel_weights(self, q: torch.Tensor, k: torch.Tensor) -> MixerWeights:
        """kernel(q.k) / sqrt(t + 1), causally masked: the weights `kernel_attention` mixes v with."""
        Tq, Tk = q.shape[-2], k.shape[-2]
        counts = torch.arange(Tk - Tq + 1, Tk + 1, device=q.device, dtype=q.dtype)
        scores = feature_map(q @ k.transpose(-1, -2), self.kernel)
        weights = scores.masked_fill(~causal(Tq, Tk, q.device), 0.0) * counts.rsqrt()[:, None]
        return MixerWeights(weights, "kernel")

    @torch.no_grad()
    def _linear_weights(self, fq: torch.Tensor, fk: torch.Tensor, cache: LayerCache | None) -> MixerWeights:
        """phi(q).phi(k) / its causal row sum: the weights linear attention's output amounts to.

        Linear mode keeps no keys when decoding (only the state S, z), so while weights are asked
        for, the key features seen so far ride along in the layer's cache (`cache.k`)."""
        keys = fk if cache is None or cache.k is None else torch.cat([cache.k, fk], dim=-2)
        if cache is not None:
            cache.k = keys
        Tq, Tk = fq.shape[-2], keys.shape[-2]
        a = (fq @ keys.transpose(-1, -2)).masked_fill(~causal(Tq, Tk, fq.device), 0.0)
        return MixerWeights(a / (a.sum(-1, keepdim=True) + EPS), "linear")
