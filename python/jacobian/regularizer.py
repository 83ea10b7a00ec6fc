"""The ``JacobianReg`` module: the user-facing wrapper around the native regularizer."""

import torch
from torch import Tensor, nn

from jacobian import _native


class JacobianReg(nn.Module):
    """Jacobian regularization: half the squared Frobenius norm of d(output)/d(input).

    Computes ``R = 1/2 * C/(n*B) * sum_k ||v_k^T J||^2``, where ``J`` is the Jacobian of the
    output ``y`` ([B, ...]) with respect to the input ``x``, ``B`` the batch size, ``C`` the number
    of output elements per sample and ``v_k`` drawn per sample uniformly on the unit sphere of the
    output space (Hoffman, Roberts and Yaida, arXiv:1908.02729). The estimate is unbiased:
    its expectation is ``||J||_F^2 / (2B)``, which ``n=-1`` computes exactly.

    The draws come from torch's default generator of ``y``'s device, in ``y``'s dtype, so
    ``torch.manual_seed`` reproduces them. The result is differentiable while gradients are
    enabled; under ``torch.no_grad()`` it is computed without the double-backward graph, for
    logging. The graph of ``y`` is kept, so ``loss.backward()`` works afterwards.

    Args:
        n: The number of random projections (an int >= 1), or -1 for the exact value, which
            takes one backward pass per output element.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` is 0 or below -1.

    Example:
        >>> reg = JacobianReg()
        >>> data.requires_grad = True
        >>> output = model(data)
        >>> loss = criterion(output, target) + lambda_JR * reg(data, output)
        >>> loss.backward()
    """

    def __init__(self, n: int = 1) -> None:
        super().__init__()
        self.n = _native.check_projections(n)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Computes the regularizer for a batch.

        Args:
            x: The model's input, with ``requires_grad=True`` set before the forward pass.
            y: The model's output computed from ``x``, of shape [B, ...] (real floating point).

        Returns:
            A 0-d tensor in ``x``'s dtype (float32 for half-precision inputs).

        Raises:
            TypeError: ``x`` or ``y`` is not a floating-point torch.Tensor.
            ValueError: ``y`` is 0-d (it has no batch dimension).
            RuntimeError: ``x`` does not require grad, ``y`` does not depend on ``x`` or its
                graph was freed, or the two are on different devices.
        """
        return _native.jacobian_reg(x, y, self.n, torch.is_grad_enabled())

    def extra_repr(self) -> str:
        """Shows the number of projections in the module's repr."""
        return f"n={self.n}"
