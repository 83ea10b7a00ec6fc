"""Jacobian regularization for PyTorch, computed in Rust on libtorch's own autograd graph."""

from jacobian._torch_pin import check_torch_version as _check_torch_version

# The native module links libtorch: torch must be loaded first, and be the release we built for.
_check_torch_version()

from jacobian._native import __version__  # noqa: E402
from jacobian.functional import jacobian_norm, spectral_norm  # noqa: E402
from jacobian.jacobian import JacobianReg  # noqa: E402
from jacobian.spectral import JacobianSpectralReg  # noqa: E402

# Upstream's package defines it; code written for upstream may read it.
name = "jacobian"

__all__ = ["JacobianReg", "JacobianSpectralReg", "__version__", "jacobian_norm", "spectral_norm"]
