"""Reductions, orthogonal projections, generators, the functional API and the spectral norm."""

from __future__ import annotations

import pytest
import torch
from conftest import MLP, ConvNet
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm


def per_sample_jacobians(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Dense J_b for each sample, [B, C, D], from torch.autograd.functional.jacobian."""
    rows = []
    for sample in x.detach():
        jac = torch.autograd.functional.jacobian(lambda s: model(s[None])[0], sample)
        rows.append(jac.reshape(jac.shape[0], -1))
    return torch.stack(rows)


@pytest.fixture
def mlp_batch(device):
    torch.manual_seed(0)
    model = MLP(inputs=12, hidden=16, classes=10).double().to(device)
    # Drawn on the CPU and moved, so every device gets the inputs the CPU cases were tuned on.
    x = torch.randn(6, 12, dtype=torch.float64).to(device).requires_grad_()
    return model, x


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


def test_per_sample_needs_a_shared_batch_dimension():
    x = torch.randn(3, 4, requires_grad=True)
    y = (x.T @ x)[:2]  # y's batch (2) is not x's (3)
    with pytest.raises(ValueError, match=r"share their first \(batch\) dimension"):
        JacobianReg(reduction="none")(x, y)
    with pytest.raises(ValueError, match=r"share their first \(batch\) dimension"):
        spectral_norm(x, y)
    assert torch.isfinite(JacobianReg()(x, y))  # the batch mean needs no per-sample split


def test_orthogonal_is_exact_when_n_equals_c(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    exact = JacobianReg(n=-1)(x, y)
    torch.testing.assert_close(JacobianReg(n=10, projection="orthogonal")(x, y), exact)
    with pytest.raises(ValueError, match=r"at most C=10 orthonormal directions.*n=11"):
        JacobianReg(n=11, projection="orthogonal")(x, y)


def orthogonal_and_sphere_draws(n: int, draws: int = 300) -> tuple[float, dict[str, torch.Tensor]]:
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


def test_generator_is_checked():
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        JacobianReg(generator=3)
    if torch.cuda.is_available():
        x = torch.randn(2, 3, device="cuda", requires_grad=True)
        with pytest.raises(ValueError, match=r"generator is for device cpu but y is on cuda"):
            JacobianReg(generator=torch.Generator())(x, x * 2)


def test_jacobian_norm_builds_no_graph_under_no_grad(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    with torch.no_grad():
        logged = jacobian_norm(x, y)
    assert not logged.requires_grad
    trained = jacobian_norm(x, y)
    assert trained.requires_grad
    torch.testing.assert_close(logged, trained.detach())
    trained.sum().backward()
    assert all(p.grad is not None for p in list(model.parameters())[:-1])


def test_jacobian_norm_random_estimate_is_seeded():
    torch.manual_seed(0)
    model = ConvNet()
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    y = model(x)
    torch.manual_seed(5)
    first = jacobian_norm(x, y, n=2)
    torch.manual_seed(5)
    torch.testing.assert_close(first, jacobian_norm(x, y, n=2))
    assert first.shape == (3,)


def test_spectral_norm_equals_dense_matrix_norm(mlp_batch):
    model, x = mlp_batch
    dense = torch.linalg.matrix_norm(per_sample_jacobians(model, x), 2)
    torch.manual_seed(0)
    sigma = spectral_norm(x, model(x), iters=200, tol=0.0)
    torch.testing.assert_close(sigma, dense, rtol=1e-6, atol=0)
    early = spectral_norm(x, model(x), iters=200, tol=1e-9)
    torch.testing.assert_close(early, dense, rtol=1e-5, atol=0)


def test_spectral_norm_gradients_equal_dense(mlp_batch):
    model, x = mlp_batch
    params = list(model.parameters())[:-1]  # the last bias does not move the Jacobian
    torch.manual_seed(0)
    ours = torch.autograd.grad(spectral_norm(x, model(x), iters=300, tol=0.0).sum(), params)
    dense = torch.stack(
        [
            torch.linalg.matrix_norm(
                torch.autograd.functional.jacobian(
                    lambda s: model(s[None])[0], sample, create_graph=True
                ),
                2,
            )
            for sample in x.detach()
        ]
    )
    expected = torch.autograd.grad(dense.sum(), params)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_spectral_reg_is_bounded_by_frobenius(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    torch.manual_seed(0)
    spectral = JacobianSpectralReg(iters=50, tol=0.0)(x, y)
    frobenius = JacobianReg(n=-1)(x, y)
    assert 0 < spectral.item() < frobenius.item()
    torch.manual_seed(0)
    per_sample = JacobianSpectralReg(iters=50, tol=0.0, reduction="none")(x, y)
    assert per_sample.shape == (6,)
    torch.testing.assert_close(per_sample.mean(), spectral)
    spectral.backward()


def test_spectral_norm_with_generator_and_zero_jacobian():
    x = torch.randn(3, 4, requires_grad=True)
    y = x.sum(1, keepdim=True).expand(3, 2) * 2.0  # J_b = 2 * ones(2, 4): sigma = 2 * sqrt(8)
    generator = torch.Generator().manual_seed(0)
    sigma = spectral_norm(x, y, generator=generator)
    torch.testing.assert_close(sigma, torch.full((3,), 2 * 8**0.5))
    flat = x * 0.0  # a zero Jacobian: sigma 0, not NaN
    torch.testing.assert_close(spectral_norm(x, flat), torch.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"iters": 0}, ValueError, r"iters must be at least 1, got 0"),
        ({"iters": 2.0}, TypeError, r"iters must be an int .*float"),
        ({"tol": -1.0}, ValueError, r"tol must be a finite number >= 0"),
        ({"tol": float("nan")}, ValueError, r"tol must be a finite number"),
        ({"tol": "small"}, TypeError, r"tol must be a float, got str"),
        ({"reduction": "max"}, ValueError, r"reduction must be \"mean\", \"sum\" or \"none\""),
    ],
)
def test_spectral_arguments_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        JacobianSpectralReg(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, r"reduction must be .*got \"avg\""),
        ({"reduction": None}, TypeError, r"reduction must be a str, got NoneType"),
        ({"projection": "gaussian"}, ValueError, r"projection must be \"sphere\" .*\"gaussian\""),
        ({"projection": 1}, TypeError, r"projection must be a str, got int"),
    ],
)
def test_string_options_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        JacobianReg(**kwargs)
    if "projection" in kwargs:
        x = torch.randn(2, 3, requires_grad=True)
        with pytest.raises(error, match=match):
            jacobian_norm(x, x * 2, n=1, **kwargs)


def test_repr_shows_options():
    assert repr(JacobianReg(n=3, reduction="sum", projection="orthogonal")) == (
        "JacobianReg(n=3, reduction='sum', projection='orthogonal')"
    )
    assert "iters=5" in repr(JacobianSpectralReg(iters=5))
    # The generator's state would not fit a repr; which device it draws on does.
    generator = torch.Generator()
    assert repr(JacobianReg(n=2, generator=generator)) == (
        "JacobianReg(n=2, generator=<torch.Generator on cpu>)"
    )
    assert repr(JacobianSpectralReg(generator=generator)).endswith(
        "generator=<torch.Generator on cpu>)"
    )


@pytest.mark.parametrize("op", [torch.sign, torch.round], ids=["sign", "round"])
def test_spectral_norm_of_piecewise_constant_model_is_zero(op):
    x = torch.randn(3, 4, requires_grad=True)
    torch.testing.assert_close(spectral_norm(x, op(x) * 2), torch.zeros(3))
    torch.testing.assert_close(JacobianReg(n=-1)(x, op(x) * 2), torch.tensor(0.0))


def test_spectral_norm_of_half_precision_zero_jacobian_is_zero():
    x = torch.randn(3, 4, dtype=torch.float16, requires_grad=True)
    sigma = spectral_norm(x, x[:, :2] * 0)
    assert torch.equal(sigma, torch.zeros(3, dtype=sigma.dtype))


def test_generator_with_one_output_leaves_the_global_rng_alone():
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.tanh(x.sum(1))  # C = 1
    state = torch.get_rng_state()
    sigma = spectral_norm(x, y, generator=torch.Generator().manual_seed(1))
    JacobianReg(n=3, generator=torch.Generator().manual_seed(1))(x, y)
    assert torch.equal(state, torch.get_rng_state())
    torch.testing.assert_close(sigma, (1 - y.detach() ** 2) * 3**0.5)


def test_orthogonal_n_above_c_is_rejected_even_for_one_output():
    x = torch.randn(5, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"at most C=1 orthonormal directions.*n=2"):
        JacobianReg(n=2, projection="orthogonal")(x, x.sum(1))


def test_generator_does_not_draw_for_a_bad_output():
    x = torch.randn(2, 3, requires_grad=True)
    for bad in (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.complex64)):
        with pytest.raises(TypeError, match=r"y \(the model's output\) must be a real"):
            JacobianReg(generator=torch.Generator())(x, bad)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_generator_on_another_cuda_device_is_rejected():
    x = torch.randn(2, 3, device="cuda:1", requires_grad=True)
    with pytest.raises(ValueError, match=r"generator is for device cuda:0 but y is on cuda:1"):
        JacobianReg(generator=torch.Generator(device="cuda:0"))(x, x * 2)


def test_numpy_integers_and_floats_are_accepted():
    np = pytest.importorskip("numpy")
    assert JacobianReg(n=np.int64(3)).n == 3
    assert JacobianSpectralReg(iters=np.int32(4), tol=np.float32(1e-3)).iters == 4
