"""Type stubs for the Rust extension ``jacobian._native``."""

from torch import Tensor

__all__ = [
    "TORCH_VERSION",
    "__version__",
    "check_options",
    "check_reduction",
    "check_spectral_options",
    "frobenius",
    "spectral",
]

__version__: str
TORCH_VERSION: str

def frobenius(
    x: Tensor,
    y: Tensor,
    n: int,
    projection: str,
    reduction: str,
    factor: float = 0.5,
    noise: Tensor | None = None,
    create_graph: bool = True,
) -> Tensor:
    """Returns factor * reduce_b(C/n * sum_k ||v_k^T J_b||^2) for the Jacobian J of y w.r.t. x.

    Runs without the GIL. ``n`` is the number of random projections, or -1 for the exact value;
    ``noise`` is caller-drawn standard normal noise [n, B, C] (else torch's default generator is
    used). With ``create_graph`` the result is differentiable; y's graph is always kept.
    """

def spectral(
    x: Tensor,
    y: Tensor,
    iters: int,
    tol: float,
    noise: Tensor | None = None,
    create_graph: bool = True,
) -> Tensor:
    """Returns the per-sample largest singular value [B] of the Jacobian, by power iteration."""

def check_options(n: int, projection: str, reduction: str) -> int:
    """Returns ``n`` if the options are valid, else raises TypeError/ValueError."""

def check_reduction(reduction: str) -> None:
    """Raises TypeError/ValueError unless ``reduction`` is "mean", "sum" or "none"."""

def check_spectral_options(iters: int, tol: float) -> None:
    """Raises TypeError/ValueError unless ``iters`` and ``tol`` are valid."""
