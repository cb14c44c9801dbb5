"""Scans against their sequential references; padding, Δ = 0 and huge gaps; the CUDA kernel."""

from __future__ import annotations

import pytest
import torch

from recsys.models import scans
from recsys.models.scans import (
    _SelectiveScanFn,
    cuda_kernel_available,
    diagonal_scan,
    diagonal_scan_reference,
    selective_scan,
    selective_scan_reference,
)
from recsys.models.ssm import SelectiveSSM, TimeAwareS5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def selective_inputs(batch=3, length=17, d_inner=8, d_state=4, dtype=torch.float32, seed=0):
    """Random (u, delta, A, B, C, D) at Mamba's value ranges, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    u, B, C = (
        randn(batch, length, d_inner),
        randn(batch, length, d_state),
        randn(batch, length, d_state),
    )
    delta = torch.nn.functional.softplus(randn(batch, length, d_inner) - 1)
    A, D = -torch.exp(randn(d_inner, d_state)), randn(d_inner)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


def values_and_grads(fn, inputs):
    out = fn(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.real.dtype).reshape(out.shape)
    loss = (out.real * weights).sum() + (out.abs() ** 2).sum() * 0.1
    return [out, *torch.autograd.grad(loss, inputs, materialize_grads=True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selective_scan_matches_reference_forward_and_backward(dtype):
    inputs = selective_inputs(dtype=dtype)
    ours = values_and_grads(selective_scan, inputs)
    reference = values_and_grads(selective_scan_reference, inputs)
    for name, a, b in zip(
        ["y", "du", "ddelta", "dA", "dB", "dC", "dD"], ours, reference, strict=True
    ):
        scale = max(1.0, b.abs().max().item())  # relative for the large summed dA
        assert (a - b).abs().max().item() <= 1e-5 * scale, name


def test_inference_scan_equals_the_training_forward_bit_for_bit():
    """Without autograd the scan keeps one running state; the values are the same bytes."""
    inputs = selective_inputs(batch=4, length=23)
    trained = selective_scan(*inputs)  # inputs require grad: the autograd Function
    with torch.inference_mode():
        inferred = selective_scan(*(t.detach() for t in inputs))
    assert trained.requires_grad and not inferred.requires_grad
    assert torch.equal(trained.detach(), inferred)


def test_inference_scan_in_row_blocks_and_last_step_only(monkeypatch):
    """Rows scanned in blocks (here of 3 rows, 7 rows in all) and the last-step-only output
    give the training forward's values bit for bit."""
    monkeypatch.setattr(scans, "ROWS_PER_BLOCK", 3)
    inputs = selective_inputs(batch=7, length=11)
    trained = selective_scan(*inputs).detach()
    detached = [t.detach() for t in inputs]
    with torch.inference_mode():
        blocked = selective_scan(*detached)
        last = selective_scan(*detached, last_only=True)
        last_kept = selective_scan(*detached, keep_states=True, last_only=True)
    assert torch.equal(blocked, trained)
    assert last.shape == (7, 1, 8) and torch.equal(last, trained[:, -1:])
    assert torch.equal(last_kept, trained[:, -1:])


