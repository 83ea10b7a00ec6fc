"""The torch release table (releases.toml): which crates, lock file and patches bind each torch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jacobian_build.errors import BuildRefused

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the build requirements name tomli for it
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        raise BuildRefused(
            "Python before 3.11 reads releases.toml with tomli, which is missing: with "
            "--no-build-isolation, `pip install maturin tomli` first"
        ) from None

TABLE = "releases.toml"


def load(root: Path) -> dict:
    """The table of the source tree at ``root``."""
    return tomllib.loads((root / TABLE).read_text())


def minors(table: dict) -> list[str]:
    """The supported minor releases, oldest first."""
    return sorted(table["torch"], key=version_key)


def version_key(version: str) -> tuple[int, ...]:
    """A sort key for ``"2.9"`` or ``"2.9.1"``."""
    return tuple(int(part) for part in version.split("."))


def parse(version: str) -> tuple[str, str]:
    """``(minor, patch release)`` of a torch version: ``"2.9.1+cpu"`` -> ``("2.9", "2.9.1")``.

    A pre-release or development build (``"2.16.0.dev20260101"``) keeps its suffix in the patch
    release, so that it matches no row of the table.
    """
    public = version.split("+", 1)[0]
    parts = public.split(".")
    return ".".join(parts[:2]), public


@dataclass(frozen=True)
class Release:
    """One row of the table, resolved for the torch a build runs against.

    Attributes:
        minor: The torch minor release, ``"2.9"``.
        torch: The torch patch release built against, ``"2.9.1"``.
        tch: The tch release (with pyo3-tch and torch-sys) that binds it.
        pyo3: The pyo3 release pyo3-tch is built on.
        bypass: Whether tch's check that torch is the release it was generated for is skipped:
            where the table says so, and for any patch release other than the table's.
        patch: The torch-sys patch applied (a file name in patches/, without ``.patch``), if any.
        cxx: The C++ standard torch's headers need (``"c++17"`` or ``"c++20"``).
    """

    minor: str
    torch: str
    tch: str
    pyo3: str
    bypass: bool
    patch: str | None
    cxx: str

    @property
    def lock(self) -> str:
        """The lock file of its crates, relative to the source root."""
        return f"locks/Cargo-torch{self.minor}.lock"

    @property
    def requirement(self) -> str:
        """The torch requirement a wheel built for it carries: its minor release."""
        major, number = (int(p) for p in self.minor.split("."))
        return f"torch>={major}.{number},<{major}.{number + 1}"


class Unsupported(ValueError):
    """A torch release the table has no row for."""


def resolve(table: dict, version: str) -> Release:
    """The table's row for a torch version (``"default"``, ``"2.9"``, ``"2.9.1"``, ``"2.9.1+cpu"``).

    Raises:
        Unsupported: The table has no row for its minor release, or it is not a release.
    """
    if version == "default":
        version = table["default"]
    minor, patch = parse(version)
    entry = table["torch"].get(minor)
    if entry is None or not re.fullmatch(r"\d+\.\d+(\.\d+)?", patch):
        supported = minors(table)
        raise Unsupported(
            f"torch {version} is not supported: jacobian-reg builds against torch "
            f"{supported[0]} to {supported[-1]} ({', '.join(supported)})"
        )
    torch = patch if patch.count(".") == 2 else entry["torch"]
    return Release(
        minor=minor,
        torch=torch,
        tch=entry["tch"],
        pyo3=entry["pyo3"],
        bypass=bool(entry.get("bypass")) or torch != entry["torch"],
        patch=entry.get("patch"),
        cxx=entry.get("cxx", "c++17"),
    )
