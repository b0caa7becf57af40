"""Quadratic kernel attention without softmax (pure wave attention's `quadratic` mode).

weight(t, s) = kernel(q_t . k_s) / sqrt(t + 1) for s <= t, where t + 1 counts the attended
positions: the kernel keeps weights positive and the square root keeps the output's scale
from growing with the context as a plain sum would.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERNELS = {
    "elu_plus_one": lambda x: F.elu(x) + 1,
    "sigmoid": torch.sigmoid,
    "exp": torch.exp,
}


def naive_kernel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    """Reference: one query position at a time, straight from the definition."""
    fn = KERNELS[kernel]
    Tq, Tk = q.shape[-2], k.shape[-2]
    outs = []
    for i in range(Tq):
        t = Tk - Tq + i  # absolute position of this query
        w = fn(q[..., i : i + 1, :] @ k[..., : t + 1, :].transpose(-1, -2)) / (t + 1) ** 0.5
        outs.append(w @ v[..., : t + 1, :])
    return torch.cat(outs, dim=-2)


def kernel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    """Fast form: all rows at once as masked matrix products."""
    Tq, Tk = q.shape[-2], k.shape[-2]
    weights = KERNELS[kernel](q @ k.transpose(-1, -2))
    allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    counts = torch.arange(Tk - Tq + 1, Tk + 1, device=q.device, dtype=q.dtype)
    weights = weights.masked_fill(~allowed, 0.0) * counts.rsqrt()[:, None]
    return weights @ v
