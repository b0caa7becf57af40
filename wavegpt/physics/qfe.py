"""Quantum Field Entanglement loss: cross-entropy plus a spectral phase-coherence term.

Along the time axis, the spectrum of the predicted distributions should be in phase with
the spectrum of the targets: a sequence whose predictions rise and fall with the same
rhythm as the text is rewarded beyond per-token accuracy. For each (batch, frequency, channel)
bin the penalty is (1 - cos(dphi)) * A_out * A_target, which equals
A_out * A_target - Re(F_out * conj(F_target)); that product form needs no angle and so has
finite gradients everywhere, including for all-equal logits. Bins where either amplitude is
below the threshold carry no phase worth matching and are not counted ("amplitude gating").
With a vocabulary larger than `projection_dim`, both sides first go through one fixed random
projection, made from `seed` on the CPU so every process and device uses the same matrix.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Inside the square root of an amplitude: |z| has an unbounded gradient at z = 0.
_AMPLITUDE_FLOOR = 1e-12


def _amplitude(z: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(z.real.square() + z.imag.square() + _AMPLITUDE_FLOOR)


class QFELoss(nn.Module):
    """total = CE + lambda_coherence * coherence, on logits (B, T, V) and targets (B, T)."""

    def __init__(
        self,
        lambda_coherence: float = 0.05,
        amplitude_threshold: float = 0.01,
        temperature: float = 1.0,
        projection_dim: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, not {temperature}.")
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be 1 or more, not {projection_dim}.")
        self.lambda_coherence = lambda_coherence
        self.amplitude_threshold = amplitude_threshold
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.seed = seed
        # A plain dict, not buffers: the matrix is a function of (seed, V), so it stays out of state_dict.
        self._projections: dict[tuple[int, torch.device], torch.Tensor] = {}

    def projection(self, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The fixed (vocab_size, projection_dim) random projection for this seed. Drawn on the CPU
        from its own generator (device RNGs differ), scaled by 1/sqrt(dim) to keep norms, then moved."""
        key = (vocab_size, torch.device(device))
        if key not in self._projections:
            g = torch.Generator().manual_seed(self.seed)
            matrix = torch.randn(vocab_size, self.projection_dim, generator=g) / self.projection_dim**0.5
            self._projections[key] = matrix.to(key[1])
        return self._projections[key]

    def coherence(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean phase penalty over the counted (batch, frequency, channel) bins; 0 if none counts."""
        vocab_size = logits.shape[-1]
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if vocab_size > self.projection_dim:
            matrix = self.projection(vocab_size, logits.device)
            out, target = probs @ matrix, matrix[targets]  # matrix[targets] == one_hot(targets) @ matrix
        else:
            out, target = probs, F.one_hot(targets, vocab_size).float()
        f_out = torch.fft.rfft(out, dim=1, norm="ortho")
        f_tgt = torch.fft.rfft(target, dim=1, norm="ortho")
        a_out, a_tgt = _amplitude(f_out), _amplitude(f_tgt)
        # >= 0 in exact arithmetic (Cauchy-Schwarz); the clamp only removes rounding below zero.
        penalty = (a_out * a_tgt - (f_out * f_tgt.conj()).real).clamp_min(0)
        counted = (a_out > self.amplitude_threshold) & (a_tgt > self.amplitude_threshold)
        return (penalty * counted).sum() / counted.sum().clamp_min(1)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, return_components: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        coherence = self.coherence(logits, targets) if self.lambda_coherence else ce.new_zeros(())
        total = ce + self.lambda_coherence * coherence
        if return_components:
            return {"total": total, "ce": ce, "coherence": coherence}
        return total
