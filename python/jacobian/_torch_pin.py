"""The torch release the installed wheel requires, checked before the native module is loaded.

The native module binds libtorch's C++ ABI of one torch minor release; loaded beside another it
would crash the process instead of failing. The requirement is written once, into the wheel's
metadata (``Requires-Dist: torch>=X.Y,<X.Y+1``) when it is built, and read back from there.
"""

from __future__ import annotations

import re
from importlib import metadata

import torch

DISTRIBUTION = "jacobian-reg"
#: The torch minor releases wheels are built for (releases.toml), named in the ImportError.
SUPPORTED = ("2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13", "2.14", "2.15")


def minor(version: str) -> str:
    """Returns the minor release of a torch version string.

    Args:
        version: A version as torch reports it, such as ``"2.13.0+cu130"``.

    Returns:
        Its major and minor numbers, such as ``"2.13"``.
    """
    return ".".join(version.split("+", 1)[0].split(".")[:2])


def required_minor(requirements: list[str] | None) -> str | None:
    """Returns the torch minor release in a distribution's requirements.

    Args:
        requirements: ``Requires-Dist`` entries, as ``importlib.metadata.requires`` gives them.

    Returns:
        ``"X.Y"`` from ``torch>=X.Y,<...`` or ``torch==X.Y.Z``, or None when torch is not
        required (an installation without metadata, such as a source tree on ``sys.path``).
    """
    for requirement in requirements or []:
        if ";" in requirement:  # extras and environment markers: not the runtime pin
            continue
        name, _, specifiers = requirement.replace(" ", "").partition("torch")
        if name or not re.match(r"[<>=!~]", specifiers):  # another distribution, or no pin
            continue
        found = re.search(r"(?:==|>=)(\d+\.\d+)", specifiers)
        if found:
            return found.group(1)
    return None


def installed_requirements() -> list[str] | None:
    """The installed wheel's ``Requires-Dist`` entries, or None without metadata."""
    try:
        return metadata.requires(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def check_torch_version(
    found: str = torch.__version__, requirements: list[str] | None = None
) -> None:
    """Raises ImportError unless the installed torch is the minor release the wheel was built for.

    Args:
        found: The torch version to check; by default the one imported.
        requirements: The wheel's requirements; by default read from its metadata.

    Raises:
        ImportError: The releases differ; the message names both, and what to install.
    """
    if requirements is None:
        requirements = installed_requirements()
    needed = required_minor(requirements)
    if needed is None or minor(found) == needed:
        return
    supported = minor(found) in SUPPORTED
    fix = (
        f"reinstall jacobian-reg for torch {minor(found)}: from source (`pip install --no-deps "
        "--force-reinstall <its source directory or git URL>` builds against the torch "
        f"installed), or the wheel built for it (pip install jacobian-reg -f "
        f"<wheels>/torch-{minor(found)}, see the README); or install torch {needed} "
        f'(pip install "torch=={needed}.*")'
        if supported
        else f"jacobian-reg supports torch {SUPPORTED[0]} to {SUPPORTED[-1]} "
        f"({', '.join(SUPPORTED)}): install one of those, such as the one this installation "
        f'was built for (pip install "torch=={needed}.*")'
    )
    raise ImportError(
        f"jacobian was built for torch {needed}, but torch {found} is installed; {fix}"
    )
