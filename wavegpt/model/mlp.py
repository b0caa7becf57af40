"""The position-wise MLP with the wave model's periodic activations."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import WaveGPTConfig


def sin_activation(x: torch.Tensor) -> torch.Tensor:
    """sin(x) + 0.1x: periodic like a resonance, with a linear leak so the gradient never
    vanishes across a whole period."""
    return torch.sin(x) + 0.1 * x


def gelu_sin_activation(x: torch.Tensor) -> torch.Tensor:
    """GELU with a small periodic ripple: a gentle step from the classic MLP."""
    return F.gelu(x) + 0.1 * torch.sin(x)


def relu2_activation(x: torch.Tensor) -> torch.Tensor:
    """relu(x)^2, the MLP of the modded-nanogpt speedrun."""
    return F.relu(x).square()


ACTIVATIONS = {"sin": sin_activation, "gelu_sin": gelu_sin_activation, "gelu": F.gelu, "relu2": relu2_activation}


class ResonanceMLP(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.d_model)
        self.activation = ACTIVATIONS[config.activation]
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.activation(self.fc1(x))))