def test_selective_scan_gradcheck_float64():
    inputs = selective_inputs(batch=2, length=6, d_inner=3, d_state=2, dtype=torch.float64)
    assert torch.autograd.gradcheck(_SelectiveScanFn.apply, inputs[:5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_diagonal_scan_matches_reference(dtype):
    gen = torch.Generator().manual_seed(1)
    for length in (1, 2, 7, 16, 50):  # powers of two and not
        a = torch.rand(4, length, 5, generator=gen).to(dtype) * 0.99
        if dtype.is_complex:
            a = a * torch.exp(1j * torch.rand(4, length, 5, generator=gen))
        x = torch.randn(4, length, 5, generator=gen).to(dtype)
        a.requires_grad_(), x.requires_grad_()
        ours = values_and_grads(diagonal_scan, [a, x])
        reference = values_and_grads(diagonal_scan_reference, [a, x])
        for got, want in zip(ours, reference, strict=True):
            assert (got - want).abs().max().item() <= 1e-5


def test_diagonal_scan_gradcheck_complex128():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(2, 5, 3, generator=gen, dtype=torch.float64) * 0.9
    a = a * torch.exp(1j * torch.rand(2, 5, 3, generator=gen, dtype=torch.float64))
    x = torch.randn(2, 5, 3, generator=gen, dtype=torch.complex128)
    assert torch.autograd.gradcheck(diagonal_scan, [a.requires_grad_(), x.requires_grad_()])


def test_zero_delta_is_an_identity_step():
    u, delta, A, B, C, _ = (t.detach() for t in selective_inputs())
    delta = delta.clone()
    delta[:, 5] = 0  # same-second event: the state neither decays nor takes input
    y = selective_scan(u, delta, A, B, C)
    # state after step 5 = state after step 4, read out with C_5
    reference = selective_scan_reference(u[:, :5], delta[:, :5], A, B[:, :5], C[:, :5])
    c5 = torch.cat([C[:, :4], C[:, 5:6]], dim=1)
    read_with_c5 = selective_scan_reference(u[:, :5], delta[:, :5], A, B[:, :5], c5)
    torch.testing.assert_close(y[:, :5], reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 5], read_with_c5[:, 4], atol=1e-5, rtol=1e-5)


def layer_outputs(layer, events, gaps, pad):
    """Layer output on `events` (B, L, H) with `pad` extra padded steps in front."""
    batch, _, hidden = events.shape
    x = torch.cat([torch.randn(batch, pad, hidden) * 100, events], dim=1)  # garbage at pads
    mask = torch.cat(
        [
            torch.zeros(batch, pad, dtype=torch.bool),
            torch.ones_like(events[..., 0], dtype=torch.bool),
        ],
        1,
    )
    step = torch.cat([torch.full((batch, pad), 1e9), gaps], dim=1)  # garbage gaps at pads
    out = layer(x, step, mask) if isinstance(layer, TimeAwareS5) else layer(x, mask)
    return out[:, pad:]


@pytest.mark.parametrize("kind", ["s5", "mamba"])
def test_left_padding_never_changes_the_output(kind):
    torch.manual_seed(3)
    layer = (
        TimeAwareS5(16, 8, 0.001, 0.1) if kind == "s5" else SelectiveSSM(16, 8, 4, 2, 0.001, 0.1)
    )
    events, gaps = torch.randn(2, 9, 16), torch.rand(2, 9) * 3
    with torch.no_grad():
        outputs = [layer_outputs(layer, events, gaps, pad) for pad in (0, 1, 5, 23)]
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], atol=1e-5, rtol=1e-5)


def test_time_aware_s5_handles_zero_and_huge_steps():
    torch.manual_seed(4)
    layer = TimeAwareS5(16, 8, 0.001, 0.1)
    x, mask = torch.randn(3, 12, 16), torch.ones(3, 12, dtype=torch.bool)
    zero = layer(x, torch.zeros(3, 12), mask)
    # Δ = 0: B̄ = 0, so the state stays 0 and only the skip path D·u remains
    torch.testing.assert_close(zero, layer.D * x, atol=1e-6, rtol=1e-6)
    huge = layer(x, torch.full((3, 12), 1e30), mask)  # years in any unit: Λ̄ -> 0
    assert torch.isfinite(huge).all()
    assert huge.abs().max() < 1e3  # bounded: B̄ -> -B̃/Λ, no accumulation
    huge.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_selective_scan_huge_delta_stays_bounded():
    u, delta, A, B, C, _ = (t.detach() for t in selective_inputs())
    y = selective_scan(u, torch.full_like(delta, 1e30), A, B, C)
    assert torch.isfinite(y).all()


@pytest.mark.skipif(not cuda_kernel_available(), reason="mamba_ssm with CUDA is not available")
def test_cuda_kernel_agrees_with_ours():
    inputs = [t.detach().cuda() for t in selective_inputs(batch=4, length=33, d_inner=16)]
    fused = selective_scan(*inputs, use_cuda_kernel=True)
    ours = selective_scan(*inputs, use_cuda_kernel=False)
    torch.testing.assert_close(fused, ours, atol=1e-4, rtol=1e-4)
