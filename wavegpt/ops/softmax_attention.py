"""Causal softmax attention: q and k may have a head size other than v's.

Queries are the last Tq of Tk positions (Tq < Tk while decoding with a cache). The caller
folds any scale into q, so both forms use scale 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def naive_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference: the explicit (Tq, Tk) score matrix, causal mask, softmax, weighted sum."""
    Tq, Tk = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-1, -2)
    future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(Tk - Tq + 1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Fast form through torch's fused scaled_dot_product_attention.

    The fused kernels want one head size for q, k and v: narrower q and k (interference
    attention's num_waves) are padded with zeros, which leaves every q.k unchanged.
    """
    Tq, Tk = q.shape[-2], k.shape[-2]
    if q.shape[-1] < v.shape[-1]:
        q, k = (F.pad(t, (0, v.shape[-1] - t.shape[-1])) for t in (q, k))
    if Tq == Tk:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=1.0)
    if Tq == 1:  # one new token sees the whole cache
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=1.0)
    allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p, scale=1.0)
