"""A pure-PyTorch reference of the upstream algorithm, generalised to any output shape and dtype."""

from __future__ import annotations

import torch
from torch import Tensor


def unit_vectors(
    batch: int, size: int, like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Upstream's draw of one projection's directions, in ``like``'s dtype and on its device.

    ``torch.randn(B, C)`` in the default dtype (float32) whatever ``like``'s dtype, on the
    generator's device (without one, on ``like``'s: upstream's own draw on the CPU), each row
    divided by its norm in that dtype, then cast and moved, as upstream's engine casts it.
    """
    device = like.device if generator is None else generator.device
    v = torch.randn(batch, size, device=device, generator=generator)
    return (v / torch.norm(v, 2, 1, True)).to(like)


def reference_reg(
    x: Tensor, y: Tensor, n: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """R = 1/2 * C/(n*B) * sum_k ||v_k^T J||^2, as facebookresearch/jacobian_regularizer does.

    Each projection draws its [B, C] directions in turn, from ``generator`` when given.
    """
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
            v = unit_vectors(batch, size, flat, generator)
        (jv,) = torch.autograd.grad(flat, x, v, retain_graph=True, create_graph=True)
        total = total + size * torch.norm(jv) ** 2 / (num_proj * batch)
    return 0.5 * total


def dense_reg(model: torch.nn.Module, x: Tensor) -> Tensor:
    """The exact value from the dense Jacobian: ||J||_F^2 / (2B), J of the whole batch."""
    jac = torch.autograd.functional.jacobian(model, x)
    # Samples do not interact in these models, so the cross-sample blocks are zero and the
    # Frobenius norm of the whole-batch Jacobian is the sum of the per-sample ones.
    return 0.5 * jac.pow(2).sum() / x.shape[0]


def per_sample_jacobians(model: torch.nn.Module, x: Tensor) -> Tensor:
    """Dense J_b for each sample, [B, C, D], from torch.autograd.functional.jacobian."""
    rows = []
    for sample in x.detach():
        jac = torch.autograd.functional.jacobian(lambda s: model(s[None])[0], sample)
        rows.append(jac.reshape(jac.shape[0], -1))
    return torch.stack(rows)


def power_iteration(jacobians: Tensor, start: Tensor, iters: int) -> Tensor:
    """sigma_b = ||J_b^T v_b|| after ``iters`` steps of v <- J u / ||J u||, u = J^T v / ||J^T v||.

    The dense counterpart of the library's power iteration, from a start [B, C] (normalised per
    row here), for dense per-sample Jacobians [B, C, D].
    """
    v = start / torch.norm(start, 2, 1, True)
    for _ in range(iters):
        u = torch.einsum("bcd,bc->bd", jacobians, v)
        u = u / torch.norm(u, 2, 1, True)
        ju = torch.einsum("bcd,bd->bc", jacobians, u)
        v = ju / torch.norm(ju, 2, 1, True)
    return torch.einsum("bcd,bc->bd", jacobians, v).norm(dim=1)
