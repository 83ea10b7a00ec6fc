"""The regularizer's values and gradients against the pure-PyTorch reference and dense Jacobians."""

from __future__ import annotations

import pytest
import torch
from conftest import MLP, ConvMap, ConvNet, Cube
from jacobian import JacobianReg
from reference import dense_reg, reference_reg

MODELS = {
    "mlp": (MLP, (6, 12)),
    "conv": (ConvNet, (5, 1, 8, 8)),
    "conv-map": (ConvMap, (3, 2, 5, 5)),
}


def make(name: str, dtype: torch.dtype, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    cls, shape = MODELS[name]
    model = cls().to(device=device, dtype=dtype)
    # Drawn on the CPU and moved, so every device gets the inputs the CPU cases were tuned on.
    x = torch.randn(shape, dtype=dtype).to(device).requires_grad_()
    return model, x


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 0}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 3, -1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seeded_value_and_gradients_equal_reference(name, n, dtype, device):
    model, x = make(name, dtype, device)
    y = model(x)
    torch.manual_seed(123)
    ours = JacobianReg(n=n)(x, y)
    torch.manual_seed(123)
    ref = reference_reg(x, y, n=n)
    torch.testing.assert_close(ours, ref, **tolerance(dtype))
    assert ours.shape == ()
    assert ours.dtype == dtype
    assert ours.device == x.device

    params = list(model.parameters())
    # The last layer's bias does not move the Jacobian: its gradient is None in both.
    ours_grads = torch.autograd.grad(ours, [*params, x], retain_graph=True, allow_unused=True)
    ref_grads = torch.autograd.grad(ref, [*params, x], allow_unused=True)
    assert sum(g is not None for g in ours_grads) >= len(params)
    for a, b in zip(ours_grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **tolerance(dtype))


@pytest.mark.parametrize("name", MODELS)
def test_exact_mode_equals_dense_jacobian(name, device):
    model, x = make(name, torch.float64, device, seed=3)
    ours = JacobianReg(n=-1)(x, model(x))
    torch.testing.assert_close(ours, dense_reg(model, x.detach()), rtol=1e-10, atol=0)


def test_rng_state_advances_like_reference():
    model, x = make("mlp", torch.float32, torch.device("cpu"))
    y = model(x)
    torch.manual_seed(7)
    JacobianReg(n=3)(x, y)
    after_ours = torch.rand(4)
    torch.manual_seed(7)
    reference_reg(x, y, n=3)
    torch.testing.assert_close(after_ours, torch.rand(4), rtol=0, atol=0)


def test_one_dimensional_output_takes_no_draw():
    torch.manual_seed(0)
    x = torch.randn(7, 3, requires_grad=True)
    w = torch.randn(3)
    y = torch.tanh(x @ w)  # shape [B]: C = 1
    state = torch.get_rng_state()
    ours = JacobianReg(n=4)(x, y)
    assert torch.equal(state, torch.get_rng_state())
    exact = 0.5 * ((1 - y.detach() ** 2)[:, None] * w).pow(2).sum() / 7
    torch.testing.assert_close(ours, exact)
    torch.testing.assert_close(ours, reference_reg(x, y, n=4))


def test_four_dimensional_output_is_flattened_per_sample():
    model, x = make("conv-map", torch.float64, torch.device("cpu"))
    y = model(x)
    assert y.dim() == 4
    torch.manual_seed(5)
    ours = JacobianReg(n=2)(x, y)
    torch.manual_seed(5)
    torch.testing.assert_close(ours, reference_reg(x, y, n=2), rtol=1e-10, atol=0)


def test_unbiased_random_estimate():
    # Mean of 400 independent n=1 estimates versus the exact value, within 4 standard errors.
    model, x = make("mlp", torch.float64, torch.device("cpu"), seed=11)
    y = model(x)
    exact = JacobianReg(n=-1)(x, y).item()
    torch.manual_seed(0)
    reg = JacobianReg(n=1)
    with torch.no_grad():
        draws = torch.stack([reg(x, y) for _ in range(400)])
    standard_error = draws.std().item() / 400**0.5
    assert standard_error > 0
    assert abs(draws.mean().item() - exact) < 4 * standard_error


