"""RGD and QFE: AdamW equivalence, the FFT gate against its reference, resume, QFE's properties."""

import io
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from wavegpt import RGD, QFELoss
from wavegpt.physics.rgd import resonance_gate, resonance_gate_reference


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))


def _train(
    model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, data: torch.Generator | None = None
) -> None:
    data = torch.Generator().manual_seed(1) if data is None else data
    for _ in range(steps):
        loss = model(torch.randn(16, 6, generator=data)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_rgd_without_resonance_follows_adamw():
    a, b = _net(), _net()
    hyper = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    _train(a, RGD(a.parameters(), resonance_strength=0.0, **hyper), 20)
    _train(b, torch.optim.AdamW(b.parameters(), foreach=False, **hyper), 20)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(7, 5), (16, 33), (4, 4)])
def test_fast_resonance_gate_equals_fft2_reference(shape):
    g = torch.Generator().manual_seed(0)
    w, u = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    for alpha in (0.3, 1.0):
        fast, reference = resonance_gate(w, u, alpha, 1e-8), resonance_gate_reference(w, u, alpha, 1e-8)
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(resonance_gate(w, u, 0.0, 1e-8), u, rtol=1e-5, atol=1e-6)


def test_resonance_gate_is_finite_for_all_zero_inputs_and_keeps_half_precision():
    u = torch.randn(5, 8)
    assert torch.isfinite(resonance_gate(torch.zeros(5, 8), u, 0.5, 1e-8)).all()
    assert torch.equal(resonance_gate(u, torch.zeros(5, 8), 0.5, 1e-8), torch.zeros(5, 8))
    half = resonance_gate(u.bfloat16(), u.bfloat16(), 0.5, 1e-8)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), resonance_gate(u, u, 0.5, 1e-8), rtol=0.05, atol=0.05)


def test_resonance_changes_matrix_updates_but_not_vector_updates():
    a, b = _net(), _net()
    _train(a, RGD(a.parameters(), lr=1e-2, weight_decay=0.1, resonance_strength=0.5, warmup_steps=0), 1)
    _train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1, foreach=False), 1)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-7) == (p.dim() == 1)


def test_rgd_state_dict_round_trip_continues_the_warmup():
    hyper = dict(lr=1e-2, resonance_strength=0.4, warmup_steps=10)
    straight = _net()
    _train(straight, RGD(straight.parameters(), **hyper), 10)

    data = torch.Generator().manual_seed(1)
    first = _net()
    opt1 = RGD(first.parameters(), **hyper)
    _train(first, opt1, 5, data)
    saved = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, saved)
    saved.seek(0)
    loaded = torch.load(saved)

    resumed = _net(seed=99)
    resumed.load_state_dict(loaded["model"])
    opt2 = RGD(resumed.parameters(), **hyper)
    opt2.load_state_dict(loaded["opt"])
    _train(resumed, opt2, 1, data)
    assert opt2.current_alpha() == pytest.approx(0.4 * 6 / 10)  # the ramp goes on from step 6
    _train(resumed, opt2, 4, data)
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_rgd_alpha_ramps_with_the_step_count_and_is_full_without_warmup():
    model = _net()
    opt = RGD(model.parameters(), resonance_strength=0.3, warmup_steps=10)
    _train(model, opt, 3)
    assert opt.current_alpha() == pytest.approx(0.3 * 3 / 10)
    _train(model, opt, 9)
    assert opt.current_alpha() == pytest.approx(0.3)
    opt = RGD(model.parameters(), resonance_strength=0.3, warmup_steps=0)
    _train(model, opt, 1)
    assert opt.current_alpha() == pytest.approx(0.3)


@pytest.mark.parametrize("bad", [dict(resonance_strength=1.5), dict(resonance_strength=-0.1), dict(lr=-1.0),
                                 dict(betas=(0.9, 1.0)), dict(eps=0.0), dict(weight_decay=-0.1)])
def test_rgd_rejects_invalid_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        RGD(_net().parameters(), **bad)


def test_qfe_with_lambda_zero_is_cross_entropy():
    logits, targets = torch.randn(2, 9, 50), torch.randint(0, 50, (2, 9))
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(QFELoss(lambda_coherence=0.0)(logits, targets), expected)


@pytest.mark.parametrize("vocab", [20, 300])
def test_qfe_components_add_up(vocab):
    logits, targets = torch.randn(2, 16, vocab), torch.randint(0, vocab, (2, 16))
    parts = QFELoss(lambda_coherence=0.3)(logits, targets, return_components=True)
    assert set(parts) == {"total", "ce", "coherence"}
    assert parts["coherence"] > 0
    torch.testing.assert_close(parts["total"], parts["ce"] + 0.3 * parts["coherence"])


_PROJECTION_HASH = ("import hashlib; from wavegpt import QFELoss; "
                    "print(hashlib.sha256(QFELoss(seed=7).projection(1024).numpy().tobytes()).hexdigest())")


def _projection_hash(seed: int) -> str:
    import hashlib

    return hashlib.sha256(QFELoss(seed=seed).projection(1024).numpy().tobytes()).hexdigest()


def test_qfe_projection_is_identical_in_two_fresh_processes():
    procs = [subprocess.Popen([sys.executable, "-c", _PROJECTION_HASH], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # concurrently: each process spends its time importing torch
    hashes = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert hashes[0] == hashes[1] == _projection_hash(7)
    assert _projection_hash(8) != hashes[0]


def test_qfe_projection_is_not_in_state_dict():
    loss_fn = QFELoss()
    loss_fn(torch.randn(1, 4, 100), torch.randint(0, 100, (1, 4)))
    assert loss_fn.state_dict() == {}


@pytest.mark.parametrize("vocab", [20, 300])
@pytest.mark.parametrize("equal_logits", [False, True])
def test_qfe_gradients_are_finite(vocab, equal_logits):
    logits = torch.zeros(3, 12, vocab) if equal_logits else torch.randn(3, 12, vocab) * 5
    logits.requires_grad_()
    parts = QFELoss(lambda_coherence=1.0, projection_dim=64)(logits, torch.randint(0, vocab, (3, 12)),
                                                             return_components=True)
    parts["total"].backward()
    assert parts["coherence"] >= 0
    assert torch.isfinite(logits.grad).all()


def test_rgd_with_qfe_lowers_the_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 40)
    x, y = torch.randn(4, 10, 8), torch.randint(0, 40, (4, 10))
    opt = RGD(model.parameters(), lr=3e-2, resonance_strength=0.5, warmup_steps=5)
    loss_fn = QFELoss(lambda_coherence=0.5, projection_dim=16)  # 40 > 16: the projected path
    first = loss_fn(model(x), y).item()
    for _ in range(40):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first
