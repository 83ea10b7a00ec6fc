"""How the functional forms reach the native module: eagerly, or inside torch.compile graphs."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from jacobian import _fsdp, _native
from jacobian._types import Projection, Reduction

# The regularizers differentiate y's autograd graph with respect to x. In a torch.compile'd
# function that graph exists only while AOTAutograd traces it (on fake tensors, with autograd
# recording), so the native call is placed in Dynamo's graph whole (`allow_in_graph`: Dynamo does
# not look inside; AOTAutograd traces it at the dispatcher, where every one of its ops appears),
# and the first-order backward passes become part of the compiled forward, whose own backward
# AOTAutograd derives: the double backward that torch.compile cannot run at run time is traced
# at compile time. This holds whether or not Dynamo traces autograd ops itself
# (`torch._dynamo.config.trace_autograd_ops`), and with `fullgraph=True`. A custom operator
# would not do: it sees tensors, not the graph that produced them.


def _in_transform(x: Tensor, y: Tensor) -> bool:
    """Whether x or y is a torch.func transform's wrapped tensor (grad, vjp, jacrev, vmap...)."""
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    # Anything else than a tensor is the native module's to refuse, with its own message.
    return any(isinstance(t, Tensor) and wrapped(t) for t in (x, y))


WHAT = "the Jacobian regularizer"

TRANSFORM_MESSAGE = (
    "{what} cannot run inside a torch.func transform (torch.func.grad, vjp, jacrev, vmap, ...): "
    "it differentiates y's autograd graph with respect to x, and a transform's wrapped tensors "
    "carry no such graph. Supported: torch.func.functional_call with ordinary autograd "
    "(loss.backward() or torch.autograd.grad over the parameters you pass in), and for several "
    "models a Python loop over them instead of vmap"
)

COMPILED_MESSAGE = (
    "the regularizer's value was computed, but its gradient cannot be: y comes from a "
    "torch.compile'd function, and torch.compile does not support double backward, which the "
    "regularizer's gradient needs. Call the regularizer inside the same torch.compile'd function "
    "as the model (it is then traced into the same graph), or run the model uncompiled where "
    "the regularizer is used (for a compiled module, `model._orig_mod(data)`); for logging only, "
    "compute it under torch.no_grad(). (Under torch.compile a regularizer with generator= or "
    "an overridden _random_vector runs outside the graph: drop those there.)"
)


LEAF_HOOK_MESSAGE = (
    "{what} differentiates y with respect to x, and x is a leaf tensor with a multi-grad hook "
    "(FlopCounterMode and torch's ModuleTracker put one on every module's inputs), which torch "
    "cannot run inside torch.autograd.grad with respect to a leaf (pytorch#131753). Make x a "
    "non-leaf before the forward pass, e.g. `x = data.view_as(data)` with "
    "`data.requires_grad_()`, and pass that x to the model and to the regularizer"
)


def _call_native(
    what: str, native: Callable[..., Tensor], x: Tensor, y: Tensor, *args: object
) -> Tensor:
    """Calls ``native(x, y, *args)`` after the checks only Python can make."""
    if _in_transform(x, y):
        raise RuntimeError(TRANSFORM_MESSAGE.format(what=what))
    try:
        if _fsdp.in_use():
            with _fsdp.unsharded_through_backward():
                return native(x, y, *args)
        return native(x, y, *args)
    except RuntimeError as error:
        # torch's own message, raised by its hook inside the engine (autograd/graph.py).
        if "leaf node was passed to _will_engine_execute_node" in str(error):
            raise RuntimeError(LEAF_HOOK_MESSAGE.format(what=what)) from error
        raise


class _NoDoubleBackward(torch.autograd.Function):
    """The value of a regularizer whose gradient would differentiate a compiled backward again.

    Backpropagating through it raises COMPILED_MESSAGE, instead of torch's own error from deep
    inside AOTAutograd, which does not name the regularizer.
    """

    @staticmethod
    def forward(ctx: object, value: Tensor, y: Tensor) -> Tensor:
        # y is an input only so that the result is attached to y's graph, as the value is.
        return value.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> None:
        raise RuntimeError(COMPILED_MESSAGE)


