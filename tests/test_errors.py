"""Bad input and bad options raise a Python exception of the fitting type whose message names
the fix."""

from __future__ import annotations

import pytest
import torch
from jacobian import JacobianReg, JacobianSpectralReg, _native, jacobian_norm, spectral_norm
from jacobian.functional import jacobian_reg, jacobian_spectral_reg

from tests.models import MLP


@pytest.mark.parametrize(
    ("n", "error", "match"),
    [
        (0, ValueError, r"n must be a positive number.*got n=0"),
        (-2, ValueError, r"got n=-2"),
        (2.5, TypeError, r"n must be an int.*float"),
        (True, TypeError, r"n must be an int .*got bool"),
        ("1", TypeError, r"n must be an int.*str"),
        (None, TypeError, r"n must be an int.*NoneType"),
        (2**70, ValueError, r"n is too large"),
    ],
)
def test_bad_n_rejected_at_construction(n, error, match):
    with pytest.raises(error, match=match):
        JacobianReg(n=n)


def test_valid_n_and_repr():
    assert repr(JacobianReg()) == "JacobianReg(n=1)"
    assert repr(JacobianReg(n=3)) == "JacobianReg(n=3)"
    assert JacobianReg(n=-1).n == -1


def test_n_changed_after_construction_is_checked():
    reg = JacobianReg()
    reg.n = 0
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="got n=0"):
        reg(x, x * 2)


@pytest.fixture
def batch():
    """An MLP with 5 outputs and a batch of 4 inputs that require grad."""
    model = MLP()
    x = torch.randn(4, 12, requires_grad=True)
    return model, x


def test_input_without_requires_grad(batch):
    model, _ = batch
    x = torch.randn(4, 12)
    y = model(x)
    with pytest.raises(RuntimeError, match=r"data\.requires_grad = True"):
        JacobianReg()(x, y)


def test_output_computed_under_no_grad(batch):
    model, x = batch
    with torch.no_grad():
        y = model(x)
    with pytest.raises(RuntimeError, match=r"y does not require grad.*torch\.no_grad\(\)"):
        JacobianReg()(x, y)


def test_output_under_inference_mode(batch):
    model, x = batch
    with torch.inference_mode():
        y = model(x.detach())
    with pytest.raises(RuntimeError, match=r"y does not require grad"):
        JacobianReg()(x, y)


def test_output_not_depending_on_input(batch):
    model, x = batch
    other = torch.randn(4, 12, requires_grad=True)
    y = model(other)
    with pytest.raises(RuntimeError, match=r"y does not depend on x"):
        JacobianReg()(x, y)


def test_graph_already_freed(batch):
    model, x = batch
    y = model(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match=r"already freed.*retain_graph=True"):
        JacobianReg()(x, y)


@pytest.mark.parametrize("position", ["x", "y"])
@pytest.mark.parametrize("value", [[1.0, 2.0], 3.0, None, "tensor"])
def test_non_tensor_arguments(batch, position, value):
    model, x = batch
    y = model(x)
    args = (value, y) if position == "x" else (x, value)
    with pytest.raises(TypeError, match=rf"{position} \(the model's .*\) must be a torch\.Tensor"):
        JacobianReg()(*args)


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]
)
def test_non_real_float_output(batch, dtype):
    _, x = batch
    y = torch.zeros(4, 3, dtype=dtype)
    with pytest.raises(TypeError, match=rf"y .* real floating-point.*{dtype!s}"):
        JacobianReg()(x, y)


def test_complex_input():
    x = torch.randn(3, 2, dtype=torch.complex64, requires_grad=True)
    y = x.abs()
    with pytest.raises(TypeError, match=r"x .* real floating-point.*torch\.complex64"):
        JacobianReg()(x, y)


def test_zero_dimensional_output(batch):
    model, x = batch
    loss = model(x).sum()
    with pytest.raises(ValueError, match=r"y is 0-d.*batch dimension"):
        JacobianReg()(x, loss)


@pytest.mark.cuda
def test_cuda_inputs_on_different_devices():
    x = torch.randn(3, 2, requires_grad=True)
    y = (x * 2).cuda()
    with pytest.raises(RuntimeError, match=r"same device"):
        JacobianReg()(x, y)


def test_meta_tensors_rejected():
    x = torch.randn(3, 2, device="meta", requires_grad=True)
    with pytest.raises(RuntimeError, match=r"device this library does not support"):
        JacobianReg()(x, x * 2)


def test_sparse_rejected():
    x = torch.randn(3, 2, requires_grad=True)
    y = (x * 2).to_sparse()
    with pytest.raises(TypeError, match=r"dense"):
        JacobianReg()(x, y)


