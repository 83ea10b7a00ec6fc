"""The spectral norm and JacobianSpectralReg against dense Jacobians and a dense power iteration."""

from __future__ import annotations

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, spectral_norm

from tests.reference import per_sample_jacobians, power_iteration


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


@pytest.mark.parametrize("iters", [1, 2, 5])
def test_generator_start_is_one_draw_like_reference(mlp_batch, iters):
    # The documented draw: the start is torch.randn(B, C, generator=g) in the default dtype
    # (float32), cast to y's. A few iterations are far from converged, so the value depends on
    # the start it came from.
    model, x = mlp_batch
    generator = torch.Generator(device=x.device).manual_seed(3)
    sigma = spectral_norm(x, model(x), iters=iters, tol=0.0, generator=generator)
    ref_generator = torch.Generator(device=x.device).manual_seed(3)
    start = torch.randn(6, 10, device=x.device, generator=ref_generator).to(x.dtype)
    expected = power_iteration(per_sample_jacobians(model, x), start, iters)
    torch.testing.assert_close(sigma, expected, rtol=1e-12, atol=0)
    assert torch.equal(generator.get_state(), ref_generator.get_state())


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


@pytest.mark.parametrize("op", [torch.sign, torch.round], ids=["sign", "round"])
def test_spectral_norm_of_piecewise_constant_model_is_zero(op):
    x = torch.randn(3, 4, requires_grad=True)
    torch.testing.assert_close(spectral_norm(x, op(x) * 2), torch.zeros(3))
    torch.testing.assert_close(JacobianReg(n=-1)(x, op(x) * 2), torch.tensor(0.0))


def test_spectral_norm_of_half_precision_zero_jacobian_is_zero():
    x = torch.randn(3, 4, dtype=torch.float16, requires_grad=True)
    sigma = spectral_norm(x, x[:, :2] * 0)
    assert torch.equal(sigma, torch.zeros(3, dtype=sigma.dtype))


def test_repr_shows_options():
    assert "iters=5" in repr(JacobianSpectralReg(iters=5))
    # The generator's state would not fit a repr; which device it draws on does.
    assert repr(JacobianSpectralReg(generator=torch.Generator())).endswith(
        "generator=<torch.Generator on cpu>)"
    )
