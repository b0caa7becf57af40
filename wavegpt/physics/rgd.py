"""Resonant Gradient Descent: AdamW whose matrix updates are gated in the 2-D Fourier domain.

The gate rho = alpha * sqrt(|W^|/max|W^| * |U^|/max|U^| + eps) + (1 - alpha) keeps the
update's frequencies where both the weight and the update already carry energy ("resonance")
and damps the rest by up to alpha. alpha ramps from 0 to `resonance_strength` over
`warmup_steps` (the hybrid warmup: plain AdamW while the weights are still noise, resonance
once they have structure). The step count is optimizer state, so a resumed run continues the
ramp where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def resonance_gate_reference(weight: torch.Tensor, update: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """Readable form: full complex FFT2, gate, inverse, real part."""
    w_hat, u_hat = torch.fft.fft2(weight), torch.fft.fft2(update)
    w_amp, u_amp = w_hat.abs(), u_hat.abs()
    rho = alpha * torch.sqrt(w_amp / w_amp.max().clamp_min(1e-30) * u_amp / u_amp.max().clamp_min(1e-30) + eps)
    return torch.fft.ifft2(u_hat * (rho + 1 - alpha)).real


def resonance_gate(weight: torch.Tensor, update: torch.Tensor, alpha: float, eps: float) -> torch.Tensor:
    """Fast form on the half spectrum: for real inputs |W^| and |U^| are symmetric, so rho is
    too, the gated spectrum stays Hermitian, and rfft2/irfft2 give the same real result."""
    w_hat, u_hat = torch.fft.rfft2(weight), torch.fft.rfft2(update)
    w_amp, u_amp = w_hat.abs(), u_hat.abs()
    rho = alpha * torch.sqrt(w_amp / w_amp.max().clamp_min(1e-30) * u_amp / u_amp.max().clamp_min(1e-30) + eps)
    return torch.fft.irfft2(u_hat * (rho + 1 - alpha), s=update.shape)


class RGD(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.01,
        resonance_strength: float = 0.3,
        warmup_steps: int = 1000,
        eps: float = 1e-8,
    ):
        if lr < 0:
            raise ValueError(f"lr must be 0 or more, not {lr}.")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), not {betas}.")
        if eps <= 0:
            raise ValueError(f"eps must be positive, not {eps}.")
        if not 0.0 <= resonance_strength <= 1.0:
            raise ValueError(f"resonance_strength must be in [0, 1], not {resonance_strength}.")
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, resonance_strength=resonance_strength,
                        warmup_steps=warmup_steps, eps=eps)
        super().__init__(params, defaults)
        self._alpha = 0.0

    @staticmethod
    def alpha_at(step: int, strength: float, warmup_steps: int) -> float:
        return strength if warmup_steps <= 0 else strength * min(1.0, step / warmup_steps)

    def current_alpha(self) -> float:
        """The resonance strength used by the most recent step (for logging)."""
        return self._alpha

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = int(state["step"].item())
                exp_avg, exp_avg_sq, grad = state["exp_avg"], state["exp_avg_sq"], p.grad
                # Same arithmetic order as torch.optim.AdamW (single-tensor form).
                p.mul_(1 - lr * group["weight_decay"])
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                alpha = self.alpha_at(step, group["resonance_strength"], group["warmup_steps"])
                self._alpha = alpha
                if alpha > 0 and p.dim() >= 2:
                    update = (exp_avg / bias_correction1) / denom
                    gated = resonance_gate(p.detach().reshape(p.shape[0], -1).float(),
                                           update.reshape(p.shape[0], -1).float(), alpha, eps)
                    p.add_(gated.reshape(p.shape).to(p.dtype), alpha=-lr)
                else:
                    p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
        return loss
