"""The Wave Network operator (Zhang & Sheng, arXiv 2411.02674), causal form.

For embeddings w (tokens j, dimensions k) the paper defines, per dimension, the global
semantics G_k = sqrt(sum_j w_jk^2) (the square root of the dimension's energy over the
text), each token's phase alpha_jk = atan2(sqrt(1 - (w_jk/G_k)^2), w_jk/G_k) and the
complex token Z_j = G * exp(i alpha_j). Two views Z1, Z2 are combined by interference
(Z1 + Z2) or modulation (Z1 * Z2) and the magnitude of the result is kept.

Causal: the sum runs over the prefix s <= t, so G_t,k^2 = E_t,k = sum_{s<=t} w_sk^2 is a
running sum of squares, and nothing depends on a later token. Writing the complex token in
Cartesian form avoids atan2 and keeps the gradients finite:

    Re Z_t = G_t cos(alpha_t) = w_t
    Im Z_t = G_t sin(alpha_t) = sqrt(G_t^2 - w_t^2) = sqrt(E_{t-1})      (E_{-1} = 0)

so the imaginary part is the norm of the *earlier* tokens, computed from an exclusive
running sum (plus EPS, which keeps sqrt differentiable at the first token; G^2 = E + EPS).
Then, per position and dimension,

    interference  |Z1 + Z2| = sqrt((w1 + w2)^2 + (sqrt(E1_{t-1}) + sqrt(E2_{t-1}))^2)
                            = sqrt(G1^2 + G2^2 + 2 G1 G2 cos(alpha - beta))
    modulation    |Z1 * Z2| = G1 * G2

(the paper's energy rule: |Z| is G, phases add under modulation; no extra rescaling).

Three forms, as for linear attention:
- `naive_wave_network`: one position at a time from the definition (G by an explicit sum
  over the prefix, the phase through atan2, complex numbers); the reference.
- `wave_network`: the running sums as one cumsum; O(T) and the training form. It takes and
  returns the state (E1, E2) of shape (B, d) each, so it also continues a decoded sequence.
- `wave_network_step`: one token from the state; the decoding form (constant-size state).

`mask` (B, T), 1 for real tokens and 0 for padding, drops padded positions from every
running sum (the classifier's padding never enters G).
"""

from __future__ import annotations

import torch

EPS = 1e-6
OPS = ("interference", "modulation")

State = tuple[torch.Tensor, torch.Tensor]


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}.")


def _combine(w1: torch.Tensor, w2: torch.Tensor, prev1: torch.Tensor, prev2: torch.Tensor, op: str) -> torch.Tensor:
    """Magnitude of the combined complex tokens, from the projections and the energies before them."""
    a1, a2 = torch.sqrt(prev1 + EPS), torch.sqrt(prev2 + EPS)  # Im Z = sqrt(G^2 - w^2)
    if op == "interference":
        return torch.sqrt((w1 + w2) ** 2 + (a1 + a2) ** 2)
    return torch.sqrt((w1 * w1 + a1 * a1) * (w2 * w2 + a2 * a2))  # G1 * G2


