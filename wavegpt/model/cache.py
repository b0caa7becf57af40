"""What decoding keeps between steps (LayerCache, DecodeCache) and what a mixer reports about one call
(MixerWeights): plain data, shared by the mixers, the model and the sampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


class DecodeCache:
    """Per-layer caches plus the number of positions already processed."""

    def __init__(self, n_layers: int):
        self.layers = [LayerCache() for _ in range(n_layers)]
        self.pos = 0
