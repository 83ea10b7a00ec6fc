"""CUDA behaviour: device placement, no host round trips, other GPUs, autocast.

Every test here carries the `cuda` marker and is skipped without a GPU; the CPU suite covers the
same values, and its `device` fixture runs much of it on CUDA too.
"""

from __future__ import annotations

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm
from torch.profiler import ProfilerActivity, profile

from tests.models import MLP, make_batch

pytestmark = pytest.mark.cuda


def test_cuda_step_makes_no_host_round_trip():
    model, x = make_batch("mlp", torch.float32, "cuda")
    y = model(x)
    torch.cuda.synchronize()
    # Any synchronising call (a host-to-device copy of a CPU draw, .item(), ...) raises here.
    torch.cuda.set_sync_debug_mode("error")
    try:
        # The mode must be armed, or this test could not fail.
        with pytest.raises(RuntimeError, match="synchroniz"):
            y.sum().item()
        # Orthogonal projections are left out: cuSOLVER's QR may synchronise on its own.
        r = JacobianReg(n=3)(x, y) + jacobian_norm(x, y, n=-1).sum()
        r = r + JacobianSpectralReg(iters=3, tol=0.0)(x, y)
        (y.pow(2).mean() + r).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert r.device.type == "cuda"


def test_cuda_step_copies_nothing_from_the_host():
    # The sync debug mode above misses asynchronous copies; the profiler sees every one.
    model, x = make_batch("mlp", torch.float32, "cuda")
    reg = JacobianReg(n=3)
    reg(x, model(x)).backward()  # warm-up: cuBLAS handles and the allocator's first blocks
    torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities, acc_events=True) as prof:
        y = model(x)
        sigma = spectral_norm(x, y, iters=3, tol=0.0)
        (reg(x, y) + jacobian_norm(x, y, n=-1).sum() + sigma.sum()).backward()
        torch.cuda.synchronize()
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    assert kernels, "the profiler saw no CUDA activity, so it could not have seen a copy either"
    copies = sorted({e.name for e in events if "HtoD" in e.name})
    assert not copies, f"host-to-device copies during the step: {copies}"


@pytest.mark.cuda(devices=2)
def test_second_gpu_keeps_everything_on_it():
    model, x = make_batch("mlp", torch.float32, "cuda:1")
    y = model(x)
    r = JacobianReg(n=2)(x, y)
    sigma = spectral_norm(x, y, iters=5)
    assert r.device == torch.device("cuda:1") and sigma.device == torch.device("cuda:1")
    cpu_model, cpu_x = make_batch("mlp", torch.float32, "cpu")
    torch.testing.assert_close(
        JacobianReg(n=-1)(x, y).cpu(),
        JacobianReg(n=-1)(cpu_x, cpu_model(cpu_x)),
        rtol=1e-4,
        atol=1e-6,
    )
    r.backward()
    with pytest.raises(ValueError, match="generator is for device cuda:0 but y is on cuda:1"):
        JacobianReg(generator=torch.Generator(device="cuda:0"))(x, model(x))


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_cuda_agrees_with_cpu_for_every_api(name):
    cpu_model, cpu_x = make_batch(name, torch.float64, "cpu")
    model, x = make_batch(name, torch.float64, "cuda")
    cpu_y, y = cpu_model(cpu_x), model(x)
    exact = JacobianReg(n=-1)(x, y)
    assert exact.device == x.device
    torch.testing.assert_close(exact.cpu(), JacobianReg(n=-1)(cpu_x, cpu_y))
    torch.testing.assert_close(jacobian_norm(x, y).cpu(), jacobian_norm(cpu_x, cpu_y))
    torch.testing.assert_close(
        spectral_norm(x, y, iters=200, tol=0.0).cpu(),
        spectral_norm(cpu_x, cpu_y, iters=200, tol=0.0),
        rtol=1e-6,
        atol=0,
    )


def test_cuda_autocast_float16_training_step():
    torch.manual_seed(0)
    model = MLP(inputs=12, hidden=32, classes=10).cuda()
    x = torch.randn(16, 12, device="cuda", requires_grad=True)
    exact32 = JacobianReg(n=-1)(x, model(x))
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        y = model(x)
        assert y.dtype == torch.float16
        low = JacobianReg(n=-1)(x, y)
    assert low.dtype == torch.float32
    # float16 keeps 11 bits of mantissa; the squared norm is summed in float32.
    torch.testing.assert_close(low, exact32, rtol=0.01, atol=0)
    scaler.scale(y.float().pow(2).mean() + low).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
