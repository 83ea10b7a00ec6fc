"""FSDP2 (fully_shard): parameters stay unsharded through the regularizer's own backward passes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

# The regularizer's vector-Jacobian products are backward passes through the model, so FSDP2's
# backward hooks fire in them: the pre-backward hook all-gathers the parameters, and the
# post-backward hook (reshard_after_backward, the default) frees them again. But the
# products are kept differentiable (create_graph=True), and their graph holds those unsharded
# parameters: `loss.backward()` would then read freed storage ("setStorage: ... out of bounds
# for storage of size 0"). `module.set_reshard_after_backward(False)` around the call is the
# fix FSDP2 offers; it is applied here to every FSDP2 module for the call's duration and then
# undone, so `loss.backward()` reshards (and reduce-scatters) as usual. torch keeps the modules
# FSDP2 manages in the registry of its composable APIs, which is only loaded once one is used.
_REGISTRY = "torch.distributed._composable_state"


def _param_groups(state: object) -> list:
    """The FSDP2 parameter groups of a composable API's state (none for other APIs' states)."""
    groups = getattr(state, "_fsdp_param_groups", None)  # later releases: several per module
    if groups is None:
        group = getattr(state, "_fsdp_param_group", None)
        groups = [] if group is None else [group]
    return [g for g in groups if getattr(g, "reshard_after_backward", False)]


def in_use() -> bool:
    """Whether any composable API (FSDP2 among them) was ever applied in this process."""
    return _REGISTRY in sys.modules


@contextlib.contextmanager
def unsharded_through_backward() -> Iterator[None]:
    """Keeps every FSDP2 module's parameters unsharded after the backward passes inside."""
    registry = sys.modules[_REGISTRY]
    modules = list(registry._module_state_mapping)
    groups = [g for m in modules for g in _param_groups(registry._get_module_state(m))]
    for group in groups:
        group.reshard_after_backward = False
    try:
        yield
    finally:
        for group in groups:
            group.reshard_after_backward = True
