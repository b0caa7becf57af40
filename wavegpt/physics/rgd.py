"""Resonant Gradient Descent: AdamW whose matrix updates are gated in the 2-D Fourier domain.

The gate rho = alpha * sqrt(|W^|/max|W^| * |U^|/max|U^| + eps) + (1 - alpha) keeps the
update's frequencies where both the weight and the update already carry energy ("resonance")
and damps the rest by up to alpha. alpha ramps from 0 to `resonance_strength` over
`warmup_steps` (the hybrid warmup: plain AdamW while the weights are still noise, resonance
once they have structure). The step count is optimizer state, so a resumed run continues the
ramp where it stopped. With `resonance_strength=0` RGD is AdamW, step for step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def _normalized(amplitude: torch.Tensor) -> torch.Tensor:
    """amplitude / its max, with an all-zero spectrum (zero weight or update) left at zero, not NaN."""
    peak = amplitude.max()
    return amplitude / torch.where(peak > 0, peak, torch.ones_like(peak))


def _gain(w_hat: torch.Tensor, u_hat: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """rho per frequency: 1 - alpha where either spectrum is silent, up to ~1 where both peak."""
    return alpha * torch.sqrt(_normalized(w_hat.abs()) * _normalized(u_hat.abs()) + eps) + (1 - alpha)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """FFTs in at least float32: half-precision FFTs are inaccurate (and unsupported on CPU)."""
    return torch.promote_types(t.dtype, torch.float32)


def resonance_gate_reference(
    weight: torch.Tensor, update: torch.Tensor, alpha: float, eps: float
) -> torch.Tensor:
    """Readable form on 2-D tensors: full complex FFT2, gate, inverse FFT2, real part."""
    dtype = _compute_dtype(update)
    w_hat, u_hat = torch.fft.fft2(weight.to(dtype)), torch.fft.fft2(update.to(dtype))
    return torch.fft.ifft2(u_hat * _gain(w_hat, u_hat, alpha, eps)).real.to(update.dtype)


def resonance_gate(weight: torch.Tensor, update: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """Fast form on the half spectrum. For real inputs |W^| and |U^| are Hermitian-symmetric, so the
    half spectrum holds the same maxima, rho is symmetric too, the gated spectrum stays Hermitian,
    and rfft2/irfft2 give the reference's real result at about half the cost."""
    dtype = _compute_dtype(update)
    w_hat, u_hat = torch.fft.rfft2(weight.to(dtype)), torch.fft.rfft2(update.to(dtype))
    gated = torch.fft.irfft2(u_hat * _gain(w_hat, u_hat, alpha, eps), s=update.shape)
    return gated.to(update.dtype)


def _gated_update(p: torch.Tensor, update: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """The gate on p viewed as (shape[0], -1). A parameter sharded by FSDP2 (a DTensor) is gated as the
    whole matrix: the 2-D FFT mixes every row, so a gate computed per shard would be a different
    operator, changing with the number of processes. Every process gathers the weight and the update
    (two all-gathers, the size of FSDP's own forward gather), computes the same full gate and keeps its
    own shard, so sharded RGD equals unsharded RGD."""
    if hasattr(p, "full_tensor"):  # a DTensor
        from torch.distributed.tensor import distribute_tensor

        whole = _gated_update(p.full_tensor(), update.full_tensor(), alpha, eps)
        return distribute_tensor(whole, p.device_mesh, p.placements, src_data_rank=None)
    rows = p.shape[0]
    return resonance_gate(p.reshape(rows, -1), update.reshape(rows, -1), alpha, eps).reshape(p.shape)


class RGD(torch.optim.Optimizer):
    """AdamW with decoupled weight decay, plus the resonance gate on every parameter of 2 or more
    dims (viewed as (shape[0], -1)). Vectors (biases, norms) get the plain AdamW update."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.01,
        resonance_strength: float = 0.3,
        warmup_steps: int = 1000,
        eps: float = 1e-8,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"lr must be 0 or more, not {lr}.")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two values in [0, 1), not {betas}.")
        if not eps > 0:
            raise ValueError(f"eps must be positive, not {eps}.")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be 0 or more, not {weight_decay}.")
        if not 0.0 <= resonance_strength <= 1.0:
            raise ValueError(f"resonance_strength must be in [0, 1], not {resonance_strength}.")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, resonance_strength=resonance_strength,
                        warmup_steps=warmup_steps, eps=eps)
        super().__init__(params, defaults)
        self._alpha = 0.0

    @staticmethod
    def alpha_at(step: float, strength: float, warmup_steps: int) -> float:
        """Hybrid warmup: linear ramp from 0 to `strength` over `warmup_steps` (none if <= 0)."""
        return strength if warmup_steps <= 0 else strength * min(1.0, step / warmup_steps)

    def current_alpha(self) -> float:
        """The resonance strength used by the most recent step (for logging)."""
        return self._alpha

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    # A CPU float tensor, as torch's Adam keeps it: saved and restored with the state.
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                exp_avg, exp_avg_sq, grad = state["exp_avg"], state["exp_avg_sq"], p.grad
                # Same operations in the same order as torch.optim.AdamW(foreach=False).
                if weight_decay != 0:
                    p.mul_(1 - lr * weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                alpha = self.alpha_at(step, group["resonance_strength"], group["warmup_steps"])
                self._alpha = alpha
                if alpha > 0 and p.dim() >= 2:
                    update = (exp_avg / bias_correction1) / denom
                    p.add_(_gated_update(p, update, alpha, eps), alpha=-lr)
                else:
                    p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
        return loss
