"""Checks of the autograd graph that only Python can see (its nodes' types)."""

from __future__ import annotations

from torch import Tensor

COMPILED_HINT = (
    "torch.compile does not support double backward, which the regularizer's gradient needs; "
    "run the model uncompiled in training steps that use the regularizer (for a compiled "
    "module, `model._orig_mod(data)`), or compute the regularizer for logging only, under "
    "torch.no_grad()"
)


def check_not_compiled(y: object, depth: int = 4) -> None:
    """Raises RuntimeError if ``y`` comes straight out of a torch.compile'd function.

    Its backward cannot be differentiated again, so ``loss.backward()`` would fail later with
    a message that does not name the regularizer. Only the first ``depth`` nodes of y's first
    input chain are looked at (a compiled model, then perhaps a reshape), to keep calls cheap.

    Args:
        y: The model's output.
        depth: How many nodes to follow.

    Raises:
        RuntimeError: y's graph starts with a compiled function.
    """
    node = y.grad_fn if isinstance(y, Tensor) else None
    for _ in range(depth):
        if node is None:
            return
        if type(node).__name__ == "CompiledFunctionBackward":
            raise RuntimeError(f"y comes from a torch.compile'd model: {COMPILED_HINT}")
        parents = node.next_functions
        node = parents[0][0] if parents else None
