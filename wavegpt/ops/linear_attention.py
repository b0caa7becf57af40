"""Linear attention: out_t = phi(q_t) . S_t / phi(q_t) . z_t, S_t = sum_{s<=t} phi(k_s) v_s^T,
z_t = sum_{s<=t} phi(k_s).

Three forms of the same operator, as in flash-linear-attention:
- `naive_linear_attention`: the explicit (T, T) matrix; O(T^2), the readable reference.
- `chunk_linear_attention`: chunks of C tokens; within a chunk the small (C, C) matrix,
  across chunks the running state. O(T) in context length; the training form. Its largest
  tensor is (B, H, T/C, E, D): one state per chunk, never one per token.
- `recurrent_linear_attention`: one token at a time with a constant-size state (S, z); the
  decoding form.
Feature maps are positive, so the denominator never crosses zero; EPS only guards underflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def feature_map(x: torch.Tensor, kernel: str) -> torch.Tensor:
    if kernel == "elu_plus_one":
        return F.elu(x) + 1
    if kernel == "sigmoid":
        return torch.sigmoid(x)
    if kernel == "exp":
        return torch.exp(x)
    raise ValueError(f"Unknown kernel {kernel!r}.")


def naive_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k: feature-mapped (B, H, T, E); v: (B, H, T, D)."""
    T = q.shape[-2]
    a = (q @ k.transpose(-1, -2)) * torch.ones(T, T, device=q.device, dtype=q.dtype).tril()
    return (a @ v) / (a.sum(-1, keepdim=True) + EPS)


def chunk_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int = 64,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Chunked parallel form. Returns the output and the final state (S, z) for decoding."""
    B, H, T, E = q.shape
    D = v.shape[-1]
    C = min(chunk_size, T)
    pad = (-T) % C
    if pad:  # zero keys and values add nothing to any state
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    N = (T + pad) // C
    qc, kc, vc = q.view(B, H, N, C, E), k.view(B, H, N, C, E), v.view(B, H, N, C, D)
    kv = kc.transpose(-1, -2) @ vc  # (B, H, N, E, D): each chunk's contribution to S
    ks = kc.sum(-2)  # (B, H, N, E): each chunk's contribution to z
    S_total, z_total = kv.sum(2), ks.sum(2)
    S = kv.cumsum(2) - kv  # state before each chunk
    z = ks.cumsum(2) - ks
    if initial_state is not None:
        S0, z0 = initial_state
        S, z = S + S0.unsqueeze(2), z + z0.unsqueeze(2)
        S_total, z_total = S_total + S0, z_total + z0
    a = (qc @ kc.transpose(-1, -2)) * torch.ones(C, C, device=q.device, dtype=q.dtype).tril()
    num = qc @ S + a @ vc
    den = (qc @ z.unsqueeze(-1)).squeeze(-1) + a.sum(-1)
    out = (num / (den.unsqueeze(-1) + EPS)).reshape(B, H, N * C, D)[:, :, :T]
    return out, (S_total, z_total)


def recurrent_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Token-by-token form with constant state S (B, H, E, D) and z (B, H, E)."""
    B, H, T, E = q.shape
    D = v.shape[-1]
    if state is None:
        S = q.new_zeros(B, H, E, D)
        z = q.new_zeros(B, H, E)
    else:
        S, z = state
    outs = []
    for t in range(T):
        qt, kt, vt = q[:, :, t], k[:, :, t], v[:, :, t]
        S = S + kt.unsqueeze(-1) * vt.unsqueeze(-2)
        z = z + kt
        num = (qt.unsqueeze(-2) @ S).squeeze(-2)
        den = (qt * z).sum(-1, keepdim=True)
        outs.append(num / (den + EPS))
    return torch.stack(outs, dim=2), (S, z)
