"""Type stubs for the Rust extension ``jacobian._native``."""

from torch import Tensor

__all__ = ["TORCH_VERSION", "__version__", "check_projections", "jacobian_reg"]

__version__: str
TORCH_VERSION: str

def jacobian_reg(x: Tensor, y: Tensor, n: int, create_graph: bool = True) -> Tensor:
    """Returns 1/2 * C/(n*B) * sum_k ||v_k^T J||^2 for the Jacobian J of y with respect to x.

    Runs without the GIL. ``n`` is the number of random projections, or -1 for the exact value.
    With ``create_graph`` the result is differentiable; y's graph is always kept.
    """

def check_projections(n: int) -> int:
    """Returns ``n`` if it is a valid number of projections, else raises TypeError/ValueError."""
