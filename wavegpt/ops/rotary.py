"""Rotary position: advance pair j of a query or key by the angle t * omega_j.

The last dimension of x holds n = D // 2 pairs (x[..., j], x[..., n + j]) (the "half split"
layout, as in GPT-NeoX and Llama); omega_j = base^(-j / n) spans one radian per position down
to about 1 / base. A rotation keeps every vector's length, and the dot product of a query
rotated to t and a key rotated to s depends on (t - s) only: position becomes a relative
phase. With an odd D the last element is left alone.
"""

from __future__ import annotations

import cmath

import torch


def rotary_angles(n_pairs: int, start_pos: int, length: int, base: float, device: torch.device) -> torch.Tensor:
    """(length, n_pairs) angles t * omega_j for the positions start_pos .. start_pos + length - 1."""
    omega = base ** (-torch.arange(n_pairs, device=device, dtype=torch.float32) / max(1, n_pairs))
    t = torch.arange(start_pos, start_pos + length, device=device, dtype=torch.float32)
    return t[:, None] * omega


def _cos_sin(x: torch.Tensor, start_pos: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    angles = rotary_angles(x.shape[-1] // 2, start_pos, x.shape[-2], base, x.device)
    return angles.cos().to(x.dtype), angles.sin().to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1] // 2
    a, b, rest = x[..., :n], x[..., n:2 * n], x[..., 2 * n:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos, rest], dim=-1)


def apply_rotary(x: torch.Tensor, start_pos: int, base: float) -> torch.Tensor:
    """Rotate x (..., T, D) whose first row sits at absolute position start_pos."""
    return _rotate(x, *_cos_sin(x, start_pos, base))


def apply_rotary_pair(q: torch.Tensor, k: torch.Tensor, start_pos: int,
                      base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """apply_rotary on queries and keys of the same positions, the angles computed once for both
    (the same numbers as two apply_rotary calls; decoding pays the angles once per layer, not twice)."""
    if q.shape[-2:] != k.shape[-2:] or q.dtype != k.dtype:
        return apply_rotary(q, start_pos, base), apply_rotary(k, start_pos, base)
    cos, sin = _cos_sin(q, start_pos, base)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def naive_rotary(x: torch.Tensor, start_pos: int, base: float) -> torch.Tensor:
    """Reference: each pair as a complex number multiplied by exp(i t omega_j), one position at a time."""
    T, D = x.shape[-2], x.shape[-1]
    n = D // 2
    out = x.clone()
    for i in range(T):
        for j in range(n):
            angle = (start_pos + i) * base ** (-j / max(1, n))
            z = torch.complex(x[..., i, j].double(), x[..., i, n + j].double()) * cmath.exp(1j * angle)
            out[..., i, j], out[..., i, n + j] = z.real.to(x.dtype), z.imag.to(x.dtype)
    return out