GENERATOR_TYPE = r"generator must be a torch\.Generator or None, got int"
# Misuse of the native functions, called directly as (x, x * 2, *args): name -> args, error, match.
NATIVE_MISUSE = {
    "frobenius_sq-n0": (_native.frobenius_sq, (0, "sphere", "mean"), ValueError, "got n=0"),
    "frobenius_sq-n-bool": (_native.frobenius_sq, (False, "sphere", "mean"), TypeError, "bool"),
    "frobenius_sq-reduction": (
        _native.frobenius_sq,
        (1, "sphere", "avg"),
        ValueError,
        r"reduction must be .*got \"avg\"",
    ),
    "frobenius_sq-generator": (
        _native.frobenius_sq,
        (1, "sphere", "mean", 0.5, 3),
        TypeError,
        GENERATOR_TYPE,
    ),
    "spectral_sq-iters0": (
        _native.spectral_sq,
        (0, 1e-4, "mean"),
        ValueError,
        r"iters must be at least 1, got 0",
    ),
    "spectral_sq-iters-bool": (
        _native.spectral_sq,
        (True, 1e-4, "mean"),
        TypeError,
        r"iters must be an int .*got bool",
    ),
    "spectral_sq-tol": (
        _native.spectral_sq,
        (3, -1.0, "mean"),
        ValueError,
        r"tol must be a finite number >= 0",
    ),
    "spectral_sq-reduction": (
        _native.spectral_sq,
        (3, 1e-4, "max"),
        ValueError,
        r"reduction must be .*got \"max\"",
    ),
    "spectral_sq-generator": (
        _native.spectral_sq,
        (3, 1e-4, "mean", 0.5, 3),
        TypeError,
        GENERATOR_TYPE,
    ),
    # The factor is checked once, for both regularizers.
    "frobenius_sq-factor": (
        _native.frobenius_sq,
        (1, "sphere", "mean", -0.5),
        ValueError,
        r"factor must be a finite number >= 0, got -0.5",
    ),
    "spectral_sq-factor": (
        _native.spectral_sq,
        (3, 1e-4, "mean", float("nan")),
        ValueError,
        r"factor must be a finite number >= 0, got NaN",
    ),
}


@pytest.mark.parametrize("case", NATIVE_MISUSE)
def test_native_function_checks_its_arguments_too(case):
    function, args, error, match = NATIVE_MISUSE[case]
    x = torch.randn(3, 2, requires_grad=True)
    with pytest.raises(error, match=match):
        function(x, x * 2, *args)


@pytest.mark.parametrize("position", ["x", "y"])
def test_nested_tensors_rejected(position):
    x = torch.randn(4, 3, requires_grad=True)
    nested = torch.nested.nested_tensor([torch.randn(2, 3), torch.randn(4, 3)], layout=torch.jagged)
    args = (nested, x * 2) if position == "x" else (x, nested)
    with pytest.raises(TypeError, match=rf"{position} must be a regular \(strided\) tensor"):
        JacobianReg()(*args)


def test_called_under_inference_mode_raises_instead_of_crashing(batch):
    model, x = batch
    y = model(x)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match=r"inference_mode\(\); use torch\.no_grad\(\)"):
            JacobianReg()(x, y)
        with pytest.raises(RuntimeError, match=r"inference_mode"):
            jacobian_norm(x, y)
        with pytest.raises(RuntimeError, match=r"inference_mode"):
            spectral_norm(x, y)
    with torch.no_grad():
        assert torch.isfinite(JacobianReg()(x, y))


def test_misuse_raises_on_an_empty_batch_too(batch):
    # An empty batch returns 0 early; misuse must still fail as it would on a full batch.
    model, x = batch
    empty = x[:0]
    y = model(empty)
    with torch.inference_mode():
        for call in (JacobianReg(), jacobian_norm, spectral_norm, JacobianSpectralReg()):
            with pytest.raises(RuntimeError, match=r"inference_mode"):
                call(empty, y)
    with pytest.raises(ValueError, match=r"at most C=5 orthonormal directions"):
        JacobianReg(n=6, projection="orthogonal")(empty, y)
    assert JacobianReg(n=5, projection="orthogonal")(empty, y).item() == 0.0


def test_per_sample_needs_a_shared_batch_dimension():
    x = torch.randn(3, 4, requires_grad=True)
    y = (x.T @ x)[:2]  # y's batch (2) is not x's (3)
    with pytest.raises(ValueError, match=r"share their first \(batch\) dimension"):
        JacobianReg(reduction="none")(x, y)
    with pytest.raises(ValueError, match=r"share their first \(batch\) dimension"):
        spectral_norm(x, y)
    assert torch.isfinite(JacobianReg()(x, y))  # the batch mean needs no per-sample split


def test_orthogonal_n_above_c_is_rejected_even_for_one_output():
    x = torch.randn(5, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"at most C=1 orthonormal directions.*n=2"):
        JacobianReg(n=2, projection="orthogonal")(x, x.sum(1))


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


GENERATOR_USERS = {
    "JacobianReg": lambda x, generator: JacobianReg(generator=generator),
    "JacobianSpectralReg": lambda x, generator: JacobianSpectralReg(generator=generator),
    "jacobian_reg": lambda x, generator: jacobian_reg(x, x * 2, generator=generator),
    "jacobian_spectral_reg": lambda x, generator: jacobian_spectral_reg(
        x, x * 2, generator=generator
    ),
    "jacobian_norm": lambda x, generator: jacobian_norm(x, x * 2, n=1, generator=generator),
    "spectral_norm": lambda x, generator: spectral_norm(x, x * 2, generator=generator),
}


@pytest.mark.parametrize("user", GENERATOR_USERS)
def test_generator_is_checked(user):
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(TypeError, match=GENERATOR_TYPE):
        GENERATOR_USERS[user](x, 3)


@pytest.mark.cuda
@pytest.mark.parametrize("user", ["jacobian_reg", "spectral_norm"])
def test_generator_for_another_device_is_rejected(user):
    # A CPU generator draws for any device (as upstream does); a GPU's only for its own.
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"generator is for device cuda:0 but y is on cpu"):
        GENERATOR_USERS[user](x, torch.Generator(device="cuda"))


def test_generator_does_not_draw_for_a_bad_output():
    x = torch.randn(2, 3, requires_grad=True)
    for bad in (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.complex64)):
        with pytest.raises(TypeError, match=r"y \(the model's output\) must be a real"):
            JacobianReg(generator=torch.Generator())(x, bad)


def test_numpy_integers_and_floats_are_accepted():
    np = pytest.importorskip("numpy")
    assert JacobianReg(n=np.int64(3)).n == 3
    assert JacobianSpectralReg(iters=np.int32(4), tol=np.float32(1e-3)).iters == 4
