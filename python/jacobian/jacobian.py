"""Upstream's module: `from jacobian.jacobian import JacobianReg` and its pickles resolve here."""

from jacobian.regularizer import JacobianReg

__all__ = ["JacobianReg"]
