"""A stand-in for upstream's `jacobian.jacobian` module, re-written: its estimator and its class.

facebookresearch/jacobian_regularizer is not a dependency; this re-writes what it computes, step
by step, so the tests can compare numbers with it and exchange pickles with it. Copied into a
temporary `jacobian/` package (see `write_package`), it also stands where upstream installs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


def upstream_estimate(
    x: Tensor, y: Tensor, n: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """Upstream's R = 1/2 * sum_k C ||v_k^T J||^2 / (n B) for a [B, C] output y of x.

    Each projection in turn: ``torch.randn(B, C)`` (float32, the default dtype, on the CPU,
    from ``generator`` where given, which upstream lacks), each row divided by its norm in that
    dtype (upstream writes it ``addcdiv(zeros, 1.0, v, norm)``, the same bits; ``C == 1``: ones,
    and no draw), moved to the GPU when x is on one (upstream's ``.cuda()``), and handed to
    ``torch.autograd.grad`` as it is: the autograd engine casts it to y's dtype. The squared norms
    are accumulated in the dtype of the vector-Jacobian product (x's).
    """
    batch, size = y.shape
    terms = []
    for _ in range(n):
        if size == 1:
            v = torch.ones(batch)
        else:
            noise = torch.randn(batch, size, generator=generator)
            v = noise / torch.norm(noise, 2, 1, True)
        if x.is_cuda:
            v = v.to(x.device)
        (jv,) = torch.autograd.grad(
            y.reshape(-1), x, v.reshape(-1), retain_graph=True, create_graph=True
        )
        terms.append(size * torch.norm(jv) ** 2 / (n * batch))
    return 0.5 * sum(terms)


class JacobianReg(nn.Module):
    """Upstream's class as its pickles hold it: ``n``, set before ``nn.Module.__init__``."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        super().__init__()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Upstream's estimate with n random projections (n >= 1)."""
        return upstream_estimate(x, y, self.n)


def write_package(root: Path) -> Path:
    """Lays this module out as upstream's package under ``root``: ``jacobian/jacobian.py``.

    Returns ``root``, to put first on a subprocess's ``sys.path`` (``PYTHONPATH``).
    """
    package = root / "jacobian"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from jacobian.jacobian import JacobianReg\n")
    (package / "jacobian.py").write_text(Path(__file__).read_text())
    return root