def frobenius_sq(
    x: Tensor,
    y: Tensor,
    n: int,
    projection: Projection,
    reduction: Reduction,
    factor: float,
    generator: torch.Generator | None = None,
    directions: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    """``_native.frobenius_sq``, wherever it is called from (see the module's comment)."""
    if torch.compiler.is_compiling():
        if generator is None and directions is None:
            return _frobenius_in_graph(x, y, n, projection, reduction, factor)
        # A generator or a Python callback cannot be a graph's argument: outside the graph.
        return _frobenius_outside_graph(
            x, y, n, projection, reduction, factor, generator, directions
        )
    return _frobenius_eager(x, y, n, projection, reduction, factor, generator, directions)


def _frobenius_eager(
    x: Tensor,
    y: Tensor,
    n: int,
    projection: Projection,
    reduction: Reduction,
    factor: float,
    generator: torch.Generator | None = None,
    directions: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    if (
        torch.is_grad_enabled()
        and isinstance(x, Tensor)
        and isinstance(y, Tensor)
        and _native.compiled_function_between(x, y)
    ):
        # The value needs no double backward: computed as for logging, its backward refused.
        with torch.no_grad():
            value = _call_native(
                WHAT, _native.frobenius_sq, x, y, n, projection, reduction, factor, generator,
                directions,
            )  # fmt: skip
        return _NoDoubleBackward.apply(value, y)
    return _call_native(
        WHAT, _native.frobenius_sq, x, y, n, projection, reduction, factor, generator, directions
    )


_frobenius_outside_graph = torch.compiler.disable(_frobenius_eager)


def spectral_norm(
    x: Tensor, y: Tensor, iters: int, tol: float, generator: torch.Generator | None = None
) -> Tensor:
    """``_native.spectral_norm``, wherever it is called from."""
    if torch.compiler.is_compiling():
        if generator is None:
            return _spectral_norm_in_graph(x, y, iters, tol)
        return _spectral_norm_outside_graph(x, y, iters, tol, generator)
    return _spectral_norm_eager(x, y, iters, tol, generator)


def _spectral_norm_eager(
    x: Tensor, y: Tensor, iters: int, tol: float, generator: torch.Generator | None = None
) -> Tensor:
    return _call_native("the spectral norm", _native.spectral_norm, x, y, iters, tol, generator)


_spectral_norm_outside_graph = torch.compiler.disable(_spectral_norm_eager)


def spectral_sq(
    x: Tensor,
    y: Tensor,
    iters: int,
    tol: float,
    reduction: Reduction,
    factor: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``_native.spectral_sq``, wherever it is called from."""
    if torch.compiler.is_compiling():
        if generator is None:
            return _spectral_sq_in_graph(x, y, iters, tol, reduction, factor)
        return _spectral_sq_outside_graph(x, y, iters, tol, reduction, factor, generator)
    return _spectral_sq_eager(x, y, iters, tol, reduction, factor, generator)


def _spectral_sq_eager(
    x: Tensor,
    y: Tensor,
    iters: int,
    tol: float,
    reduction: Reduction,
    factor: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    return _call_native(
        "the spectral regularizer", _native.spectral_sq, x, y, iters, tol, reduction, factor,
        generator,
    )  # fmt: skip


_spectral_sq_outside_graph = torch.compiler.disable(_spectral_sq_eager)


def _tracing_for_dynamo(*tensors: object) -> bool:
    """Whether Dynamo is running a graph's call on its fake tensors, to learn what it returns."""
    from torch._guards import TracingContext
    from torch._subclasses.fake_tensor import FakeTensor

    return TracingContext.try_get() is not None and any(isinstance(t, FakeTensor) for t in tensors)


def _in_graph(eager: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``eager`` as one call in Dynamo's graph; where it cannot be one, a graph break.

    Dynamo runs the call once on fake tensors to learn its result. When that fails, the graph
    cannot hold it: y's graph starts before the compiled function (y is one of its inputs), or
    the spectral norm stops on a value read back (tol > 0). The fake tensors' own signal for an
    operation they cannot run (`UnsupportedOperatorException`, which Dynamo turns into a graph
    break on every release from 2.5 on) then makes Dynamo run the call eagerly,
    where y's graph is complete, or where the error is the user's, raised with its own message.
    """

    def call(*args: object) -> Tensor:
        # `eager` is torch.compiler.disable'd: where Dynamo compiles this function as a frame of
        # its own (after the graph break), it runs it as it is, without looking inside.
        try:
            return eager(*args)
        except Exception as error:
            if not _tracing_for_dynamo(*args[:2]):
                raise
            from torch._subclasses.fake_tensor import UnsupportedOperatorException

            reason = f"jacobian: the regularizer runs outside the graph here ({error})"
            raise UnsupportedOperatorException(reason) from error

    name = getattr(eager, "__name__", "call").replace("_eager", "_in_graph")
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}``: the native call placed whole in a torch.compile graph."
    return torch.compiler.allow_in_graph(call)


_frobenius_in_graph = _in_graph(_frobenius_outside_graph)
_spectral_norm_in_graph = _in_graph(_spectral_norm_outside_graph)
_spectral_sq_in_graph = _in_graph(_spectral_sq_outside_graph)
