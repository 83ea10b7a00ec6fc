"""The ``JacobianSpectralReg`` module: a regularizer on the Jacobian's largest singular value."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jacobian import functional
from jacobian._generators import pickled_state, restore_default_generator
from jacobian._types import Reduction


class JacobianSpectralReg(nn.Module):
    """Half the squared spectral norm of d(output)/d(input), per sample, reduced over the batch.

    Computes ``1/2 * reduce_b sigma_max(J_b)^2`` with ``sigma_max`` from power iteration (see
    :func:`jacobian.spectral_norm`). Since ``sigma_max <= ||J||_F``, it never exceeds
    :class:`jacobian.JacobianReg`'s exact value; it penalises only the most sensitive input
    direction of each sample.

    Args:
        iters: The most power iterations (each one vector-Jacobian and one Jacobian-vector
            product).
        tol: Stop early once no sample's estimate changes by more than this relative amount
            (0 runs every iteration).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape [B]).
        generator: A ``torch.Generator`` for the random start, instead of the global one: on
            ``y``'s device, or on the CPU for any device.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``iters`` < 1, ``tol`` negative or not finite, or an unknown reduction.
    """

    def __init__(
        self,
        iters: int = 20,
        tol: float = 1e-4,
        reduction: Reduction = "mean",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        functional._check_spectral_reg_options(iters, tol, reduction, generator)
        self.iters = iters
        self.tol = tol
        self.reduction = reduction
        self.generator = generator

    def __getstate__(self) -> dict:
        """The state to pickle (or deepcopy); ``torch.default_generator`` goes by name."""
        return pickled_state(super().__getstate__())

    def __setstate__(self, state: dict) -> None:
        """Restores a pickled regularizer."""
        super().__setstate__(state)
        restore_default_generator(self)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Computes the regularizer for a batch.

        Args:
            x: The model's input [B, ...], with ``requires_grad=True`` before the forward pass.
            y: The model's output computed from ``x``, of shape [B, ...].

        Returns:
            A 0-d tensor, or per-sample values [B] with ``reduction="none"``.

        Raises:
            TypeError: ``x`` or ``y`` is not a real floating-point, strided torch.Tensor.
            ValueError: ``x`` and ``y`` have different batch sizes, or ``y`` is 0-d.
            RuntimeError: ``x`` does not require grad, ``y`` is not computed from it, ``y``
                comes from a separately torch.compile'd function, or the call is made under
                ``torch.inference_mode()`` or inside a torch.func transform.
        """
        return functional.jacobian_spectral_reg(
            x,
            y,
            iters=self.iters,
            tol=self.tol,
            reduction=self.reduction,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        """Shows the options in the module's repr."""
        options = f"iters={self.iters}, tol={self.tol}, reduction={self.reduction!r}"
        if self.generator is not None:
            options += f", generator=<torch.Generator on {self.generator.device}>"
        return options
