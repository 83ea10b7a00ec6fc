"""Checks of the autograd state that only Python can see: inference mode, compiled graph nodes."""

from __future__ import annotations

import torch
from torch import Tensor


def check_not_inference_mode() -> None:
    """Raises RuntimeError under ``torch.inference_mode()``.

    Every computation here runs backward passes, which inference mode forbids; checked up front
    so that an empty batch fails like any other instead of returning an inference tensor.

    Raises:
        RuntimeError: Inference mode is on.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "the regularizer cannot record its backward passes under torch.inference_mode(); "
            "use torch.no_grad() for evaluation and logging instead"
        )


def check_not_compiled(
    y: object, what: str = "the regularizer's gradient", no_grad_helps: bool = True
) -> None:
    """Raises RuntimeError if ``y`` comes straight out of a torch.compile'd function.

    Its backward cannot be differentiated again, so ``loss.backward()`` would fail later with
    a message that does not name the regularizer. Only the first nodes of y's first input chain
    are looked at (a compiled model, then perhaps a reshape), to keep calls cheap.

    Args:
        y: The model's output.
        what: What needs the double backward, for the message.
        no_grad_helps: Whether computing under ``torch.no_grad()`` avoids the double backward
            (true for the Frobenius norm; the spectral norm's power iteration always needs it).

    Raises:
        RuntimeError: y's graph starts with a compiled function.
    """
    node = y.grad_fn if isinstance(y, Tensor) else None
    for _ in range(4):
        if node is None:
            return
        if type(node).__name__ == "CompiledFunctionBackward":
            hint = (
                f"torch.compile does not support double backward, which {what} needs; run the "
                f"model uncompiled where it is used (for a compiled module, "
                f"`model._orig_mod(data)`)"
            )
            if no_grad_helps:
                hint += ", or compute it for logging only, under torch.no_grad()"
            raise RuntimeError(f"y comes from a torch.compile'd model: {hint}")
        parents = node.next_functions
        node = parents[0][0] if parents else None
