"""The Wave Network token mixer (arXiv 2411.02674), causal, as the attention of a Block.

x (B, T, d) -> two linear views w1, w2 (the paper's two projections of the embeddings) ->
complex tokens Z1, Z2 whose magnitude is the global semantics G of the prefix and whose
phase places each token against it -> interference |Z1 + Z2| or modulation |Z1 * Z2| ->
LayerNorm -> output projection into the residual stream (the Block's MLP is the paper's
feed-forward layer). G at position t uses tokens <= t only: a running sum of squares, so
training is O(T) and decoding keeps two (B, d) running energies in `LayerCache.state`,
exactly like linear mode's constant-size state. See `wavegpt.ops.wave_network`.

The mixer has no weights over positions. Asked for its weights (`need_weights=True`), it
returns for each query t every context token's phase alpha_s = atan2(sqrt(1 - (w_s/G_t)^2),
w_s/G_t) against the query's global semantics G_t of view 1, averaged over the H groups of
d/H dimensions that stand in for heads, and G_t itself (`MixerWeights`, kind "phase").
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...config import WaveGPTConfig
from ...ops.wave_network import naive_wave_network, wave_network, wave_network_step, wave_phases
from ..cache import LayerCache, MixerWeights
from .base import Mixer, causal

OPERATIONS = {"wave_network": "interference", "wave_network_modulation": "modulation"}


class WaveNetworkMixer(Mixer):
    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.op = OPERATIONS[config.attention]
        self.proj1, self.proj2 = nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, MixerWeights | None]:
        w1, w2 = self.proj1(x), self.proj2(x)
        state = cache.state if cache is not None else None
        weights = self._phases(w1, cache, state) if need_weights else None
        if self.impl == "reference":
            if cache is not None:
                raise ValueError("The naive Wave Network has no decoding form; use impl='fast'.")
            y = naive_wave_network(w1, w2, self.op)
        elif cache is not None and x.shape[1] == 1:
            y, state = wave_network_step(w1, w2, self.op, state)
        else:
            y, state = wave_network(w1, w2, self.op, state)
        if cache is not None:
            cache.state = state
        return self.resid_drop(self.out(self.norm(y))), weights

    @torch.no_grad()
    def _phases(self, w1: torch.Tensor, cache: LayerCache | None, state) -> MixerWeights:
        """Each query's G (view 1) and every context token's phase against it, per group of dimensions.

        Decoding keeps only the running energies, so while weights are asked for, the context's
        view-1 projections ride along in the layer's cache (`cache.k`)."""
        w1 = w1.detach()
        seen = w1 if cache is None or cache.k is None else torch.cat([cache.k, w1], dim=1)
        if cache is not None:
            cache.k = seen
        energy = torch.cumsum(w1 * w1, dim=1)  # (B, Tq, d): G_t^2 of each query of this call
        if state is not None:
            energy = energy + state[0][:, None]
        (B, Tq, d), Tk, H = energy.shape, seen.shape[1], self.n_heads
        group = d // H
        phases = seen.new_zeros(B, H, Tq, Tk)
        for h in range(H):  # one group at a time keeps the (Tq, Tk, group) tensor small
            cols = slice(h * group, (h + 1) * group)
            phases[:, h] = wave_phases(seen[:, None, :, cols], energy[:, :, None, cols]).mean(-1)
        phases = phases.masked_fill(~causal(Tq, Tk, w1.device), 0.0)
        g = torch.sqrt(energy).view(B, Tq, H, group).mean(-1).transpose(1, 2)  # (B, H, Tq)
        return MixerWeights(phases, "phase", g)
