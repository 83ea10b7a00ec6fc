"""Upstream's names: jacobian.jacobian, pickles both ways, _random_vector and its overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jacobian
import pytest
import torch
from jacobian import JacobianReg
from jacobian.functional import jacobian_reg
from jacobian.jacobian import JacobianReg as UpstreamPathReg
from jacobian.regularizer import JacobianReg as OldPathReg

from tests.models import MLP
from tests.upstream_standin import upstream_estimate, write_package


def test_the_class_lives_at_upstreams_module_path():
    # Pickles name a class by its module: upstream's package has jacobian.jacobian only.
    assert UpstreamPathReg is JacobianReg
    assert JacobianReg.__module__ == "jacobian.jacobian"
    assert OldPathReg is JacobianReg


def run_with_upstream(script: str, root: Path, *args: str) -> str:
    """Runs ``script`` in a fresh interpreter where ``import jacobian`` is upstream's stand-in.

    Our package stays installed, behind the stand-in on ``sys.path``, as when a user has both
    and loads where upstream's comes first; the script checks which one it got. Returns stdout.
    """
    write_package(root)
    environment = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from torch import nn
    import jacobian, jacobian.jacobian
    where = Path(jacobian.__file__).parent.parent
    assert where == Path(os.environ["PYTHONPATH"]), f"upstream's stand-in is not first: {where}"
    """
)


def saved_model() -> torch.nn.ModuleDict:
    """The model both sides save: a network and a regularizer with n=2, as one module."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return torch.nn.ModuleDict({"net": net, "reg": JacobianReg(n=2)})


# Saves, where upstream is installed, a model holding upstream's regularizer: its class is
# pickled by reference as jacobian.jacobian.JacobianReg, its state is `n` and nn.Module's fields.
SAVE_UPSTREAM = """
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
torch.save(nn.ModuleDict({"net": net, "reg": jacobian.JacobianReg(n=2)}), sys.argv[1])
"""

# Loads, where upstream is installed, a model saved with ours, and trains a step with it:
# prints upstream's value under seed 1 and the next draw.
LOAD_OURS = """
model = torch.load(sys.argv[1], weights_only=False)
reg = model["reg"]
assert type(reg) is jacobian.jacobian.JacobianReg and reg.n == 2, type(reg)
torch.manual_seed(0)
data = torch.randn(5, 6, requires_grad=True)
output = model["net"](data)
torch.manual_seed(1)
r = reg(data, output)
after = torch.rand(1).item()
(output.pow(2).mean() + r).backward()
assert all(p.grad is not None for p in model["net"][0].parameters())
print(json.dumps({"r": r.item(), "after": after}))
"""


def test_a_model_pickled_with_the_upstream_regularizer_loads_and_trains(tmp_path):
    path = tmp_path / "upstream_model.pt"
    run_with_upstream(SAVE_UPSTREAM, tmp_path / "upstream", str(path))
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
    torch.testing.assert_close(r, upstream_estimate(data, output, n=2))
    before = [p.detach().clone() for p in model.parameters()]
    (output.pow(2).mean() + r).backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_model_pickled_with_ours_loads_and_trains_where_upstream_is_installed(tmp_path):
    path = tmp_path / "our_model.pt"
    model = saved_model()
    torch.save(model, path)
    assert b"jacobian.regularizer" not in path.read_bytes()
    upstream = json.loads(run_with_upstream(LOAD_OURS, tmp_path / "upstream", str(path)))
    # Upstream's value there is ours here, under the same seed, and so is the next draw.
    torch.manual_seed(0)
    data = torch.randn(5, 6, requires_grad=True)
    output = model["net"](data)
    torch.manual_seed(1)
    ours = model["reg"](data, output)
    assert torch.rand(1).item() == upstream["after"]
    assert ours.item() == pytest.approx(upstream["r"], rel=1e-6)


def test_a_regularizer_pickled_by_us_round_trips(tmp_path):
    reg = JacobianReg(n=3, reduction="sum", projection="orthogonal")
    torch.save(reg, tmp_path / "reg.pt")
    loaded = torch.load(tmp_path / "reg.pt", weights_only=False)
    assert (loaded.n, loaded.reduction, loaded.projection) == (3, "sum", "orthogonal")


def test_our_older_pickles_naming_jacobian_regularizer_still_load(tmp_path, monkeypatch):
    # Before the class moved to upstream's path, pickles named jacobian.regularizer.JacobianReg
    # (with the same state): this writes one such.
    path = tmp_path / "old.pt"
    with monkeypatch.context() as patch:
        patch.setattr(JacobianReg, "__module__", "jacobian.regularizer")
        torch.save(JacobianReg(n=3, reduction="sum"), path)
    assert b"jacobian.regularizer" in path.read_bytes()
    loaded = torch.load(path, weights_only=False)
    assert type(loaded) is JacobianReg
    assert (loaded.n, loaded.reduction, loaded.projection) == (3, "sum", "sphere")


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
    generator_refused = r"overridden _random_vector \(directions=\) draws .*generator= would be"
    orthogonal_refused = r'projection="orthogonal" .* overridden _random_vector \(directions=\)'
    with pytest.raises(ValueError, match=generator_refused):
        JacobianRegWithOverride(generator=torch.Generator())
    with pytest.raises(ValueError, match=orthogonal_refused):
        JacobianRegWithOverride(n=2, projection="orthogonal")
    # The functional form refuses the same, with the same words (one check, in the core).
    x = torch.randn(4, 3, requires_grad=True)
    y = x * 2

    def directions(size: int, batch: int) -> torch.Tensor:
        return torch.ones(batch, size)

    with pytest.raises(ValueError, match=generator_refused):
        jacobian_reg(x, y, directions=directions, generator=torch.Generator())
    with pytest.raises(ValueError, match=orthogonal_refused):
        jacobian_reg(x, y, n=2, projection="orthogonal", directions=directions)


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
