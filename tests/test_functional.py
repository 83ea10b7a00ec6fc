"""The functional forms: jacobian_norm, spectral_norm, and jacobian_reg / jacobian_spectral_reg,
which the modules delegate to."""

from __future__ import annotations

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm
from jacobian.functional import jacobian_reg, jacobian_spectral_reg

from tests.models import ConvNet

REDUCTIONS = ["mean", "sum", "none"]


def seeded(device: torch.device, seed: int = 5) -> torch.Generator:
    """A fresh generator on `device`, seeded with `seed`."""
    return torch.Generator(device=device).manual_seed(seed)


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


@pytest.mark.parametrize("projection", ["sphere", "orthogonal"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jacobian_reg_equals_the_module(mlp_batch, reduction, projection):
    model, x = mlp_batch
    y = model(x)
    options = {"reduction": reduction, "projection": projection}
    torch.manual_seed(3)
    module = JacobianReg(n=3, **options)(x, y)
    torch.manual_seed(3)
    torch.testing.assert_close(jacobian_reg(x, y, 3, **options), module, rtol=0, atol=0)
    module = JacobianReg(n=3, generator=seeded(x.device), **options)(x, y)
    functional = jacobian_reg(x, y, 3, generator=seeded(x.device), **options)
    torch.testing.assert_close(functional, module, rtol=0, atol=0)
    assert module.shape == ((6,) if reduction == "none" else ())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jacobian_spectral_reg_equals_the_module(mlp_batch, reduction):
    model, x = mlp_batch
    y = model(x)
    options = {"iters": 4, "tol": 0.0, "reduction": reduction}
    torch.manual_seed(3)
    module = JacobianSpectralReg(**options)(x, y)
    torch.manual_seed(3)
    torch.testing.assert_close(jacobian_spectral_reg(x, y, **options), module, rtol=0, atol=0)
    module = JacobianSpectralReg(generator=seeded(x.device), **options)(x, y)
    functional = jacobian_spectral_reg(x, y, generator=seeded(x.device), **options)
    torch.testing.assert_close(functional, module, rtol=0, atol=0)
    assert module.shape == ((6,) if reduction == "none" else ())


def test_jacobian_reg_uses_attributes_changed_after_construction(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    reg = JacobianReg()
    reg.n, reg.reduction, reg.projection = 3, "none", "orthogonal"
    reg.generator = seeded(x.device)
    expected = jacobian_reg(
        x, y, 3, reduction="none", projection="orthogonal", generator=seeded(x.device)
    )
    torch.testing.assert_close(reg(x, y), expected, rtol=0, atol=0)


def test_jacobian_spectral_reg_uses_attributes_changed_after_construction(mlp_batch):
    model, x = mlp_batch
    y = model(x)
    reg = JacobianSpectralReg()
    reg.iters, reg.tol, reg.reduction = 2, 0.0, "none"
    reg.generator = seeded(x.device)
    expected = jacobian_spectral_reg(
        x, y, iters=2, tol=0.0, reduction="none", generator=seeded(x.device)
    )
    torch.testing.assert_close(reg(x, y), expected, rtol=0, atol=0)
