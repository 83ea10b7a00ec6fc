"""A module's generator through pickling and deepcopy: ``torch.default_generator`` by name."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# What a pickle holds in place of torch.default_generator: a copy of its state, which is what
# torch pickles for a generator, would no longer follow torch.manual_seed.
DEFAULT_GENERATOR = "torch.default_generator"


def pickled_state(state: dict[str, Any]) -> dict[str, Any]:
    """A module's state to pickle, with torch.default_generator as its generator named."""
    if state.get("generator") is torch.default_generator:
        return {**state, "generator": DEFAULT_GENERATOR}
    return state


def restore_default_generator(module: nn.Module) -> None:
    """Puts torch.default_generator back where a pickle named it."""
    if module.__dict__.get("generator") == DEFAULT_GENERATOR:
        module.generator = torch.default_generator
