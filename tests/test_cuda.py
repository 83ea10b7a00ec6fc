"""CUDA behaviour: device placement, no host round trips, other GPUs, Python autograd functions.

Every test here is skipped without a GPU; the CPU suite covers the same values.
"""

from __future__ import annotations

import pytest
import torch
from conftest import MLP, Cube
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm
from reference import reference_reg
from torch.profiler import ProfilerActivity, profile

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def batch_on(device: str, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    model = MLP(inputs=12, hidden=16, classes=10).to(device=device, dtype=dtype)
    # Drawn on the CPU and moved: CUDA's generator gives other numbers for the same seed.
    x = torch.randn(8, 12, dtype=dtype).to(device).requires_grad_()
    return model, x


def test_cuda_step_makes_no_host_round_trip():
    model, x = batch_on("cuda")
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
    model, x = batch_on("cuda")
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


def test_cuda_draws_follow_the_cuda_generator():
    model, x = batch_on("cuda")
    y = model(x)
    torch.manual_seed(3)
    first = JacobianReg(n=2)(x, y)
    torch.manual_seed(3)
    torch.testing.assert_close(first, reference_reg(x, y, n=2))
    generator = torch.Generator(device="cuda").manual_seed(1)
    again = torch.Generator(device="cuda").manual_seed(1)
    torch.testing.assert_close(
        JacobianReg(n=2, generator=generator)(x, y), JacobianReg(n=2, generator=again)(x, y)
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_gpu_keeps_everything_on_it():
    model, x = batch_on("cuda:1")
    y = model(x)
    r = JacobianReg(n=2)(x, y)
    sigma = spectral_norm(x, y, iters=5)
    assert r.device == torch.device("cuda:1") and sigma.device == torch.device("cuda:1")
    cpu_model, cpu_x = batch_on("cpu")
    torch.testing.assert_close(
        JacobianReg(n=-1)(x, y).cpu(),
        JacobianReg(n=-1)(cpu_x, cpu_model(cpu_x)),
        rtol=1e-4,
        atol=1e-6,
    )
    r.backward()
    with pytest.raises(ValueError, match="generator is for device cuda:0 but y is on cuda:1"):
        JacobianReg(generator=torch.Generator(device="cuda:0"))(x, model(x))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision(dtype):
    model, x = batch_on("cuda")
    exact = JacobianReg(n=-1)(x, model(x))
    x_half = x.detach().to(dtype).requires_grad_()
    y_half = model.to(dtype)(x_half)
    half = JacobianReg(n=-1)(x_half, y_half)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, exact, rtol=0.05, atol=0)
    assert torch.isfinite(JacobianReg(n=3, projection="orthogonal")(x_half, y_half))


def test_cuda_python_autograd_function_does_not_deadlock():
    torch.manual_seed(0)
    x = torch.randn(6, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    y = Cube.apply(x @ w)
    r = JacobianReg(n=-1)(x, y)
    r.backward()
    dense = torch.autograd.functional.jacobian(lambda t: Cube.apply(t @ w), x)
    torch.testing.assert_close(r, 0.5 * dense.pow(2).sum() / 6)
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_cuda_agrees_with_cpu_for_every_api():
    cpu_model, cpu_x = batch_on("cpu", torch.float64)
    model, x = batch_on("cuda", torch.float64)
    cpu_y, y = cpu_model(cpu_x), model(x)
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
