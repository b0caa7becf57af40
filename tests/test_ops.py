"""Every fast attention form against its naive reference: outputs and gradients, fp32."""

import pytest
import torch

from wavegpt.ops import (
    chunk_linear_attention,
    feature_map,
    kernel_attention,
    naive_kernel_attention,
    naive_linear_attention,
    naive_softmax_attention,
    recurrent_linear_attention,
    softmax_attention,
)

B, H, T, E, D = 2, 3, 37, 8, 12


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def inputs(seed: int = 0, tq: int = T):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, tq, E, generator=g).requires_grad_()
    k = torch.randn(B, H, T, E, generator=g).requires_grad_()
    v = torch.randn(B, H, T, D, generator=g).requires_grad_()
    return q, k, v


def assert_same_outputs_and_grads(fast, reference, q, k, v):
    out_f = fast(q, k, v)
    grads_f = torch.autograd.grad(out_f.square().sum(), (q, k, v))
    out_r = reference(q, k, v)
    grads_r = torch.autograd.grad(out_r.square().sum(), (q, k, v))
    assert rel_err(out_f, out_r) < 1e-5
    for gf, gr in zip(grads_f, grads_r):
        assert rel_err(gf, gr) < 1e-5


@pytest.mark.parametrize("tq", [T, 5, 1])
def test_fused_softmax_attention_matches_reference(tq):
    q, k, v = inputs(tq=tq)
    assert_same_outputs_and_grads(softmax_attention, naive_softmax_attention, q, k, v)


@pytest.mark.parametrize("kernel", ["elu_plus_one", "sigmoid", "exp"])
@pytest.mark.parametrize("tq", [T, 4])
def test_quadratic_kernel_attention_matches_reference(kernel, tq):
    q, k, v = inputs(tq=tq)
    assert_same_outputs_and_grads(
        lambda *a: kernel_attention(*a, kernel), lambda *a: naive_kernel_attention(*a, kernel), q, k, v
    )


@pytest.mark.parametrize("kernel", ["elu_plus_one", "sigmoid", "exp"])
@pytest.mark.parametrize("chunk", [1, 8, 16, 64])
def test_chunked_linear_attention_matches_reference(kernel, chunk):
    q, k, v = inputs()

    def fast(q, k, v):
        return chunk_linear_attention(feature_map(q, kernel), feature_map(k, kernel), v, chunk)[0]

    def reference(q, k, v):
        return naive_linear_attention(feature_map(q, kernel), feature_map(k, kernel), v)

    assert_same_outputs_and_grads(fast, reference, q, k, v)


@pytest.mark.parametrize("kernel", ["elu_plus_one", "sigmoid", "exp"])
def test_recurrent_linear_attention_matches_reference(kernel):
    q, k, v = inputs()

    def fast(q, k, v):
        return recurrent_linear_attention(feature_map(q, kernel), feature_map(k, kernel), v)[0]

    def reference(q, k, v):
        return naive_linear_attention(feature_map(q, kernel), feature_map(k, kernel), v)

    assert_same_outputs_and_grads(fast, reference, q, k, v)


def test_linear_attention_state_carries_across_calls():
    """Prefill with the chunked form, continue token by token: same as one pass."""
    q, k, v = (feature_map(t.detach(), "elu_plus_one") if i < 2 else t.detach() for i, t in enumerate(inputs()))
    full = naive_linear_attention(q, k, v)
    head, state = chunk_linear_attention(q[:, :, :20], k[:, :, :20], v[:, :, :20], 8)
    tail, _ = recurrent_linear_attention(q[:, :, 20:], k[:, :, 20:], v[:, :, 20:], state)
    assert rel_err(torch.cat([head, tail], dim=2), full) < 1e-5


def test_chunked_form_never_builds_a_per_token_state():
    """The largest intermediate is one state per chunk, (B, H, T/C, E, D), not per token."""
    q, k, v = (t.detach() for t in inputs())
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                seen.append(out.numel())
            return out

    with Spy():
        chunk_linear_attention(feature_map(q, "exp"), feature_map(k, "exp"), v, 8)
    assert max(seen) < B * H * T * E * D
