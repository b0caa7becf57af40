"""RGD and QFE as SPEC states them, usable in any torch loop."""

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


def _train(model, opt, steps, data=None):
    data = data or torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = model(torch.randn(16, 6, generator=data)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_rgd_without_resonance_follows_adamw_exactly():
    a, b = _net(), _net()
    _train(a, RGD(a.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, resonance_strength=0.0), 20)
    _train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, foreach=False), 20)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(7, 5), (16, 33), (4, 4)])
def test_fast_resonance_gate_equals_fft2_reference(shape):
    g = torch.Generator().manual_seed(0)
    w, u = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    for alpha in (0.0, 0.3, 1.0):
        fast, ref = resonance_gate(w, u, alpha, 1e-8), resonance_gate_reference(w, u, alpha, 1e-8)
        assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(resonance_gate(w, u, 0.0, 1e-8), u, atol=1e-6)


def test_resonance_changes_matrix_updates_but_not_vector_updates():
    a, b = _net(), _net()
    _train(a, RGD(a.parameters(), lr=1e-2, weight_decay=0.0, resonance_strength=0.5, warmup_steps=0), 1)
    _train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.0, foreach=False), 1)
    (wa, ba), (wb, bb) = list(a[0].parameters()), list(b[0].parameters())
    assert not torch.allclose(wa, wb, atol=1e-7)
    assert torch.allclose(ba, bb, atol=1e-7)


def test_rgd_state_dict_round_trip_continues_the_warmup():
    straight = _net()
    _train(straight, RGD(straight.parameters(), lr=1e-2, resonance_strength=0.4, warmup_steps=10), 10)

    data = torch.Generator().manual_seed(1)
    first = _net()
    opt1 = RGD(first.parameters(), lr=1e-2, resonance_strength=0.4, warmup_steps=10)
    _train(first, opt1, 5, data)
    resumed = _net(seed=99)
    resumed.load_state_dict(first.state_dict())
    opt2 = RGD(resumed.parameters(), lr=1e-2, resonance_strength=0.4, warmup_steps=10)
    opt2.load_state_dict(opt1.state_dict())
    _train(resumed, opt2, 1, data)
    assert opt2.current_alpha() == pytest.approx(0.4 * 6 / 10)  # the ramp goes on from step 6
    _train(resumed, opt2, 4, data)
    for p, q in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_rgd_alpha_ramps_with_the_step_count():
    model = _net()
    opt = RGD(model.parameters(), lr=1e-3, resonance_strength=0.3, warmup_steps=10)
    _train(model, opt, 6)
    assert opt.current_alpha() == pytest.approx(0.3 * 6 / 10)


def test_rgd_rejects_invalid_arguments():
    with pytest.raises(ValueError, match="resonance_strength"):
        RGD(_net().parameters(), resonance_strength=1.5)
    with pytest.raises(ValueError, match="lr"):
        RGD(_net().parameters(), lr=-1)


def test_qfe_with_lambda_zero_is_cross_entropy():
    logits, targets = torch.randn(2, 9, 50), torch.randint(0, 50, (2, 9))
    assert torch.allclose(QFELoss(lambda_coherence=0.0)(logits, targets), F.cross_entropy(logits.flatten(0, 1),
                                                                                          targets.flatten()))


def test_qfe_components_add_up():
    logits, targets = torch.randn(2, 16, 300), torch.randint(0, 300, (2, 16))
    parts = QFELoss(lambda_coherence=0.3)(logits, targets, return_components=True)
    assert set(parts) == {"total", "ce", "coherence"}
    assert parts["coherence"] >= 0
    assert torch.allclose(parts["total"], parts["ce"] + 0.3 * parts["coherence"])


_PROJECTION = "from wavegpt import QFELoss; print(QFELoss(seed={seed}).projection(1024).sum().item())"


def test_qfe_projection_is_identical_in_two_fresh_processes():
    def run(seed):
        code = _PROJECTION.format(seed=seed)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert float(run(7)) == QFELoss(seed=7).projection(1024).sum().item()


@pytest.mark.parametrize("vocab", [20, 300])
@pytest.mark.parametrize("equal_logits", [False, True])
def test_qfe_gradients_are_finite(vocab, equal_logits):
    logits = torch.zeros(3, 12, vocab) if equal_logits else torch.randn(3, 12, vocab) * 5
    logits.requires_grad_()
    QFELoss(lambda_coherence=1.0, projection_dim=64)(logits, torch.randint(0, vocab, (3, 12))).backward()
    assert torch.isfinite(logits.grad).all()


def test_rgd_with_qfe_lowers_the_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 40)
    x, y = torch.randn(4, 10, 8), torch.randint(0, 40, (4, 10))
    opt = RGD(model.parameters(), lr=3e-2, resonance_strength=0.5, warmup_steps=5)
    loss_fn = QFELoss(lambda_coherence=0.5)
    first = loss_fn(model(x), y).item()
    for _ in range(60):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first
