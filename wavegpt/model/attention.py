"""The token mixers: interference attention, pure wave attention, classic causal attention.

Each takes x (B, T, d) whose first token sits at absolute position `start_pos`, and an
optional per-layer `LayerCache` that makes decoding incremental: cached keys and values for
the softmax and quadratic forms, the constant-size state (S, z) for linear mode.
`impl = "reference"` switches a module to the naive operator its fast form is tested against.

Every mixer's forward returns `(y, weights)`: with `need_weights=True` the second item is a
`MixerWeights` (how each query of this call weighed every context position, the numbers the
mixer itself mixes with), else None. This is the one place attention weights come from: the
plots, the app and the animation all read them here, and no module keeps per-call state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import WaveGPTConfig
from ..ops import (
    EPS,
    apply_rotary_pair,
    chunk_linear_attention,
    feature_map,
    kernel_attention,
    naive_kernel_attention,
    naive_linear_attention,
    naive_softmax_attention,
    recurrent_linear_attention,
    softmax_attention,
)


@dataclass
class LayerCache:
    """What one layer keeps between decoding steps."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    state: tuple[torch.Tensor, torch.Tensor] | None = None  # linear mode
    # Interference attention's q/k/v weights concatenated once per decode (no grad): the weights do not
    # change while a sequence is decoded, so each token skips re-copying them.
    fused: tuple[torch.Tensor, torch.Tensor] | None = None

    # Keys and values live in buffers with spare room along time, so appending one token
    # writes one row instead of copying the whole cache (torch.cat), and k, v are views.
    _k_buf: torch.Tensor | None = None
    _v_buf: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = (0 if self.k is None else self.k.shape[-2]), k.shape[-2]
        if self._k_buf is None or n + t > self._k_buf.shape[-2]:
            room = max(64, 2 * (n + t))
            k_buf = k.new_empty(*k.shape[:-2], room, k.shape[-1])
            v_buf = v.new_empty(*v.shape[:-2], room, v.shape[-1])
            if n:
                k_buf[..., :n, :] = self._k_buf[..., :n, :]
                v_buf[..., :n, :] = self._v_buf[..., :n, :]
            self._k_buf, self._v_buf = k_buf, v_buf
        self._k_buf[..., n:n + t, :] = k
        self._v_buf[..., n:n + t, :] = v
        self.k, self.v = self._k_buf[..., :n + t, :], self._v_buf[..., :n + t, :]
        return self.k, self.v


@dataclass
class MixerWeights:
    """What one call of a mixer did with its context, for looking inside (never for training).

    `weights` (B, H, Tq, Tk): row i is the i-th query of the call (absolute position
    Tk - Tq + i) over all Tk context positions so far, future positions 0. `kind` names the
    numbers: "softmax" (rows sum to 1), "kernel" (pure wave, quadratic: kernel(q.k) / sqrt(t+1)),
    "linear" (pure wave, linear: phi(q).phi(k) / its row sum), "phase" (the Wave Network: the
    phase of each context token against the query's global semantics G, in [0, pi], averaged
    over the H groups of d/H dimensions); `g` (B, H, Tq) is that G.
    """

    weights: torch.Tensor
    kind: str
    g: torch.Tensor | None = None

    def row(self, query: int = -1, batch: int = 0) -> torch.Tensor:
        """(H, Tk) weights of one query (default: the newest) of one batch row."""
        return self.weights[batch, :, query]


def _causal(Tq: int, Tk: int, device: torch.device) -> torch.Tensor:
    """(Tq, Tk) True where query i (at position Tk - Tq + i) may see key j."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(Tk - Tq)


class _Mixer(nn.Module):
    impl = "fast"

    def _heads(self, t: torch.Tensor, B: int, T: int) -> torch.Tensor:
        return t.view(B, T, self.n_heads, -1).transpose(1, 2)

    def _softmax_mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerCache | None,
                     need_weights: bool) -> tuple[torch.Tensor, MixerWeights | None]:
        """Causal softmax attention of already-scaled q over the cached and new k, v; merged heads out."""
        if cache is not None:
            k, v = cache.append(k, v)
        if self.impl == "reference":
            y = naive_softmax_attention(q, k, v)
        else:
            y = softmax_attention(q, k, v, self.dropout if self.training else 0.0)
        weights = None
        if need_weights:
            with torch.no_grad():
                allowed = _causal(q.shape[-2], k.shape[-2], q.device)
                scores = (q @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
                weights = MixerWeights(torch.softmax(scores, dim=-1), "softmax")
        return self._merge(y), weights

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """The weights (B, H, T, T) this mixer uses on x (future entries are 0): its forward's own."""
        return self(x, start_pos, need_weights=True)[1].weights

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, D = y.shape
        return self.resid_drop(self.out(y.transpose(1, 2).reshape(B, T, H * D)))


