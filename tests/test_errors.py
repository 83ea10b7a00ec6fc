"""Bad input raises a Python exception of the fitting type whose message names the fix."""

from __future__ import annotations

import pytest
import torch
from conftest import MLP
from jacobian import JacobianReg, JacobianSpectralReg, _native, jacobian_norm, spectral_norm


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
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


def test_native_function_checks_its_arguments_too():
    x = torch.randn(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match="got n=0"):
        _native.frobenius(x, x * 2, 0, "sphere", "mean")
    with pytest.raises(TypeError, match="bool"):
        _native.frobenius(x, x * 2, False, "sphere", "mean")


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
