"""Native calls pass Python's machinery through as torch's own bindings do: exceptions, warnings."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import traceback
import warnings

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, jacobian_norm, spectral_norm

from tests.models import MLP

# Every entry point that runs backward passes in the native module.
ENTRY_POINTS = {
    "JacobianReg": lambda x, y: JacobianReg()(x, y),
    "JacobianReg(n=-1)": lambda x, y: JacobianReg(n=-1)(x, y),
    "jacobian_norm": jacobian_norm,
    "spectral_norm": lambda x, y: spectral_norm(x, y, iters=2),
    "JacobianSpectralReg": lambda x, y: JacobianSpectralReg(iters=2)(x, y),
}


class Stop(Exception):
    """A user's own exception class."""


class RaisingBackward(torch.autograd.Function):
    """Identity whose Python backward raises the exception it is given."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, exception: BaseException) -> torch.Tensor:
        ctx.exception = exception
        return t.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        raise ctx.exception


def batch() -> tuple[torch.nn.Module, torch.Tensor]:
    """A small model and an input that requires grad."""
    torch.manual_seed(0)
    return MLP(), torch.randn(4, 12, requires_grad=True)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_hooks_own_exception_arrives_as_itself_with_its_traceback(entry):
    model, x = batch()
    raised = Stop("stop")

    def hook(grad: torch.Tensor) -> None:
        raise raised

    x.register_hook(hook)
    with pytest.raises(Stop) as caught:
        ENTRY_POINTS[entry](x, model(x))
    assert caught.value is raised
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "hook" in frames, frames


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("exception", [NotImplementedError("no backward"), ValueError("bad")])
def test_an_autograd_functions_exception_keeps_its_type(entry, exception):
    model, x = batch()
    y = model(RaisingBackward.apply(x, exception))
    with pytest.raises(type(exception), match=str(exception)):
        ENTRY_POINTS[entry](x, y)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_typed_libtorch_error_gets_the_python_type_torch_gives_it(entry):
    # igamma's derivative with respect to its first argument is not implemented: libtorch throws
    # c10::NotImplementedError, which torch raises as NotImplementedError.
    x = torch.rand(3, 4, requires_grad=True)

    def make_y() -> torch.Tensor:
        return torch.special.gammainc(x + 1, torch.ones(3, 4))

    with pytest.raises(NotImplementedError) as torchs:
        y = make_y()
        torch.autograd.grad(y, x, torch.ones_like(y))
    with pytest.raises(NotImplementedError) as ours:
        ENTRY_POINTS[entry](x, make_y())
    assert str(ours.value) == str(torchs.value)


def test_a_module_backward_hook_exception_keeps_its_type():
    model, x = batch()

    def hook(module: torch.nn.Module, grad_input: tuple, grad_output: tuple) -> None:
        raise Stop("from a module hook")

    model.net[0].register_full_backward_hook(hook)
    with pytest.raises(Stop, match="from a module hook"):
        JacobianReg()(x, model(x))


KEYBOARD_INTERRUPT_CHILD = textwrap.dedent(
    """
    import torch
    from jacobian import JacobianReg

    class Interrupted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, grad):
            raise KeyboardInterrupt

    x = torch.randn(3, 4, requires_grad=True)
    try:
        JacobianReg()(x, Interrupted.apply(x) * 2)
    except KeyboardInterrupt:
        print("caught KeyboardInterrupt", flush=True)
    print("usable", float(JacobianReg(n=-1)(x, x * 2)), flush=True)
    """
)


def test_keyboard_interrupt_in_a_python_backward_reaches_except_keyboard_interrupt():
    child = subprocess.run(
        [sys.executable, "-c", KEYBOARD_INTERRUPT_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert "caught KeyboardInterrupt" in child.stdout
    usable = re.search(r"usable ([0-9.]+)", child.stdout)
    assert usable, child.stdout
    # 1/2 * mean_b ||2 I||_F^2 = 1/2 * 4 * 4, to float32 rounding.
    assert abs(float(usable.group(1)) - 8.0) < 1e-5, child.stdout


def nondeterministic_output(x: torch.Tensor) -> torch.Tensor:
    """y whose backward runs put_ without accumulation, which libtorch warns about in C++ (under
    `torch.use_deterministic_algorithms(True, warn_only=True)`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the forward's own put warning, raised from Python
        return x.reshape(-1).put(torch.tensor([0, 3]), torch.zeros(2)).reshape(x.shape) * 2


@pytest.fixture
def warn_only_determinism():
    """Deterministic-algorithms mode in warn-only form, restored afterwards."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.usefixtures("warn_only_determinism")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_libtorch_warnings_during_backward_are_python_warnings(entry):
    x = torch.rand(4, 5, requires_grad=True)
    y = nondeterministic_output(x)
    with pytest.warns(UserWarning, match="put_ does not have a deterministic implementation"):
        ENTRY_POINTS[entry](x, y)


@pytest.mark.usefixtures("warn_only_determinism")
def test_an_error_filter_turns_a_libtorch_warning_into_an_exception_as_torch_does():
    x = torch.rand(4, 5, requires_grad=True)
    y = nondeterministic_output(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="put_ does not have a deterministic") as torchs:
            torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)
        with pytest.raises(UserWarning, match="put_ does not have a deterministic") as ours:
            JacobianReg()(x, y)
    assert str(ours.value).split(" (Triggered")[0] == str(torchs.value).split(" (Triggered")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        JacobianReg()(x, y)  # ignored: no warning, no error


class NanBackward(torch.autograd.Function):
    """Identity whose backward returns NaN, which anomaly mode reports."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return t.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


def test_anomaly_modes_forward_traceback_is_a_python_warning(capfd):
    model, x = batch()
    with pytest.warns(UserWarning) as record, torch.autograd.detect_anomaly():
        y = model(NanBackward.apply(x))
        with pytest.raises(RuntimeError, match="returned nan values"):
            JacobianReg()(x, y)
    reports = [str(w.message) for w in record if "Traceback of forward call" in str(w.message)]
    assert len(reports) == 1
    assert "NanBackward" in reports[0] and "test_engine.py" in reports[0]
    assert "Traceback of forward call" not in capfd.readouterr().err


def test_a_warning_turned_error_while_the_call_fails_is_printed_and_the_error_raised(capfd):
    # torch's own rule: the call's exception wins, the warning's is printed.
    model, x = batch()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Anomaly Detection has been enabled")
        warnings.filterwarnings("error", message="Error detected in")
        with torch.autograd.detect_anomaly():
            y = model(NanBackward.apply(x))
            with pytest.raises(RuntimeError, match="returned nan values"):
                JacobianReg()(x, y)
    assert "Error detected in NanBackwardBackward" in capfd.readouterr().err


def test_an_engine_error_carries_no_cpp_backtrace():
    # A symbolised C++ backtrace took milliseconds to make and means nothing to a Python user.
    # (How long a failing call takes is measured by `make bench`, not asserted here.)
    model, x = batch()
    y = model(x)
    y.sum().backward()  # frees the graph: the call below fails inside libtorch's engine
    with pytest.raises(RuntimeError, match="already freed") as caught:
        JacobianReg()(x, y)
    assert "frame #" not in str(caught.value)
    assert "Exception raised from" not in str(caught.value)


@pytest.mark.cuda
def test_cuda_out_of_memory_is_torch_out_of_memory_error():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 4096), torch.nn.Tanh(), torch.nn.Linear(4096, 64)
    )
    model = model.cuda()
    x = torch.randn(4096, 64, device="cuda", requires_grad=True)
    y = model(x)
    torch.cuda.synchronize()
    limit = torch.cuda.memory_allocated() + 2**20
    fraction = limit / torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            JacobianReg(n=-1)(x, y)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
