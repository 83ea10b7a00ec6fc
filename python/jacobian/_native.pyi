"""Type stubs for the Rust extension ``jacobian._native``."""

from typing import Callable, Literal

import torch
from torch import Tensor

__all__ = [
    "TORCH_VERSION",
    "__version__",
    "check_frobenius_options",
    "check_spectral_options",
    "compiled_function_between",
    "frobenius_sq",
    "spectral_norm",
    "spectral_sq",
]

__version__: str
TORCH_VERSION: str

_Projection = Literal["sphere", "orthogonal"]
_Reduction = Literal["mean", "sum", "none"]

def frobenius_sq(
    x: Tensor,
    y: Tensor,
    n: int,
    projection: _Projection,
    reduction: _Reduction,
    factor: float = 0.5,
    generator: torch.Generator | None = None,
    directions: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    """Returns factor * reduce_b(C/n * sum_k ||v_k^T J_b||^2): factor * reduce_b ||J_b||_F^2.

    Runs without the GIL. ``n`` is the number of random projections, or -1 for the exact value.
    Directions are drawn from ``generator`` (called under the GIL; on y's device or the CPU) or
    torch's default generator of y's device, as ``torch.randn(B, C)`` in the default dtype,
    normalised, then cast to y's dtype; or are ``directions(C, B)`` as given. While gradients
    are enabled the result is differentiable (under no_grad no graph is built); y's graph is
    always kept. libtorch's exceptions keep their Python types and its warnings are issued as
    Python warnings.
    """

def spectral_norm(
    x: Tensor,
    y: Tensor,
    iters: int,
    tol: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Returns the per-sample largest singular value [B] of the Jacobian (not squared)."""

def spectral_sq(
    x: Tensor,
    y: Tensor,
    iters: int,
    tol: float,
    reduction: _Reduction,
    factor: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Returns factor * reduce_b sigma_max(J_b)^2, by power iteration."""

def compiled_function_between(x: Tensor, y: Tensor) -> bool:
    """Whether a torch.compile'd function's backward lies between y and x in y's graph.

    Walks every node of y's graph from which a gradient reaches x (the nodes a backward pass
    from y to x runs); such a function's backward cannot be differentiated again.
    """

def check_frobenius_options(
    n: int,
    projection: _Projection,
    reduction: _Reduction,
    generator: torch.Generator | None = None,
    own_directions: bool = False,
) -> int:
    """Returns ``n`` if ``frobenius_sq`` accepts the options, else raises TypeError/ValueError.

    ``own_directions``: the caller will pass ``directions``, which only sphere projections
    without a generator can use.
    """

def check_spectral_options(
    iters: int, tol: float, reduction: _Reduction, generator: torch.Generator | None = None
) -> None:
    """Raises TypeError/ValueError unless ``spectral_sq`` would accept the options."""
