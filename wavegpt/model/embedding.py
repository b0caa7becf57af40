"""Token embeddings: the wave packet embedding and the classic lookup + learned positions."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import WaveGPTConfig

# The time axis on which plots, the app and the animation draw a token's signal s(t): t in [0, WAVE_SPAN].
WAVE_SPAN, WAVE_SAMPLES = 50.0, 500


class WavePacketEmbedding(nn.Module):
    """Each token is a wave packet: base frequencies f, phases phi and harmonic amplitudes A.

    Harmonic n of wave w has frequency n*f_w; the packet contributes A_wn*sin(2*pi*n*f_w + phi_w)
    and the matching cosine, so a token's packet is its own, wherever it stands. Position
    enters later, as a relative phase of the query and key waves (config.position "rotary").
    The seed-faithful form (position "embedding") adds p*omega_wn to every phase at position
    p, with a learned positional rate omega: the same token then looks different at every
    position, which costs about 0.3 nats/char at small budgets (README, "Position").
    A plain lookup table can be blended in (weight 1 - sigmoid(wave_ratio)) because sinusoids
    of freshly initialised frequencies give weak, tangled gradients early in training; the
    trainer's schedule then pushes the wave share towards 0.9.
    """

    impl = "fast"  # "reference": always one packet per position (the fast path is tested against it)

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        V, W, H = config.vocab_size, config.num_waves, config.num_harmonics
        self.num_waves, self.num_harmonics = W, H
        self.frequencies = nn.Parameter(torch.rand(V, W) * 0.5 + 0.05)
        self.phases = nn.Parameter((torch.rand(V, W) * 2 - 1) * math.pi)
        if config.amplitude_init == "small":  # the original research code's scale
            self.amplitudes = nn.Parameter(torch.randn(V, W, H) * 0.5 / math.sqrt(H * W))
        else:
            self.amplitudes = nn.Parameter(torch.randn(V, W, H) / math.sqrt(H) / torch.arange(1, H + 1))
        self.position_rate = None
        if config.position == "embedding":
            # Position rates span ~1 rad/token down to ~1 turn per context, like rotary embeddings.
            rates = torch.logspace(0, -math.log10(config.block_size), W)
            self.position_rate = nn.Parameter(rates[:, None] * torch.arange(1, H + 1))
        self.register_buffer("harmonic", torch.arange(1, H + 1, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(2 * W * H, config.d_model)
        self.bootstrap = nn.Embedding(V, config.d_model) if config.bootstrap_embedding else None
        if self.bootstrap is not None:
            nn.init.normal_(self.bootstrap.weight, std=0.02)
            # Shape (1,), not 0-d: FSDP cannot shard 0-d parameters (checkpoint.read_weights reads old 0-d ones).
            self.wave_ratio = nn.Parameter(torch.zeros(1))  # sigmoid(0) = 0.5 wave share
        self.norm = nn.LayerNorm(config.d_model)

    def wave_share(self) -> float:
        return 1.0 if self.bootstrap is None else torch.sigmoid(self.wave_ratio).item()

    def _packets(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """The packets of the tokens idx (..., T) projected to d_model, before the norm."""
        f = self.frequencies[idx].unsqueeze(-1)  # (..., T, W, 1)
        phi = self.phases[idx].unsqueeze(-1)
        phase = 2 * math.pi * self.harmonic * f + phi
        if self.position_rate is not None:
            T = idx.shape[-1]
            pos = torch.arange(start_pos, start_pos + T, device=idx.device, dtype=torch.float32)
            phase = phase + pos[:, None, None] * self.position_rate
        amp = self.amplitudes[idx]  # (..., T, W, H)
        features = torch.cat([amp * torch.sin(phase), amp * torch.cos(phase)], dim=-1)
        x = self.proj(features.flatten(-2))
        if self.bootstrap is not None:
            share = torch.sigmoid(self.wave_ratio)
            x = share * x + (1 - share) * self.bootstrap(idx)
        return x

    def forward(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        V = self.frequencies.shape[0]
        if self.impl == "fast" and self.position_rate is None and idx.numel() > V:
            # Without position in it, a packet depends on its token only: build every token's
            # embedding once (V rows) and look the batch up, instead of B*T packets.
            table = self.norm(self._packets(torch.arange(V, device=idx.device)))
            return F.embedding(idx, table)
        return self.norm(self._packets(idx, start_pos))

    @torch.no_grad()
    def signal(self, token_ids: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Continuous signal s(t) = sum_w sum_n A_wn sin(n f_w t + phi_w) of each token.

        Returns (len(token_ids), len(t)); used by plots, the app and the animation.
        """
        f = self.frequencies[token_ids][:, :, None, None]  # (N, W, 1, 1)
        phi = self.phases[token_ids][:, :, None, None]
        amp = self.amplitudes[token_ids][..., None]  # (N, W, H, 1)
        n = self.harmonic[None, None, :, None]
        return (amp * torch.sin(n * f * t + phi)).sum(dim=(1, 2))

    @torch.no_grad()
    def harmonics(self, token_ids: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Each harmonic's contribution summed over waves: (len(token_ids), H, len(t))."""
        f = self.frequencies[token_ids][:, :, None, None]
        phi = self.phases[token_ids][:, :, None, None]
        amp = self.amplitudes[token_ids][..., None]
        n = self.harmonic[None, None, :, None]
        return (amp * torch.sin(n * f * t + phi)).sum(dim=1)


class ClassicEmbedding(nn.Module):
    """nanoGPT's token lookup plus learned absolute positions (no table when position is
    "rotary" or "none": then attention handles position)."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        nn.init.normal_(self.token.weight, std=0.02)
        self.position = None
        if config.position == "embedding":
            self.position = nn.Embedding(config.block_size, config.d_model)
            nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        x = self.token(idx)
        if self.position is None:
            return x
        pos = torch.arange(start_pos, start_pos + idx.shape[1], device=idx.device)
        return x + self.position(pos)


class TableEmbedding(ClassicEmbedding):
    """The ablation of the wave packets (config.embedding "table"): a plain lookup table of width
    d_model, then the packet embedding's LayerNorm; position stays in the interference."""

    bootstrap = None
    position_rate = None
    impl = "fast"

    def __init__(self, config: WaveGPTConfig):
        super().__init__(config)
        self.norm = nn.LayerNorm(config.d_model)

    def wave_share(self) -> float:
        return 0.0

    def forward(self, idx: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        return self.norm(super().forward(idx, start_pos))
