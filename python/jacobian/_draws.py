"""Draws from a caller's ``torch.Generator``, which the native module cannot reach itself."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """Returns ``generator`` if it is None or a ``torch.Generator``.

    Args:
        generator: The value passed as ``generator=``.

    Returns:
        The same value.

    Raises:
        TypeError: It is something else.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def gaussian_noise(
    generator: torch.Generator | None, y: Tensor, leading: tuple[int, ...]
) -> Tensor | None:
    """Standard normal noise of shape ``leading + (B, C)`` on y's device and dtype.

    Args:
        generator: The caller's generator; without one the native module draws itself, from
            torch's default generator, and this returns None.
        y: The model's output [B, ...]; C is its number of elements per sample.
        leading: Leading dimensions, such as ``(n,)`` for n projections.

    Returns:
        The noise, or None when there is no generator or nothing to draw (C of 1, or bad y,
        which the native module reports).

    Raises:
        ValueError: The generator is for another device than y.
    """
    # Bad y (not a real floating-point tensor with a batch dimension) is left for the native
    # module to report; nothing is drawn for it.
    if generator is None or not isinstance(y, Tensor) or y.dim() == 0:
        return None
    if not y.is_floating_point():
        return None
    size = math.prod(y.shape[1:])
    if size <= 1:
        return None
    same_device = generator.device.type == y.device.type and (
        y.device.type == "cpu" or generator.device.index in (None, y.device.index)
    )
    if not same_device:
        raise ValueError(
            f"generator is for device {generator.device} but y is on {y.device}; create it with "
            f"torch.Generator(device={str(y.device)!r})"
        )
    shape = (*leading, y.shape[0], size)
    return torch.randn(shape, generator=generator, device=y.device, dtype=y.dtype)
