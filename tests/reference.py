"""A pure-PyTorch reference of the upstream algorithm, generalised to any output shape and dtype."""

from __future__ import annotations

import torch
from torch import Tensor


def unit_vectors(batch: int, size: int, like: Tensor) -> Tensor:
    """One standard-normal draw per sample, normalised per row (the upstream draw order)."""
    v = torch.randn(batch, size, dtype=like.dtype, device=like.device)
    return v / torch.norm(v, 2, 1, True)


def reference_reg(x: Tensor, y: Tensor, n: int = 1) -> Tensor:
    """R = 1/2 * C/(n*B) * sum_k ||v_k^T J||^2, as facebookresearch/jacobian_regularizer does."""
    batch = y.shape[0]
    flat = y.reshape(batch, -1)
    size = flat.shape[1]
    num_proj = size if n == -1 else n
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for k in range(num_proj):
        if n == -1:
            v = torch.zeros_like(flat)
            v[:, k] = 1
        elif size == 1:
            v = torch.ones_like(flat)
        else:
            v = unit_vectors(batch, size, flat)
        (jv,) = torch.autograd.grad(flat, x, v, retain_graph=True, create_graph=True)
        total = total + size * torch.norm(jv) ** 2 / (num_proj * batch)
    return 0.5 * total


def dense_reg(model: torch.nn.Module, x: Tensor) -> Tensor:
    """The exact value from the dense Jacobian: ||J||_F^2 / (2B), J of the whole batch."""
    jac = torch.autograd.functional.jacobian(model, x)
    # Samples do not interact in these models, so the cross-sample blocks are zero and the
    # Frobenius norm of the whole-batch Jacobian is the sum of the per-sample ones.
    return 0.5 * jac.pow(2).sum() / x.shape[0]
