"""The Wave Network token mixer (arXiv 2411.02674), causal, as the attention of a Block.

x (B, T, d) -> two linear views w1, w2 (the paper's two projections of the embeddings) ->
complex tokens Z1, Z2 whose magnitude is the global semantics G of the prefix and whose
phase places each token against it -> interference |Z1 + Z2| or modulation |Z1 * Z2| ->
LayerNorm -> output projection into the residual stream (the Block's MLP is the paper's
feed-forward layer). G at position t uses tokens <= t only: a running sum of squares, so
training is O(T) and decoding keeps two (B, d) running energies in `LayerCache.state`,
exactly like linear mode's constant-size state. See `wavegpt.ops.wave_network`.

For the animation (`capture = True`) the module keeps, for the newest token t, each
context token's phase alpha_s = atan2(sqrt(1 - (w_s/G_t)^2), w_s/G_t) against the current
global semantics G_t of view 1 (`last_weights`, (B, H, Tk), averaged over the H groups of
d/H dimensions that stand in for heads) and G_t itself (`last_g`, (B, H)).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import WaveGPTConfig
from ..ops import naive_wave_network, wave_network, wave_network_step, wave_phases
from .attention import LayerCache, _Mixer

OPERATIONS = {"wave_network": "interference", "wave_network_modulation": "modulation"}


class WaveNetworkMixer(_Mixer):
    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.op = OPERATIONS[config.attention]
        self.proj1, self.proj2 = nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, d)
        self.resid_drop = nn.Dropout(config.dropout)
        self.last_g: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: LayerCache | None = None) -> torch.Tensor:
        w1, w2 = self.proj1(x), self.proj2(x)
        state = cache.state if cache is not None else None
        if self.capture:
            self._capture(w1, cache, state)
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
        return self.resid_drop(self.out(self.norm(y)))

    @torch.no_grad()
    def _capture(self, w1: torch.Tensor, cache: LayerCache | None, state) -> None:
        """The newest token's G (view 1) and every context token's phase against it."""
        w1 = w1.detach()
        seen = w1 if cache is None or cache.k is None else torch.cat([cache.k, w1], dim=1)
        if cache is not None:
            cache.k = seen  # the context's view-1 projections, kept only while capturing
        energy = (w1 * w1).sum(dim=1)
        if state is not None:
            energy = energy + state[0]
        B, T, d = seen.shape
        H = self.n_heads
        phases = wave_phases(seen, energy[:, None, :])  # (B, Tk, d)
        self.last_weights = phases.view(B, T, H, d // H).mean(-1).transpose(1, 2)  # (B, H, Tk)
        self.last_g = torch.sqrt(energy).view(B, H, d // H).mean(-1)
