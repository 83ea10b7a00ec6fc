"""The torch release the native module was built against, checked before the module is loaded."""

import torch

#: The only torch release the native module may be loaded beside: tch binds libtorch's C++ ABI,
#: which changes between releases, so another release would crash the process instead of failing.
REQUIRED_TORCH = "2.13.0"


def release(version: str) -> str:
    """Returns the release part of a torch version string.

    Args:
        version: A version as torch reports it, such as ``"2.13.0+cu130"``.

    Returns:
        The version without its local build tag, such as ``"2.13.0"``.
    """
    return version.split("+", 1)[0]


def check_torch_version(found: str = torch.__version__) -> None:
    """Raises ImportError unless the given torch version is the one the native module needs.

    Args:
        found: The torch version to check; by default the one imported.

    Raises:
        ImportError: The versions differ; the message names both and what to install.
    """
    if release(found) != REQUIRED_TORCH:
        raise ImportError(
            f"jacobian was built against torch {REQUIRED_TORCH}, but torch {found} is installed; "
            f"install the matching release (pip install torch=={REQUIRED_TORCH}) or rebuild "
            "jacobian from source against the torch you have"
        )
