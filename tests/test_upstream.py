"""Upstream's names: the jacobian.jacobian module, its pickles, _random_vector and its overrides."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jacobian
import pytest
import torch
from conftest import MLP
from jacobian import JacobianReg
from jacobian.jacobian import JacobianReg as UpstreamPathReg
from reference import reference_reg


def test_upstreams_module_path_gives_the_same_class():
    assert UpstreamPathReg is JacobianReg
    assert JacobianReg.__module__ == "jacobian.regularizer"


# Saves a model holding a regularizer as the upstream package made it: the class is pickled by
# reference as jacobian.jacobian.JacobianReg, and its state is `n` and nn.Module's own fields.
# The stand-in defines only what upstream's class has, in upstream's order (n before
# nn.Module.__init__), under upstream's module path; our package is kept out of this process.
SAVE_UPSTREAM_PICKLE = textwrap.dedent(
    """
    import sys, types
    import torch
    from torch import nn

    package, module = types.ModuleType("jacobian"), types.ModuleType("jacobian.jacobian")
    package.jacobian = module
    sys.modules.update({"jacobian": package, "jacobian.jacobian": module})

    class JacobianReg(nn.Module):
        def __init__(self, n=1):
            self.n = n
            super().__init__()

    JacobianReg.__module__ = "jacobian.jacobian"
    module.JacobianReg = JacobianReg
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    torch.save(nn.ModuleDict({"net": net, "reg": JacobianReg(n=2)}), sys.argv[1])
    """
)


def test_a_model_pickled_with_the_upstream_regularizer_loads_and_trains(tmp_path):
    path = tmp_path / "upstream_model.pt"
    saved = subprocess.run(
        [sys.executable, "-c", SAVE_UPSTREAM_PICKLE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert saved.returncode == 0, saved.stderr
    model = torch.load(path, weights_only=False)
    reg = model["reg"]
    assert type(reg) is JacobianReg
    assert (reg.n, reg.reduction, reg.projection, reg.generator) == (2, "mean", "sphere", None)
    assert repr(reg) == "JacobianReg(n=2)"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.randn(5, 6, requires_grad=True)
    output = model["net"](data)
    torch.manual_seed(1)
    r = reg(data, output)
    torch.manual_seed(1)
    torch.testing.assert_close(r, reference_reg(data, output, n=2))
    before = [p.detach().clone() for p in model.parameters()]
    (output.pow(2).mean() + r).backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_regularizer_pickled_by_us_round_trips(tmp_path):
    reg = JacobianReg(n=3, reduction="sum", projection="orthogonal")
    torch.save(reg, tmp_path / "reg.pt")
    loaded = torch.load(tmp_path / "reg.pt", weights_only=False)
    assert (loaded.n, loaded.reduction, loaded.projection) == (3, "sum", "orthogonal")


def test_random_vector_has_upstreams_semantics():
    reg = JacobianReg()
    torch.manual_seed(3)
    v = reg._random_vector(C=5, B=4)
    torch.manual_seed(3)
    expected = torch.randn(4, 5)
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert v.dtype == torch.float32 and v.device.type == "cpu"
    torch.testing.assert_close(v, expected, rtol=0, atol=0)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(reg._random_vector(C=1, B=3), torch.ones(3))


@pytest.mark.parametrize("create_graph", [False, True])
def test_jacobian_vector_product_has_upstreams_semantics(create_graph):
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(4, 12, requires_grad=True)
    y = model(x)
    v = torch.randn(4, 5)
    jvp = JacobianReg()._jacobian_vector_product(y, x, v, create_graph=create_graph)
    (expected,) = torch.autograd.grad(y, x, v, retain_graph=True)
    torch.testing.assert_close(jvp, expected)
    assert jvp.requires_grad == create_graph
    JacobianReg()(x, y)  # the graph was kept


class FirstCoordinate(JacobianReg):
    """Chooses its own directions: twice the first basis vector, for every projection."""

    def __init__(self, n: int = 1) -> None:
        super().__init__(n)
        self.calls: list[tuple[int, int]] = []

    def _random_vector(self, C: int, B: int) -> torch.Tensor:
        self.calls.append((C, B))
        v = torch.zeros(B, C, dtype=torch.float64)
        v[:, 0] = 2.0
        return v


@pytest.mark.parametrize("classes", [5, 1])
def test_an_overridden_random_vector_is_used_as_returned(classes):
    torch.manual_seed(0)
    model = MLP(classes=classes).double()
    x = torch.randn(4, 12, dtype=torch.float64, requires_grad=True)
    y = model(x)
    reg = FirstCoordinate(n=3)
    value = reg(x, y)
    assert reg.calls == [(classes, 4)] * 3
    # The reference with the same directions: 1/2 * C/(n*B) * sum_k ||v_k^T J||^2.
    (row,) = torch.autograd.grad(y[:, 0].sum(), x, retain_graph=True)
    expected = 0.5 * classes / (3 * 4) * 3 * (2 * row).pow(2).sum()
    torch.testing.assert_close(value, expected)
    value.backward()  # differentiable like any other


def test_an_override_that_cannot_be_honoured_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"overrides _random_vector.*generator="):
        JacobianRegWithOverride(generator=torch.Generator())
    with pytest.raises(ValueError, match=r'overrides _random_vector.*projection="sphere"'):
        JacobianRegWithOverride(n=2, projection="orthogonal")


class JacobianRegWithOverride(JacobianReg):
    """Overrides the hook and passes every option through."""

    def _random_vector(self, C: int, B: int) -> torch.Tensor:
        return torch.ones(B, C)


def test_a_bad_override_gets_a_clear_error():
    class WrongShape(JacobianReg):
        """Returns the wrong shape."""

        def _random_vector(self, C: int, B: int) -> torch.Tensor:
            return torch.ones(C + 1)

    class NotATensor(JacobianReg):
        """Returns a list."""

        def _random_vector(self, C: int, B: int) -> list:
            return [1.0] * C

    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"_random_vector\(C=3, B=4\) must return .*\[4, 3\]"):
        WrongShape()(x, x * 2)
    with pytest.raises(TypeError, match=r"_random_vector\(C=3, B=4\) must return a torch.Tensor"):
        NotATensor()(x, x * 2)


def test_the_package_keeps_its_public_names():
    assert {"JacobianReg", "JacobianSpectralReg", "jacobian_norm", "spectral_norm"} <= set(
        jacobian.__all__
    )
