"""jacobian-reg's PEP 517 build backend: maturin, run on sources pinned to the user's own torch.

pip, uv and `make` call these hooks. Each wheel hook finds the torch of the environment being
installed into, picks its row of releases.toml, checks the tools, pins a copy of the sources to
that release and runs maturin's hook there; the sdist hook runs maturin's on the sources as they
are. Nothing here installs, upgrades or downgrades torch.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from jacobian_build import build
from jacobian_build.errors import BuildRefused

# The sources being built: PEP 517 runs hooks in the source tree (a checkout or an sdist).
SOURCE = Path.cwd()


def _maturin() -> ModuleType:
    """Maturin's own PEP 517 hooks, which these wrap."""
    try:
        import maturin
    except ModuleNotFoundError:
        raise BuildRefused(
            "maturin is not installed; with --no-build-isolation the build requirements must be "
            "installed first: `pip install maturin` (and `tomli` on Python 3.9 and 3.10)"
        ) from None
    return maturin


def _maturin_directory() -> str | None:
    """The directory of the ``maturin`` program installed with the maturin package imported.

    maturin's hooks run ``maturin`` from PATH: in a venv that is not activated that finds
    another one, or none (and pyenv's shim for another puts pyenv's Python ahead on PATH).
    """
    _maturin()
    files = metadata.distribution("maturin").files or []
    program = next((f for f in files if f.name in ("maturin", "maturin.exe")), None)
    return str(Path(program.locate()).resolve().parent) if program else None


@contextlib.contextmanager
def _in_pinned_sources(extra_args: list[str] | None = None) -> Iterator[Path]:
    """Runs maturin's hook in the pinned copy, with the build's environment.

    Args:
        extra_args: maturin options for a build that compiles; None for the metadata only.
    """
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    with build.prepare(SOURCE, compiles=extra_args is not None) as prepared:
        try:
            os.environ.clear()
            os.environ.update(prepared.env)
            shims, _, rest = os.environ["PATH"].partition(os.pathsep)
            os.environ["PATH"] = os.pathsep.join(filter(None, [shims, _maturin_directory(), rest]))
            if extra_args:
                user = os.environ.get("MATURIN_PEP517_ARGS", "")
                os.environ["MATURIN_PEP517_ARGS"] = " ".join([user, *extra_args]).strip()
            os.chdir(prepared.sources)
            yield prepared.sources
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    """Nothing beyond pyproject.toml's: cargo must be installed (see the README), not fetched."""
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    """Nothing beyond pyproject.toml's."""
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    """The wheel's metadata, with the torch requirement of the torch found; checks the tools."""
    with _in_pinned_sources():
        return _maturin().prepare_metadata_for_build_wheel(metadata_directory, config_settings)


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Builds the wheel against the torch of the environment being installed into."""
    # --locked: the release's lock file, exactly; a build never resolves crates anew.
    with _in_pinned_sources(["--locked"]):
        return _maturin().build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Builds an editable wheel whose package is these sources' ``python/``, as ``maturin develop``.

    maturin points the wheel at the package of the sources it ran in, the pinned copy; the
    package is pointed back at these sources, with the native module beside their Python files,
    so that edits to them apply at once.
    """
    with _in_pinned_sources(["--locked"]) as pinned:
        name = _maturin().build_editable(wheel_directory, config_settings, metadata_directory)
        _point_editable_at_sources(Path(wheel_directory) / name, pinned / "python")
    return name


def _point_editable_at_sources(wheel: Path, pinned_package: Path) -> None:
    """Moves the editable wheel's native module and ``.pth`` from the pinned copy to SOURCE."""
    package = SOURCE / "python"
    for native in pinned_package.rglob("*.so"):
        target = package / native.relative_to(pinned_package)
        shutil.copyfile(native, target)
        native.unlink()
    with zipfile.ZipFile(wheel) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    record_name = next(name for name in files if name.endswith(".dist-info/RECORD"))
    record = []
    for line in files[record_name].decode().splitlines():
        name = line.split(",", 1)[0]
        if name.endswith(".pth"):
            files[name] = files[name].decode().replace(str(pinned_package), str(package)).encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(files[name]).digest()).rstrip(b"=")
            line = f"{name},sha256={digest.decode()},{len(files[name])}"
        record.append(line)
    files[record_name] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    """Builds the sdist: every source, table, lock file and patch a build from it needs."""
    name = _maturin().build_sdist(sdist_directory, config_settings)
    _mark_requirements_dynamic(Path(sdist_directory) / name)
    return name


def _mark_requirements_dynamic(sdist: Path) -> None:
    """Declares Requires-Dist dynamic in the sdist's PKG-INFO (core metadata 2.2).

    A wheel built from the sdist requires the torch minor release it was built against, which
    the sdist cannot know; without ``Dynamic: Requires-Dist`` installers may take the sdist's
    (torch-free) requirements as the wheel's.
    """
    with tarfile.open(sdist) as archive:
        members = [(m, archive.extractfile(m) if m.isfile() else None) for m in archive]
        contents = [(m, f.read() if f else None) for m, f in members]
    with tarfile.open(sdist, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for member, data in contents:
            if (
                data is not None
                and member.name.count("/") == 1
                and member.name.endswith("/PKG-INFO")
            ):
                lines = data.decode().split("\n")
                at = next(i for i, line in enumerate(lines) if line.startswith("Version:")) + 1
                data = "\n".join([*lines[:at], "Dynamic: Requires-Dist", *lines[at:]]).encode()
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
