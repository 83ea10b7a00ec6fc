"""``JacobianReg``'s former module: models pickled before it moved to upstream's path name it."""

from jacobian.jacobian import JacobianReg

__all__ = ["JacobianReg"]
