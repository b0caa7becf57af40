"""What every token mixer shares.

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

import torch
import torch.nn as nn

from ...ops.softmax_attention import naive_softmax_attention, softmax_attention
from ..cache import LayerCache, MixerWeights


def causal(Tq: int, Tk: int, device: torch.device) -> torch.Tensor:
    """(Tq, Tk) True where query i (at position Tk - Tq + i) may see key j."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(Tk - Tq)


class Mixer(nn.Module):
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
                allowed = causal(q.shape[-2], k.shape[-2], q.device)
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


class SoftmaxMixer(Mixer):
    """A mixer that is causal softmax attention over its own queries and keys (`_qkv`)."""

    def _qkv(self, x: torch.Tensor, start_pos: int,
             cache: LayerCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, MixerWeights | None]:
        q, k, v = self._qkv(x, start_pos, cache)
        return self._softmax_mix(q, k, v, cache, need_weights)
