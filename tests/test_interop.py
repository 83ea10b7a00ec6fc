"""Where PyTorch code takes a torch function: compile, subclasses, modes, torch.func, tools."""

from __future__ import annotations

import warnings
from typing import Callable, ClassVar

import jacobian
import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm
from jacobian.functional import jacobian_reg, jacobian_spectral_reg
from torch import nn
from torch.overrides import TorchFunctionMode

from tests.reference import reference_reg

LAMBDA = 0.1


class Body(nn.Module):
    """A user-defined model (Dynamo compiles its forward as a frame of its own if run alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 9)
        self.second = nn.Linear(9, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x)))


def make(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Body().double()


def dense_reg_graph(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||J||_F^2 / (2B) from the dense Jacobian, differentiable (samples do not interact)."""
    jac = torch.autograd.functional.jacobian(model, x, create_graph=True)
    return 0.5 * jac.pow(2).sum() / x.shape[0]


def reference_grads(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """d(ce + LAMBDA * R)/d(parameters, x) with R from the dense Jacobian."""
    x = x.detach().requires_grad_()
    loss = nn.functional.cross_entropy(model(x), target) + LAMBDA * dense_reg_graph(model, x)
    return list(torch.autograd.grad(loss, [*model.parameters(), x]))


def step_grads(step, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """Runs a training step (which calls backward) and returns the parameters' and x's grads."""
    model.zero_grad()
    x = x.detach().requires_grad_()
    step(x, target)
    return [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]


def training_step(model: nn.Module, reg: nn.Module):
    """The step users write; it returns nothing (see test_compile_warns_nothing)."""

    def step(x: torch.Tensor, target: torch.Tensor) -> None:
        y = model(x)
        loss = nn.functional.cross_entropy(y, target) + LAMBDA * reg(x, y)
        loss.backward()

    return step


def batches(sizes=(5, 3, 5)):
    """Batches of changing size: the second compiles with a dynamic batch dimension."""
    torch.manual_seed(1)
    return [(torch.randn(b, 6, dtype=torch.float64), torch.randint(0, 4, (b,))) for b in sizes]


# torch's own warnings while its inductor loads and keys its cache, about torch's own code:
# 2.6 skips a Dynamo setting whose default (`{}`) Dynamo's config copy marked as set; 2.11's
# torch.utils.mkldnn, which inductor imports, still decorates with `torch.jit.script_method`.
TORCH_INDUCTOR_WARNINGS = (
    "ignore:Skipping serialization of skipfiles_inline_module_allowlist",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def torch_inductor_warnings(test: Callable) -> Callable:
    """Lets torch's own inductor warnings (TORCH_INDUCTOR_WARNINGS) pass in a test."""
    for ignored in TORCH_INDUCTOR_WARNINGS:
        test = pytest.mark.filterwarnings(ignored)(test)
    return test


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@torch_inductor_warnings
@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_compiled_step_trains_with_the_dense_reference_gradients(backend):
    # "eager" runs Dynamo's graph as Python: the regularizer's call in it runs as written.
    model = make()
    step = torch.compile(training_step(model, JacobianReg(n=-1)), backend=backend)
    for x, target in batches():
        got = step_grads(step, model, x, target)
        torch.testing.assert_close(got, reference_grads(model, x, target))


@torch_inductor_warnings
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_step_with_random_projections_equals_eager(backend):
    # Same seed, same draws: aot_eager runs torch's own randn; inductor generates its own random
    # numbers unless told to fall back to torch's.
    model = make()
    eager = training_step(model, JacobianReg(n=2))
    compiled = torch.compile(eager, backend=backend)
    with torch._inductor.config.patch(fallback_random=True):
        for x, target in batches():
            torch.manual_seed(7)
            got = step_grads(compiled, model, x, target)
            torch.manual_seed(7)
            torch.testing.assert_close(got, step_grads(eager, model, x, target))


@torch_inductor_warnings
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_step_returning_the_loss_needs_no_traced_autograd_ops(backend):
    # One graph holds the model and the regularizer by default; only a `loss.backward()` inside
    # the compiled function needs Dynamo to trace autograd ops (next test).
    model, reg = make(), JacobianReg(n=-1)

    def loss_of(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y = model(x)
        return nn.functional.cross_entropy(y, target) + LAMBDA * reg(x, y)

    compiled = torch.compile(loss_of, backend=backend, fullgraph=True)
    for x, target in batches():
        got = step_grads(lambda x, t: compiled(x, t).backward(), model, x, target)
        torch.testing.assert_close(got, reference_grads(model, x, target))


@torch_inductor_warnings
@pytest.mark.skipif(
    not hasattr(torch._dynamo.config, "trace_autograd_ops"),
    reason=f"torch {torch.__version__} has no torch._dynamo.config.trace_autograd_ops",
)
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_fullgraph_step_with_traced_autograd_ops(backend):
    model = make()
    step = torch.compile(training_step(model, JacobianReg(n=-1)), backend=backend, fullgraph=True)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        for x, target in batches():
            got = step_grads(step, model, x, target)
            torch.testing.assert_close(got, reference_grads(model, x, target))


def test_compile_warns_nothing():
    model = make()
    reg, spectral = JacobianReg(n=2), JacobianSpectralReg(iters=3, tol=0.0)

    def step(x: torch.Tensor, target: torch.Tensor) -> None:
        y = model(x)
        loss = nn.functional.cross_entropy(y, target) + reg(x, y) + spectral(x, y)
        loss = loss + jacobian_norm(x, y).mean() + spectral_norm(x, y, iters=2, tol=0.0).mean()
        loss.backward()

    compiled = torch.compile(step, backend="aot_eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x, target in batches():
            step_grads(compiled, model, x, target)
    assert [str(w.message) for w in caught] == []


# After a graph break Dynamo resumes in a frame that takes the non-leaf y, and warns about that
# itself (torch's warning, with or without the regularizer; see below).
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_compiled_spectral_step_traces_with_tol_zero_and_explains_tol():
    model = make()
    eager = training_step(model, JacobianSpectralReg(iters=4, tol=0.0))
    compiled = torch.compile(eager, backend="aot_eager")
    for x, target in batches():
        torch.manual_seed(7)
        got = step_grads(compiled, model, x, target)
        torch.manual_seed(7)
        torch.testing.assert_close(got, step_grads(eager, model, x, target))
    # The early stop reads a value back: the call breaks the graph and runs on a compiled y.
    stopping = torch.compile(
        training_step(model, JacobianSpectralReg(tol=1e-4)), backend="aot_eager"
    )
    x, target = batches()[0]
    with pytest.raises(RuntimeError, match=r"torch\.compile'd function.*with tol=0"):
        stopping(x.requires_grad_(), target)


# Dynamo itself warns when a compiled function takes a non-leaf tensor (y here), with or without
# the regularizer: torch's warning, not ours.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_compiled_function_taking_y_from_eager_code():
    model = make()
    loss_fn = torch.compile(
        lambda x, y, t: nn.functional.cross_entropy(y, t) + LAMBDA * JacobianReg(n=-1)(x, y),
        backend="aot_eager",
    )
    for x, target in batches():
        got = step_grads(lambda x, t: loss_fn(x, model(x), t).backward(), model, x, target)
        torch.testing.assert_close(got, reference_grads(model, x, target))


@pytest.mark.parametrize(
    "head",
    [
        lambda y: y,
        lambda y: y.reshape(-1, 2, 2).flatten(1),
        lambda y: (torch.log_softmax(y, 1) * 2 + 1) / 3,
    ],
    ids=["direct", "reshaped", "three-ops-later"],
)
def test_value_from_a_compiled_model_and_a_clear_error_on_backward(head):
    model = make()
    compiled = torch.compile(model, backend="aot_eager")
    x, _ = batches()[0]
    x.requires_grad_()
    value = JacobianReg(n=-1)(x, head(compiled(x)))
    with torch.no_grad():
        torch.testing.assert_close(value, dense_reg_graph(lambda t: head(model(t)), x))
    with pytest.raises(
        RuntimeError, match=r"torch\.compile'd function.*inside the same.*_orig_mod"
    ):
        (value * 2).backward()


def test_compiled_function_off_the_path_to_x_trains():
    model, other = make(), torch.compile(make(1), backend="aot_eager")
    x, _ = batches()[0]
    x.requires_grad_()
    z = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    value = JacobianReg(n=-1)(x, model(x) + other(z))  # other's graph does not lead to x
    weights = [model.first.weight, model.first.bias, model.second.weight]  # R needs no bias 2
    grads = torch.autograd.grad(value, weights)
    ref = dense_reg_graph(model, x)
    torch.testing.assert_close(value, ref)
    torch.testing.assert_close(grads, torch.autograd.grad(ref, weights))


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_generator_under_compile_runs_outside_the_graph():
    model = make()
    reg = JacobianReg(generator=torch.Generator().manual_seed(0))
    step = torch.compile(lambda x: reg(x, model(x)), backend="aot_eager")
    x, _ = batches()[0]
    value = step(x.requires_grad_())
    torch.testing.assert_close(
        value, JacobianReg(generator=torch.Generator().manual_seed(0))(x, model(x)).detach()
    )
    with pytest.raises(RuntimeError, match="generator= or an overridden _random_vector"):
        value.backward()


class Logged(torch.Tensor):
    """A __torch_function__ subclass that records the functions called on it."""

    calls: ClassVar[list[str]] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


class Recorder(TorchFunctionMode):
    """A mode that records the functions called under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


ENTRY_POINTS = {
    "JacobianReg": (lambda x, y: JacobianReg(n=-1)(x, y), "jacobian_reg"),
    "jacobian_reg": (lambda x, y: jacobian_reg(x, y, -1), "jacobian_reg"),
    "jacobian_norm": (lambda x, y: jacobian_norm(x, y), "jacobian_norm"),
    "spectral_norm": (lambda x, y: spectral_norm(x, y, tol=0.0), "spectral_norm"),
    "JacobianSpectralReg": (
        lambda x, y: JacobianSpectralReg(tol=0.0)(x, y),
        "jacobian_spectral_reg",
    ),
    "jacobian_spectral_reg": (
        lambda x, y: jacobian_spectral_reg(x, y, tol=0.0),
        "jacobian_spectral_reg",
    ),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_subclass_gets_its_own_type_and_sees_the_call(entry):
    call, name = ENTRY_POINTS[entry]
    model = make()
    x, _ = batches()[0]
    plain_x = x.clone().requires_grad_()
    torch.manual_seed(3)
    plain = call(plain_x, model(plain_x))
    logged_x = x.clone().as_subclass(Logged).requires_grad_()
    y = model(logged_x)
    Logged.calls.clear()
    torch.manual_seed(3)
    result = call(logged_x, y)
    assert type(result) is Logged
    assert Logged.calls[0] == name
    torch.testing.assert_close(result.as_subclass(torch.Tensor), plain)
    result.sum().backward()  # the subclass's result is differentiable too


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_mode_sees_the_call(entry):
    call, name = ENTRY_POINTS[entry]
    model = make()
    x, _ = batches()[0]
    x.requires_grad_()
    y = model(x)
    torch.manual_seed(3)
    expected = call(x, y)
    with Recorder() as mode:
        torch.manual_seed(3)
        got = call(x, y)
    assert name in mode.calls
    torch.testing.assert_close(got, expected)


def test_jacobian_reg_value_under_a_subclass_matches_the_dense_reference():
    model = make()
    x, _ = batches()[0]
    logged_x = x.as_subclass(Logged).requires_grad_()
    value = JacobianReg(n=-1)(logged_x, model(logged_x))
    torch.testing.assert_close(value.as_subclass(torch.Tensor), dense_reg_graph(model, x).detach())


def test_upstream_module_name():
    assert jacobian.name == "jacobian"


@pytest.mark.parametrize("where", ["x", "x-and-hidden"])
def test_retain_grad_holds_only_the_callers_gradient(where):
    torch.manual_seed(0)
    emb, model = nn.Linear(3, 6).double(), make()
    tokens = torch.randn(5, 3, dtype=torch.float64)
    x = emb(tokens)
    x.retain_grad()
    hidden = model.first(x)
    if where == "x-and-hidden":
        hidden.retain_grad()
    y = model.second(torch.tanh(hidden))
    reg = JacobianReg(n=-1)
    reg(x, y).backward()
    x_ref = x.detach().requires_grad_()
    (dr_dx,) = torch.autograd.grad(dense_reg_graph(model, x_ref), x_ref)
    torch.testing.assert_close(x.grad, dr_dx)
    if where == "x-and-hidden":
        # dR/dhidden from the pure-PyTorch reference, whose graph retains nothing.
        x2 = emb(tokens)
        hidden2 = model.first(x2)
        ref = reference_reg(x2, model.second(torch.tanh(hidden2)), n=-1)
        (dr_dh,) = torch.autograd.grad(ref, hidden2)
        torch.testing.assert_close(hidden.grad, dr_dh)


def flop_counter(x: torch.Tensor, model: nn.Module, reg) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        reg(x, model(x)).backward()
    return counter.get_total_flops()


def test_flop_counter_counts_a_jr_step_on_a_non_leaf_x():
    model = make()
    data, _ = batches()[0]
    data.requires_grad_()
    ours = flop_counter(data.view_as(data), model, JacobianReg(n=-1))
    reference = flop_counter(data.view_as(data), model, lambda x, y: reference_reg(x, y, n=-1))
    # The same products through the same layers: the forward, C vector-Jacobian products and
    # their backward.
    assert ours == reference > 0


def test_flop_counter_on_a_leaf_x_counts_or_names_torchs_limitation():
    model = make()
    data, _ = batches()[0]
    data.requires_grad_()
    reference = flop_counter(data.view_as(data), model, lambda x, y: reference_reg(x, y, n=-1))
    try:
        ours = flop_counter(data, model, JacobianReg(n=-1))
    except RuntimeError as error:
        assert "pytorch#131753" in str(error) and "view_as" in str(error)
    else:  # a release whose multi-grad hooks take leaves inside autograd.grad
        assert ours == reference


def test_torch_func_grad_names_what_is_supported():
    from torch.func import functional_call, grad

    model = make()
    x, _ = batches()[0]
    x.requires_grad_()
    params = {k: v.detach() for k, v in model.named_parameters()}
    with pytest.raises(RuntimeError, match=r"torch\.func transform.*functional_call with ordinary"):
        grad(lambda p: JacobianReg(n=-1)(x, functional_call(model, p, (x,))))(params)
    with pytest.raises(RuntimeError, match=r"torch\.func transform"):
        grad(lambda p: spectral_norm(x, functional_call(model, p, (x,))).sum())(params)


def test_vmap_over_stacked_models_names_what_is_supported():
    from torch.func import functional_call, stack_module_state, vmap

    models = [make(0), make(1)]
    params, buffers = stack_module_state(models)
    x, _ = batches()[0]
    x.requires_grad_()

    def one(p, b):
        return JacobianReg(n=-1)(x, functional_call(models[0], (p, b), (x,)))

    with pytest.raises(RuntimeError, match=r"torch\.func transform.*loop over them"):
        vmap(one)(params, buffers)


def test_functional_call_with_ordinary_autograd_matches_the_dense_reference():
    from torch.func import functional_call

    model = make()
    x, _ = batches()[0]
    x.requires_grad_()
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    value = JacobianReg(n=-1)(x, functional_call(model, params, (x,)))
    names = ["first.weight", "first.bias", "second.weight"]  # R does not depend on second.bias
    grads = torch.autograd.grad(value, [params[name] for name in names])
    ref = dense_reg_graph(model, x)
    weights = [model.get_parameter(name) for name in names]
    torch.testing.assert_close(value, ref)
    torch.testing.assert_close(grads, torch.autograd.grad(ref, weights))


def test_fake_tensor_mode_gives_the_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    model = make()
    with FakeTensorMode(allow_non_fake_inputs=True):  # the model's parameters stay real
        x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
        y = model(x)
        value = JacobianReg(n=-1)(x, y)
        per_sample = JacobianReg(n=2, reduction="none")(x, y)
        sigma = spectral_norm(x, y, tol=0.0)
    assert isinstance(value, FakeTensor) and value.shape == () and value.dtype == torch.float64
    assert per_sample.shape == (5,) and sigma.shape == (5,)


def test_make_fx_traces_a_graph_that_computes_the_value():
    from torch.fx.experimental.proxy_tensor import make_fx

    model = make()

    def value(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_()  # as an input: the trace records autograd from here
        return JacobianReg(n=-1)(x, model(x))

    x, _ = batches()[0]
    graph = make_fx(value)(x)
    torch.testing.assert_close(graph(x), dense_reg_graph(model, x.requires_grad_()).detach())


def test_saved_tensor_hooks_see_the_saved_tensors_and_values_stay():
    model = make()
    x, target = batches()[0]
    packed = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t.shape)
        return t.clone()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        got = step_grads(training_step(model, JacobianReg(n=-1)), model, x, target)
    assert packed  # the regularizer's double-backward graph saved through the hooks
    torch.testing.assert_close(got, reference_grads(model, x, target))


def test_parametrized_model_matches_the_dense_reference():
    from torch.nn.utils import parametrizations

    model = make()
    parametrizations.orthogonal(model.first)
    x, target = batches()[0]
    got = step_grads(training_step(model, JacobianReg(n=-1)), model, x, target)
    torch.testing.assert_close(got, reference_grads(model, x, target))