def test_more_projections_reduce_variance():
    model, x = make("mlp", torch.float64, torch.device("cpu"), seed=2)
    y = model(x)
    torch.manual_seed(0)
    with torch.no_grad():
        one = torch.stack([JacobianReg(n=1)(x, y) for _ in range(200)])
        four = torch.stack([JacobianReg(n=4)(x, y) for _ in range(200)])
    # Var(n=4) = Var(n=1)/4; allow wide sampling error on the ratio of two sample variances.
    ratio = (four.var() / one.var()).item()
    assert 0.15 < ratio < 0.45


def test_gradcheck_and_gradgradcheck():
    torch.manual_seed(0)
    model = MLP(inputs=3, hidden=4, classes=2).double()
    reg = JacobianReg(n=-1)

    def penalty(x: torch.Tensor) -> torch.Tensor:
        return reg(x, model(x))

    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(penalty, (x,))
    assert torch.autograd.gradgradcheck(penalty, (x,))

    def seeded_random_penalty(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        return JacobianReg(n=2)(x, model(x))

    assert torch.autograd.gradcheck(seeded_random_penalty, (x,))


def test_two_calls_on_one_graph_then_backward():
    model, x = make("mlp", torch.float32, torch.device("cpu"))
    y = model(x)
    reg = JacobianReg(n=-1)
    first, second = reg(x, y), reg(x, y)
    torch.testing.assert_close(first, second)
    loss = y.pow(2).mean() + first + second
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_no_grad_gives_same_value_without_graph():
    model, x = make("conv", torch.float32, torch.device("cpu"))
    y = model(x)
    reg = JacobianReg(n=-1)
    with_grad = reg(x, y)
    with torch.no_grad():
        without = reg(x, y)
    assert with_grad.requires_grad
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())
    y.sum().backward()  # y's graph is still usable afterwards


def test_empty_batch_gives_zero_and_backward_works():
    model = MLP()
    x = torch.randn(0, 12, requires_grad=True)
    y = model(x)
    r = JacobianReg()(x, y)
    assert r.shape == () and r.item() == 0.0
    (y.sum() + r).backward()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_outputs_propagate(bad):
    x = torch.randn(3, 4, requires_grad=True)
    y = x * torch.tensor([1.0, bad, 1.0, 1.0])
    assert not torch.isfinite(JacobianReg(n=-1)(x, y))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_outputs_close_to_float32(dtype, device):
    model, x = make("mlp", torch.float32, device)
    exact = JacobianReg(n=-1)(x, model(x))
    x_half = x.detach().to(dtype).requires_grad_()
    half = JacobianReg(n=-1)(x_half, model.to(dtype)(x_half))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, exact, rtol=0.05, atol=0)
    draw = JacobianReg(n=2)(x_half, model(x_half))
    assert torch.isfinite(draw)


def test_non_contiguous_output_matches_reference():
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(5, 6)
    y = (w @ x.T).T  # [4, 5], transposed in memory
    assert not y.is_contiguous()
    torch.manual_seed(9)
    ours = JacobianReg(n=2)(x, y)
    torch.manual_seed(9)
    torch.testing.assert_close(ours, reference_reg(x, y, n=2))


def test_trains_through_autograd_function_with_gil_released():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    y = Cube.apply(x @ w)
    r = JacobianReg(n=-1)(x, y)
    r.backward()
    expected = 0.5 * torch.autograd.functional.jacobian(lambda t: Cube.apply(t @ w), x).pow(2).sum()
    torch.testing.assert_close(r, expected / 5)
    assert w.grad is not None and torch.isfinite(w.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu():
    device = torch.device("cuda")
    model, x = make("conv", torch.float64, torch.device("cpu"))
    cpu = JacobianReg(n=-1)(x, model(x))
    x_dev = x.detach().to(device).requires_grad_()
    dev = JacobianReg(n=-1)(x_dev, model.to(device)(x_dev))
    assert dev.device == device
    torch.testing.assert_close(dev.cpu(), cpu)
