"""Functional forms: per-sample squared Frobenius norms and spectral norms of the Jacobian."""

from __future__ import annotations

import torch
from torch import Tensor

from jacobian import _native
from jacobian._draws import check_generator, gaussian_noise
from jacobian._graph import check_not_compiled, check_not_inference_mode


def jacobian_norm(
    x: Tensor,
    y: Tensor,
    n: int = -1,
    *,
    projection: str = "sphere",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample squared Frobenius norms ``||J_b||_F^2`` of the Jacobian of ``y`` w.r.t. ``x``.

    Exact by default (``n=-1``: one backward pass per output element); with ``n >= 1`` an
    unbiased estimate from n random projections. Under ``torch.no_grad()`` no double-backward
    graph is built (for evaluation and logging); with gradients enabled the result is
    differentiable.

    Args:
        x: The model's input [B, ...], with ``requires_grad=True`` set before the forward pass.
        y: The model's output computed from ``x``, of shape [B, ...].
        n: Random projections, or -1 for the exact value.
        projection: ``"sphere"`` or ``"orthogonal"`` (see :class:`jacobian.JacobianReg`).
        generator: A ``torch.Generator`` to draw from instead of the global one.

    Returns:
        A tensor of shape [B].

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: A bad option, a 0-d ``y``, or ``x`` and ``y`` of different batch sizes.
        RuntimeError: ``x`` does not require grad, ``y`` is not computed from it, or the call is
            made under ``torch.inference_mode()``.
    """
    n = _native.check_options(n, projection, "none")
    check_not_inference_mode()
    noise = gaussian_noise(check_generator(generator), y, (n,)) if n != -1 else None
    create_graph = torch.is_grad_enabled()
    if create_graph:
        check_not_compiled(y)
    return _native.frobenius(x, y, n, projection, "none", 1.0, noise, create_graph)


def spectral_norm(
    x: Tensor,
    y: Tensor,
    *,
    iters: int = 20,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample spectral norms ``sigma_max(J_b)`` of the Jacobian of ``y`` w.r.t. ``x``.

    Power iteration alternating vector-Jacobian products ``J^T v`` and Jacobian-vector products
    ``J u`` from a random start. Each iteration costs about three backward passes. The result is
    differentiable (with the final singular vectors held fixed, as in spectral normalisation)
    while gradients are enabled. Power iteration approaches ``sigma_max`` from below; where the
    two largest singular values are close it converges slowly, so raise ``iters``.

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
        RuntimeError: ``x`` does not require grad, ``y`` is not computed from it, or the call is
            made under ``torch.inference_mode()``.
    """
    check_not_inference_mode()
    noise = gaussian_noise(check_generator(generator), y, ())
    # Power iteration differentiates the backward pass even without gradients.
    check_not_compiled(y, "the spectral norm's power iteration", no_grad_helps=False)
    return _native.spectral(x, y, iters, tol, noise, torch.is_grad_enabled())