def naive_wave_network(
    w1: torch.Tensor, w2: torch.Tensor, op: str, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference: for each t, G over tokens <= t, phases by atan2, complex Z1, Z2, combined.

    w1, w2: (B, T, d). Returns |Z1 + Z2| or |Z1 * Z2| of shape (B, T, d).
    """
    _check_op(op)
    B, T, d = w1.shape
    if mask is not None:
        m = mask.to(w1.dtype)[..., None]
        w1, w2 = w1 * m, w2 * m
    outs = []
    for t in range(T):
        zs = []
        for w in (w1, w2):
            energy = (w[:, : t + 1] ** 2).sum(dim=1) + EPS  # G_t^2 over the prefix (padding is zero)
            g = torch.sqrt(energy)
            ratio = w[:, t] / g  # cos(alpha), in [-1, 1]
            alpha = torch.atan2(torch.sqrt(torch.clamp(1 - ratio**2, min=0.0)), ratio)
            zs.append(torch.polar(g, alpha))
        z = zs[0] + zs[1] if op == "interference" else zs[0] * zs[1]
        outs.append(z.abs())
    return torch.stack(outs, dim=1)


def wave_network(
    w1: torch.Tensor,
    w2: torch.Tensor,
    op: str,
    state: State | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State]:
    """Parallel causal form: (B, T, d) projections -> ((B, T, d) magnitudes, final state (E1, E2))."""
    _check_op(op)
    if mask is not None:
        m = mask.to(w1.dtype)[..., None]
        w1, w2 = w1 * m, w2 * m
    energies = []
    for i, w in enumerate((w1, w2)):
        run = torch.cumsum(w * w, dim=1)
        if state is not None:
            run = run + state[i].unsqueeze(1)
        energies.append(run)
    prevs = []
    for i, run in enumerate(energies):  # exclusive sums: the energy of the tokens before t
        first = run.new_zeros(run.shape[0], 1, run.shape[2]) if state is None else state[i].unsqueeze(1)
        prevs.append(torch.cat([first, run[:, :-1]], dim=1))
    out = _combine(w1, w2, prevs[0], prevs[1], op)
    return out, (energies[0][:, -1], energies[1][:, -1])


def wave_network_step(
    w1: torch.Tensor, w2: torch.Tensor, op: str, state: State | None = None
) -> tuple[torch.Tensor, State]:
    """One token (B, 1, d) from the running energies (B, d): the decoding form."""
    _check_op(op)
    x1, x2 = w1[:, 0], w2[:, 0]
    if state is None:
        e1, e2 = torch.zeros_like(x1), torch.zeros_like(x2)
    else:
        e1, e2 = state
    out = _combine(x1, x2, e1, e2, op)
    return out.unsqueeze(1), (e1 + x1 * x1, e2 + x2 * x2)


def wave_phases(w: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Phase alpha = atan2(sqrt(1 - (w/G)^2), w/G) of tokens w (..., d) against G^2 = energy (..., d)."""
    g = torch.sqrt(energy + EPS)
    ratio = torch.clamp(w / g, -1.0, 1.0)
    return torch.atan2(torch.sqrt(1 - ratio**2), ratio)


# --- the paper's (non-causal) form, for classifying whole texts ---------------------------


def global_wave_network(w1: torch.Tensor, w2: torch.Tensor, op: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """G over every real token of the text (the paper's classifier): (B, T, d) -> (B, T, d) magnitudes.

    Per text and dimension, G^2 = E = sum over unmasked tokens of w^2 (padding is masked out of
    it); each token's complex value is w + i sqrt(E - w^2), of magnitude G.
    """
    _check_op(op)
    if mask is not None:
        m = mask.to(w1.dtype)[..., None]
        w1, w2 = w1 * m, w2 * m
    e1 = (w1 * w1).sum(dim=1, keepdim=True)
    e2 = (w2 * w2).sum(dim=1, keepdim=True)
    # the energy of the other tokens; clamp: E - w^2 may round below zero for a one-token text
    return _combine(w1, w2, torch.clamp(e1 - w1 * w1, min=0.0), torch.clamp(e2 - w2 * w2, min=0.0), op)


def naive_global_wave_network(w1: torch.Tensor, w2: torch.Tensor, op: str,
                              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reference for `global_wave_network`, one text at a time through atan2 and complex numbers."""
    _check_op(op)
    outs = []
    for b in range(w1.shape[0]):
        keep = slice(None) if mask is None else mask[b].bool()
        rows = []
        for w in (w1[b], w2[b]):
            real = w[keep]
            g = torch.sqrt((real**2).sum(dim=0) + EPS)  # padding excluded
            ratio = w / g
            alpha = torch.atan2(torch.sqrt(torch.clamp(1 - ratio**2, min=0.0)), ratio)
            rows.append(torch.polar(g.expand_as(w), alpha))
        z = rows[0] + rows[1] if op == "interference" else rows[0] * rows[1]
        out = z.abs()
        if mask is not None:
            out = torch.where(mask[b].bool()[:, None], out, torch.zeros_like(out))
        outs.append(out)
    return torch.stack(outs)
