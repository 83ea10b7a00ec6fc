"""JacobianReg's values and gradients against the pure-PyTorch reference and dense Jacobians:
reductions, exact per-sample values, orthogonal projections and generators."""

from __future__ import annotations

import pytest
import torch
from jacobian import JacobianReg, jacobian_norm, spectral_norm

from tests.models import MLP, MODELS, Cube, make_batch
from tests.reference import dense_reg, per_sample_jacobians, reference_reg


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """assert_close's tolerances for comparing against the reference in `dtype`."""
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 0}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("n", [1, 3, -1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seeded_value_and_gradients_equal_reference(name, n, dtype, device):
    model, x = make_batch(name, dtype, device)
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
    model, x = make_batch(name, torch.float64, device, seed=3)
    ours = JacobianReg(n=-1)(x, model(x))
    torch.testing.assert_close(ours, dense_reg(model, x.detach()), rtol=1e-10, atol=0)


def test_rng_state_advances_like_reference():
    model, x = make_batch("mlp", torch.float32, torch.device("cpu"))
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
    model, x = make_batch("conv-map", torch.float64, torch.device("cpu"))
    y = model(x)
    assert y.dim() == 4
    torch.manual_seed(5)
    ours = JacobianReg(n=2)(x, y)
    torch.manual_seed(5)
    torch.testing.assert_close(ours, reference_reg(x, y, n=2), rtol=1e-10, atol=0)


def test_unbiased_random_estimate():
    # Mean of 400 independent n=1 estimates versus the exact value, within 4 standard errors.
    model, x = make_batch("mlp", torch.float64, torch.device("cpu"), seed=11)
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
    model, x = make_batch("mlp", torch.float64, torch.device("cpu"), seed=2)
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
        """The exact regularizer of the model at x."""
        return reg(x, model(x))

    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(penalty, (x,))
    assert torch.autograd.gradgradcheck(penalty, (x,))

    def seeded_random_penalty(x: torch.Tensor) -> torch.Tensor:
        """A two-projection estimate with the same draws on every call."""
        torch.manual_seed(1)
        return JacobianReg(n=2)(x, model(x))

    assert torch.autograd.gradcheck(seeded_random_penalty, (x,))


def test_two_calls_on_one_graph_then_backward():
    model, x = make_batch("mlp", torch.float32, torch.device("cpu"))
    y = model(x)
    reg = JacobianReg(n=-1)
    first, second = reg(x, y), reg(x, y)
    torch.testing.assert_close(first, second)
    loss = y.pow(2).mean() + first + second
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_no_grad_gives_same_value_without_graph():
    model, x = make_batch("conv", torch.float32, torch.device("cpu"))
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
    model, x = make_batch("mlp", torch.float32, device)
    exact = JacobianReg(n=-1)(x, model(x))
    x_half = x.detach().to(dtype).requires_grad_()
    y_half = model.to(dtype)(x_half)
    half = JacobianReg(n=-1)(x_half, y_half)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, exact, rtol=0.05, atol=0)
    assert torch.isfinite(JacobianReg(n=2)(x_half, y_half))
    assert torch.isfinite(JacobianReg(n=3, projection="orthogonal")(x_half, y_half))


def test_non_contiguous_output_matches_reference():
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(5, 6)
    y = (w @ x.T).T  # [4, 5], transposed in memory
    assert not y.is_contiguous()
    torch.manual_seed(9)
    ours = JacobianReg(n=2)(x, y)
    torch.manual_seed(9)
    torch.testing.assert_close(ours, reference_reg(x, y, n=2))


def test_trains_through_autograd_function_with_gil_released(device):
    # On CUDA too: the engine's device threads must take the GIL for Cube's backward.
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64).to(device).requires_grad_()
    w = torch.randn(3, 2, dtype=torch.float64).to(device).requires_grad_()
    y = Cube.apply(x @ w)
    r = JacobianReg(n=-1)(x, y)
    r.backward()
    expected = 0.5 * torch.autograd.functional.jacobian(lambda t: Cube.apply(t @ w), x).pow(2).sum()
    torch.testing.assert_close(r, expected / 5)
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_reductions_agree(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    values = {}
    for reduction in ("mean", "sum", "none"):
        torch.manual_seed(4)
        values[reduction] = JacobianReg(n=2, reduction=reduction)(x, y)
    assert values["none"].shape == (6,)
    torch.testing.assert_close(values["sum"], values["mean"] * 6)
    torch.testing.assert_close(values["none"].sum(), values["sum"])


def test_exact_per_sample_values_equal_dense(mlp_batch):
    model, x = mlp_batch
    dense = per_sample_jacobians(model, x).pow(2).sum((1, 2))
    torch.testing.assert_close(JacobianReg(n=-1, reduction="none")(x, model(x)), 0.5 * dense)
    torch.testing.assert_close(jacobian_norm(x, model(x)), dense)


def test_orthogonal_is_exact_when_n_equals_c(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    exact = JacobianReg(n=-1)(x, y)
    torch.testing.assert_close(JacobianReg(n=10, projection="orthogonal")(x, y), exact)
    with pytest.raises(ValueError, match=r"at most C=10 orthonormal directions.*n=11"):
        JacobianReg(n=11, projection="orthogonal")(x, y)


def orthogonal_and_sphere_draws(n: int, draws: int = 300) -> tuple[float, dict[str, torch.Tensor]]:
    """The exact value and `draws` estimates with n projections of each kind, for C=10."""
    torch.manual_seed(1)
    model = MLP(inputs=12, hidden=16, classes=10).double()
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    y = model(x)
    exact = JacobianReg(n=-1)(x, y).item()
    values = {}
    with torch.no_grad():
        for projection in ("sphere", "orthogonal"):
            reg = JacobianReg(n=n, projection=projection)
            values[projection] = torch.stack([reg(x, y) for _ in range(draws)])
    return exact, values


@pytest.mark.parametrize("n", [2, 3, 5])
def test_orthogonal_is_unbiased(n):
    exact, values = orthogonal_and_sphere_draws(n)
    for draws in values.values():
        # The mean of 300 estimates lies within 4 standard errors of the exact value.
        assert abs(draws.mean().item() - exact) < 4 * draws.std().item() / 300**0.5


@pytest.mark.parametrize(("n", "bound"), [(5, 0.8), (8, 0.45)])
def test_orthogonal_has_lower_variance(n, bound):
    # Orthonormal directions are sampled without replacement: the variance shrinks by about
    # (C - n)/(C - 1) against independent draws (0.56 for n=5, 0.22 for n=8 with C=10). The
    # bounds leave room for the sampling error of a ratio of two variances from 300 draws each.
    _, values = orthogonal_and_sphere_draws(n)
    assert (values["orthogonal"].var() / values["sphere"].var()).item() < bound


def test_generator_gives_reproducible_draws_independent_of_global_rng(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    results = []
    for projection in ("sphere", "orthogonal"):
        for _ in range(2):
            generator = torch.Generator(device=x.device).manual_seed(42)
            state = torch.get_rng_state()
            results.append(JacobianReg(n=3, projection=projection, generator=generator)(x, y))
            assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(results[0], results[1]) and torch.equal(results[2], results[3])
    assert not torch.equal(results[0], results[2])
    generator = torch.Generator(device=x.device).manual_seed(42)
    reg = JacobianReg(n=3, generator=generator)
    assert not torch.equal(reg(x, y), reg(x, y))  # the generator advances between calls


@pytest.mark.parametrize("n", [1, 3])
def test_sphere_generator_draws_each_projection_in_turn_like_reference(mlp_batch, n):
    # The documented draw: torch.randn(B, C, generator=g) per projection, in order, in the
    # default dtype (float32), normalised, then cast to y's (float64 here).
    model, x = mlp_batch
    y = model(x)
    ours_generator = torch.Generator(device=x.device).manual_seed(11)
    ref_generator = torch.Generator(device=x.device).manual_seed(11)
    ours = JacobianReg(n=n, generator=ours_generator)(x, y)
    ref = reference_reg(x, y, n=n, generator=ref_generator)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    # Nothing else was drawn: both generators stand at the same place afterwards.
    assert torch.equal(ours_generator.get_state(), ref_generator.get_state())


def test_orthogonal_generator_draws_all_projections_at_once(mlp_batch):
    # The documented draw: torch.randn(n, B, C, generator=g) in the default dtype (float32),
    # whose per-sample QR in y's dtype (float64 here; signs fixed by R's diagonal) gives the n
    # orthonormal directions.
    model, x = mlp_batch
    y = model(x)
    generator = torch.Generator(device=x.device).manual_seed(11)
    ours = JacobianReg(n=3, projection="orthogonal", generator=generator)(x, y)
    ref_generator = torch.Generator(device=x.device).manual_seed(11)
    noise = torch.randn(3, 6, 10, device=x.device, generator=ref_generator).to(y.dtype)
    q, r = torch.linalg.qr(noise.permute(1, 2, 0))  # [B, C, n]
    directions = q * r.diagonal(dim1=-2, dim2=-1).sign().unsqueeze(1)
    projected = directions.transpose(1, 2) @ per_sample_jacobians(model, x)  # [B, n, D]
    ref = 0.5 * 10 / (3 * 6) * projected.pow(2).sum()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    assert torch.equal(generator.get_state(), ref_generator.get_state())


def test_generator_with_one_output_leaves_the_global_rng_alone():
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.tanh(x.sum(1))  # C = 1
    state = torch.get_rng_state()
    sigma = spectral_norm(x, y, generator=torch.Generator().manual_seed(1))
    JacobianReg(n=3, generator=torch.Generator().manual_seed(1))(x, y)
    assert torch.equal(state, torch.get_rng_state())
    torch.testing.assert_close(sigma, (1 - y.detach() ** 2) * 3**0.5)


def test_repr_shows_options():
    assert repr(JacobianReg(n=3, reduction="sum", projection="orthogonal")) == (
        "JacobianReg(n=3, reduction='sum', projection='orthogonal')"
    )
    # The generator's state would not fit a repr; which device it draws on does.
    assert repr(JacobianReg(n=2, generator=torch.Generator())) == (
        "JacobianReg(n=2, generator=<torch.Generator on cpu>)"
    )
