"""``JacobianReg``, at upstream's module path, so that pickles load both ways."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jacobian import functional
from jacobian._generators import pickled_state, restore_default_generator
from jacobian._types import Projection, Reduction

# The options a regularizer pickled by the upstream package lacks: it has only `n`.
_DEFAULTS = {"reduction": "mean", "projection": "sphere", "generator": None}


class JacobianReg(nn.Module):
    """Jacobian regularization: half the squared Frobenius norm of d(output)/d(input).

    Computes ``R = 1/2 * C/(n*B) * sum_k ||v_k^T J||^2``, where ``J`` is the Jacobian of the
    output ``y`` ([B, ...]) with respect to the input ``x``, ``B`` the batch size, ``C`` the number
    of output elements per sample and ``v_k`` drawn per sample uniformly on the unit sphere of the
    output space (Hoffman, Roberts and Yaida, arXiv:1908.02729). The estimate is unbiased:
    its expectation is ``||J||_F^2 / (2B)``, which ``n=-1`` computes exactly.

    Each projection draws ``torch.randn(B, C)`` in torch's default dtype (float32) whatever
    ``y``'s dtype, normalises it per row and only then casts it to ``y``'s dtype, as upstream
    does: on the CPU, under the same seed, the value and the generator's state afterwards are
    upstream's. Without ``generator`` the draws come from torch's default generator of ``y``'s
    device, so ``torch.manual_seed`` reproduces them. The result is differentiable while
    gradients are enabled; under ``torch.no_grad()`` it is computed without the double-backward
    graph, for logging. The graph of ``y`` is kept, so ``loss.backward()`` works afterwards.

    Args:
        n: The number of random projections (an int >= 1), or -1 for the exact value, which
            takes one backward pass per output element.
        reduction: ``"mean"`` (the upstream value, averaged over the batch), ``"sum"`` (summed
            over the batch) or ``"none"`` (per-sample estimates of ``||J_b||_F^2 / 2``, shape
            [B]; needs ``x`` and ``y`` to share their batch dimension).
        projection: ``"sphere"`` (independent directions, as upstream) or ``"orthogonal"``
            (for n >= 2: n orthonormal Haar-random directions per sample; still unbiased, with
            lower variance, and exact when n equals C).
        generator: A ``torch.Generator`` to draw from instead of the global one: on ``y``'s
            device, or on the CPU for any device (drawn there and copied, as upstream does;
            ``torch.default_generator`` gives upstream's draws for an output on a GPU).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``n`` is 0 or below -1, a string option is unknown, or a subclass that
            overrides ``_random_vector`` asks for orthogonal projections or a generator.

    Example:
        Upstream's usage, with a model, a batch and a supervised loss:

        >>> import torch
        >>> from torch import nn
        >>> from jacobian import JacobianReg
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> data, target = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> criterion, lambda_JR = nn.CrossEntropyLoss(), 0.01
        >>> reg = JacobianReg()
        >>> data.requires_grad = True
        >>> output = model(data)
        >>> loss = criterion(output, target) + lambda_JR * reg(data, output)
        >>> loss.backward()
    """

    def __init__(
        self,
        n: int = 1,
        reduction: Reduction = "mean",
        projection: Projection = "sphere",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n = functional._check_jacobian_reg_options(
            n, reduction, projection, generator, own_directions=self._overrides_random_vector()
        )
        self.reduction = reduction
        self.projection = projection
        self.generator = generator

    def __getstate__(self) -> dict:
        """The state to pickle (or deepcopy); ``torch.default_generator`` goes by name."""
        return pickled_state(super().__getstate__())

    def __setstate__(self, state: dict) -> None:
        """Restores a pickled regularizer; one pickled by the upstream package has only ``n``."""
        super().__setstate__(state)
        for name, default in _DEFAULTS.items():
            self.__dict__.setdefault(name, default)
        restore_default_generator(self)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Computes the regularizer for a batch.

        Args:
            x: The model's input, with ``requires_grad=True`` set before the forward pass.
            y: The model's output computed from ``x``, of shape [B, ...] (real floating point).

        Returns:
            A 0-d tensor ([B] with ``reduction="none"``) in ``x``'s dtype, or float32 when
            ``x`` is half precision.

        Raises:
            TypeError: ``x`` or ``y`` is not a real floating-point, strided torch.Tensor.
            ValueError: ``y`` is 0-d, or ``n`` exceeds C with orthogonal projections.
            RuntimeError: ``x`` does not require grad, ``y`` does not depend on ``x`` or its
                graph was freed, the two are on different devices, or the call is made under
                ``torch.inference_mode()`` or inside a torch.func transform. Where ``y`` comes
                from a separately torch.compile'd function (double backward), the value is
                computed and a backward through it raises.
        """
        return functional.jacobian_reg(
            x,
            y,
            self.n,
            reduction=self.reduction,
            projection=self.projection,
            generator=self.generator,
            directions=self._random_vector if self._overrides_random_vector() else None,
        )

    def _overrides_random_vector(self) -> bool:
        """Whether a subclass chose its own directions by overriding ``_random_vector``."""
        return type(self)._random_vector is not JacobianReg._random_vector

    def _random_vector(self, C: int, B: int) -> Tensor:
        """Upstream's direction hook: B directions uniform on the unit sphere of R^C.

        The regularizer draws its own directions without calling this (on the CPU the same
        ones; for an output on a GPU, on the device, unless ``generator`` is a CPU one); this is
        called only when a subclass overrides it, and then its rows are used as they come, one
        call per projection (upstream's semantics). The default returns what upstream's does.

        Args:
            C: The number of outputs per sample.
            B: The batch size.

        Returns:
            A float32 CPU tensor [B, C] of unit rows from the global generator (``B`` ones when
            ``C`` is 1).
        """
        if C == 1:
            return torch.ones(B)
        v = torch.randn(B, C)
        return v / torch.norm(v, 2, 1, True)

    def _jacobian_vector_product(
        self, y: Tensor, x: Tensor, v: Tensor, create_graph: bool = False
    ) -> Tensor:
        """Upstream's helper: the vector-Jacobian product ``v^T dy/dx``, keeping y's graph.

        Args:
            y: The output.
            x: The input it was computed from.
            v: A tensor with y's number of elements (flattened, as upstream does).
            create_graph: Build the graph of the product, to differentiate it.

        Returns:
            The gradient with respect to ``x``, of ``x``'s shape.
        """
        (grad_x,) = torch.autograd.grad(
            y.reshape(-1), x, v.reshape(-1), retain_graph=True, create_graph=create_graph
        )
        return grad_x

    def extra_repr(self) -> str:
        """Shows the options in the module's repr."""
        options = [f"n={self.n}"]
        if self.reduction != "mean":
            options.append(f"reduction={self.reduction!r}")
        if self.projection != "sphere":
            options.append(f"projection={self.projection!r}")
        if self.generator is not None:
            options.append(f"generator=<torch.Generator on {self.generator.device}>")
        return ", ".join(options)