class _SoftmaxMixer(_Mixer):
    """A mixer that is causal softmax attention over its own queries and keys (`_qkv`)."""

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, MixerWeights | None]:
        q, k, v = self._qkv(x, start_pos, cache)
        return self._softmax_mix(q, k, v, cache, need_weights)


class InterferenceAttention(_SoftmaxMixer):
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
        nh, W, d = config.n_heads, config.num_waves, config.d_model
        self.n_heads, self.dropout = nh, config.dropout
        self.q_proj, self.k_proj = nn.Linear(d, nh * W), nn.Linear(d, nh * W)
        self.q_phase = nn.Parameter(torch.zeros(nh, 1, W))
        self.k_phase = nn.Parameter(torch.zeros(nh, 1, W))
        sign = 1.0 if config.temperature_init == "sqrt_waves" else -1.0
        self.log_temperature = nn.Parameter(torch.full((nh, 1, 1), sign * 0.5 * math.log(W)))
        self.v_proj, self.out = nn.Linear(d, d), nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)
        self.rotary_base = config.rope_base if config.position == "rotary" else None

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The interfering waves q (already divided by the temperature) and k, (B, H, T, W), and v."""
        B, T, _ = x.shape
        # One matrix product for the three projections (they stay three modules in the checkpoint).
        fused = cache.fused if cache is not None else None
        if fused is None:
            fused = (torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]),
                     torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            if cache is not None and not torch.is_grad_enabled():
                cache.fused = fused
        weight, bias = fused
        n = self.q_proj.out_features
        q, k, v = F.linear(x, weight, bias).split([n, n, self.v_proj.out_features], dim=-1)
        q = F.normalize(self._heads(q, B, T) + self.q_phase, dim=-1)
        k = F.normalize(self._heads(k, B, T) + self.k_phase, dim=-1)
        if self.rotary_base is not None:
            q, k = apply_rotary_pair(q, k, start_pos, self.rotary_base)
        return q * torch.exp(-self.log_temperature), k, self._heads(v, B, T)


class PureWaveAttention(_Mixer):
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
        weights = scores.masked_fill(~_causal(Tq, Tk, q.device), 0.0) * counts.rsqrt()[:, None]
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
        a = (fq @ keys.transpose(-1, -2)).masked_fill(~_causal(Tq, Tk, fq.device), 0.0)
        return MixerWeights(a / (a.sum(-1, keepdim=True) + EPS), "linear")


class CausalSelfAttention(_SoftmaxMixer):
    """nanoGPT's attention: one fused qkv projection, scaled dot products, causal softmax;
    with position "rotary", queries and keys are rotated by position first (RoPE)."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.scale = (d // config.n_heads) ** -0.5
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)
        self.rotary_base = config.rope_base if config.position == "rotary" else None

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q, k, v = (self._heads(t, B, T) for t in self.qkv(x).chunk(3, dim=-1))
        if self.rotary_base is not None:
            q, k = apply_rotary_pair(q, k, start_pos, self.rotary_base)
        return q * self.scale, k, v


def build_attention(config: WaveGPTConfig) -> _Mixer:
    if config.model_type == "classic":
        return CausalSelfAttention(config)
    if config.attention == "interference":
        return InterferenceAttention(config)
    if config.attention.startswith("wave_network"):
        from .wave_network import WaveNetworkMixer  # imports this module's _Mixer

        return WaveNetworkMixer(config)
    return PureWaveAttention(config)
