"""Functional forms of the regularizers and norms, the public entry points to the native calls."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_variadic

from jacobian import _calls, _native
from jacobian._types import Projection, Reduction

# Each function follows torch.nn.functional's protocol: a tensor subclass with
# __torch_function__, or an active TorchFunctionMode, sees the call (the function, its
# arguments) and decides what it returns; torch's default implementation calls the function
# again on plain tensors and returns the result as the subclass. On plain tensors the check is
# one C call.


def jacobian_reg(
    x: Tensor,
    y: Tensor,
    n: int = 1,
    *,
    reduction: Reduction = "mean",
    projection: Projection = "sphere",
    generator: torch.Generator | None = None,
    directions: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    """Half the squared Frobenius norm of the Jacobian of ``y`` w.r.t. ``x``, batch-reduced.

    The functional form of :class:`jacobian.JacobianReg`, which documents the options; the
    module calls this.

    Args:
        x: The model's input, with ``requires_grad=True`` set before the forward pass.
        y: The model's output computed from ``x``, of shape [B, ...] (real floating point).
        n: Random projections (an int >= 1), or -1 for the exact value.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        projection: ``"sphere"`` or ``"orthogonal"``.
        generator: A ``torch.Generator`` on ``y``'s device or the CPU to draw from instead of
            the global one.
        directions: Your own directions instead of random ones on the sphere: a callable
            ``(C, B) -> Tensor [B, C]`` called once per projection, whose rows are used as they
            come, unnormalised (upstream's ``_random_vector`` hook; sphere projections only).

    Returns:
        A 0-d tensor ([B] with ``reduction="none"``).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A bad option, a 0-d ``y``, or ``n`` above C with orthogonal projections.
        RuntimeError: ``x`` does not require grad, ``y`` does not depend on ``x`` or its graph
            was freed, the two are on different devices, or the call is made under inference
            mode or inside a torch.func transform. Where ``y`` comes from a separately
            torch.compile'd function, the value is computed and a backward through it raises.
    """
    if has_torch_function_variadic(x, y):
        return handle_torch_function(
            jacobian_reg,
            (x, y),
            x,
            y,
            n,
            reduction=reduction,
            projection=projection,
            generator=generator,
            directions=directions,
        )
    return _calls.frobenius_sq(x, y, n, projection, reduction, 0.5, generator, directions)


def jacobian_norm(
    x: Tensor,
    y: Tensor,
    n: int = -1,
    *,
    projection: Projection = "sphere",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample squared Frobenius norms ``||J_b||_F^2`` of the Jacobian of ``y`` w.r.t. ``x``.

    The norms are squared (no square root is taken). Exact by default (``n=-1``: one backward
    pass per output element); with ``n >= 1`` an unbiased estimate from n random projections.
    Under ``torch.no_grad()`` no double-backward graph is built (for evaluation and logging);
    with gradients enabled the result is differentiable.

    Args:
        x: The model's input [B, ...], with ``requires_grad=True`` set before the forward pass.
        y: The model's output computed from ``x``, of shape [B, ...].
        n: Random projections, or -1 for the exact value.
        projection: ``"sphere"`` or ``"orthogonal"`` (see :class:`jacobian.JacobianReg`).
        generator: A ``torch.Generator`` to draw from instead of the global one.

    Returns:
        The squared norms, a tensor of shape [B].

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A bad option, a 0-d ``y``, or ``x`` and ``y`` of different batch sizes.
        RuntimeError: ``x`` does not require grad, ``y`` is not computed from it, or the call is
            made under ``torch.inference_mode()`` or inside a torch.func transform.
    """
    if has_torch_function_variadic(x, y):
        return handle_torch_function(
            jacobian_norm, (x, y), x, y, n, projection=projection, generator=generator
        )
    return _calls.frobenius_sq(x, y, n, projection, "none", 1.0, generator)


def spectral_norm(
    x: Tensor,
    y: Tensor,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample spectral norms ``sigma_max(J_b)`` of the Jacobian of ``y`` w.r.t. ``x``.

    The norms are not squared. Power iteration alternating vector-Jacobian products ``J^T v``
    and Jacobian-vector products ``J u`` from a random start. Each iteration costs about three
    backward passes. The result is differentiable (with the final singular vectors held fixed, as
    in spectral normalisation) while gradients are enabled. Power iteration approaches
    ``sigma_max`` from below; where the two largest singular values are close it converges
    slowly, so raise ``iters``.

    Args:
        x: The model's input [B, ...], with ``requires_grad=True`` set before the forward pass.
        y: The model's output computed from ``x``, of shape [B, ...].
        iters: The most power iterations.
        tol: Stop once no sample's estimate changes by more than this relative amount (0 runs
            every iteration; checking costs a device synchronisation per iteration).
        generator: A ``torch.Generator`` for the random start instead of the global one.

    Returns:
        A tensor of shape [B].

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``iters`` < 1, a bad ``tol``, or ``x`` and ``y`` of different batch sizes.
        RuntimeError: ``x`` does not require grad, ``y`` is not computed from it or comes from a
            separately torch.compile'd function, or the call is made under
            ``torch.inference_mode()`` or inside a torch.func transform.
    """
    if has_torch_function_variadic(x, y):
        return handle_torch_function(
            spectral_norm, (x, y), x, y, iters=iters, tol=tol, generator=generator
        )
    return _calls.spectral_norm(x, y, iters, tol, generator)


def jacobian_spectral_reg(
    x: Tensor,
    y: Tensor,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    reduction: Reduction = "mean",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Half the squared spectral norm of the Jacobian per sample, reduced over the batch.

    The functional form of :class:`jacobian.JacobianSpectralReg`, which documents the options;
    the module calls this.

    Args:
        x: The model's input [B, ...], with ``requires_grad=True`` set before the forward pass.
        y: The model's output computed from ``x``, of shape [B, ...].
        iters: The most power iterations.
        tol: Stop once no sample's estimate changes by more than this relative amount.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        generator: A ``torch.Generator`` for the random start instead of the global one.

    Returns:
        A 0-d tensor ([B] with ``reduction="none"``).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A bad option, or ``x`` and ``y`` of different batch sizes.
        RuntimeError: ``x`` does not require grad, ``y`` is not computed from it or comes from a
            separately torch.compile'd function, or the call is made under
            ``torch.inference_mode()`` or inside a torch.func transform.
    """
    if has_torch_function_variadic(x, y):
        return handle_torch_function(
            jacobian_spectral_reg,
            (x, y),
            x,
            y,
            iters=iters,
            tol=tol,
            reduction=reduction,
            generator=generator,
        )
    return _calls.spectral_sq(x, y, iters, tol, reduction, 0.5, generator)


def _check_jacobian_reg_options(
    n: int,
    reduction: Reduction,
    projection: Projection,
    generator: torch.Generator | None,
    own_directions: bool = False,
) -> int:
    """Checks :func:`jacobian_reg`'s options (for a module's constructor); returns ``n``.

    ``own_directions``: the directions will be the caller's (``directions=``, an overridden
    ``_random_vector``).
    """
    check = _native.check_frobenius_options
    if torch.compiler.is_compiling():  # a module built inside compiled code
        check = _check_frobenius_outside_graph
    return check(n, projection, reduction, generator, own_directions)


def _check_spectral_reg_options(
    iters: int, tol: float, reduction: Reduction, generator: torch.Generator | None
) -> None:
    """Checks :func:`jacobian_spectral_reg`'s options (for a module's constructor)."""
    check = _native.check_spectral_options
    if torch.compiler.is_compiling():
        check = _check_spectral_outside_graph
    check(iters, tol, reduction, generator)


# Dynamo cannot look inside the native checks: run as they are, outside the graph.
_check_frobenius_outside_graph = torch.compiler.disable(_native.check_frobenius_options)
_check_spectral_outside_graph = torch.compiler.disable(_native.check_spectral_options)
