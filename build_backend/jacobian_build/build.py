"""Prepares a build for the torch it installs beside: picks its release, checks tools, pins sources.

Every build goes through `prepare`: pip's and uv's (through the PEP 517 hooks), `make` (which runs
pip) and the Rust tests (`python -m jacobian_build cargo ...`). A build directory per torch
build holds the pinned sources and cargo's target directory, since torch-sys does not notice
when only the torch it compiled against changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jacobian_build import releases, sources, toolchain, torch_env
from jacobian_build.errors import BuildRefused


def progress(message: str) -> None:
    """Says what the build is doing (pip shows it with -v, or when the build fails)."""
    print(f"jacobian-reg: {message}", file=sys.stderr, flush=True)


def build_root(source: Path) -> Path:
    """Where builds are kept: $JACOBIAN_BUILD_DIR, else ``target/`` in the sources."""
    configured = os.environ.get("JACOBIAN_BUILD_DIR")
    return Path(configured).expanduser().resolve() if configured else source / "target"


@dataclass(frozen=True)
class Prepared:
    """A build ready to run.

    Attributes:
        torch: The torch it compiles against.
        release: Its row of releases.toml.
        sources: The pinned copy of the sources, where cargo and maturin run.
        env: The environment to run them with.
    """

    torch: torch_env.Torch
    release: releases.Release
    sources: Path
    env: dict[str, str]


def python_shims(directory: Path, torch: torch_env.Torch) -> Path:
    """Writes ``python`` and ``python3`` that run the torch's interpreter, as its user sees it.

    torch-sys and build.rs ask ``python`` (in a venv) or ``python3`` on PATH which torch to build
    against: with these first on PATH, both get the environment being installed into, even when
    it is not activated, and without pip's isolation hiding its torch.
    """
    user = torch_env.user_environment()
    settings = [
        f"{name}={shlex.quote(user[name])}" if name in user else f"-u {name}"
        for name in ("PYTHONPATH", "PYTHONNOUSERSITE")
    ]
    script = (
        "#!/bin/sh\n"
        "# The interpreter of the environment jacobian-reg is built for (jacobian_build).\n"
        f'exec env {" ".join(settings)} {shlex.quote(torch.python)} "$@"\n'
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        sources.write_if_changed(directory / name, script.encode())
        (directory / name).chmod(0o755)
    return directory


def select(source: Path) -> tuple[torch_env.Torch, releases.Release]:
    """The torch being built for and its row of the table.

    Raises:
        BuildRefused: No torch, or one the table has no row for.
    """
    torch = torch_env.find()
    try:
        release = releases.resolve(releases.load(source), torch.version)
    except releases.Unsupported as err:
        raise BuildRefused(
            f"{err}. Install one of those into {torch.python}'s environment (for example "
            '`pip install "torch==2.15.*"`), or use an environment that has one'
        ) from None
    return torch, release


@contextlib.contextmanager
def prepare(source: Path, *, compiles: bool = True) -> Iterator[Prepared]:
    """Selects, checks and pins a build, holding its build directory while the build runs.

    Args:
        source: The sources (a checkout or an unpacked sdist).
        compiles: Whether cargo will compile (False: metadata only), to say how long it takes.
    """
    torch, release = select(source)
    how = f"patched torch-sys ({release.patch})" if release.patch else "torch-sys from crates.io"
    progress(
        f"building for torch {torch.version} ({torch.python}): tch {release.tch}, pyo3 "
        f"{release.pyo3}, {how}, {release.cxx}; the wheel will require {release.requirement}"
    )
    for line in toolchain.check(release, torch.directory):
        progress(f"using {line}")
    directory = build_root(source) / f"torch-{torch.tag}"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        # Two installs for the same torch share the directory: one at a time.
        fcntl.flock(lock, fcntl.LOCK_EX)
        pinned = sources.pin(source, directory / "src", release)
        shims = python_shims(directory / "bin", torch)
        env = {
            **os.environ,
            "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
            "CARGO_TARGET_DIR": str(directory / "target"),
        }
        if compiles and not (directory / "target").exists():
            progress(
                f"first build for torch {torch.version}: compiling libtorch's bindings takes "
                "2 to 4 minutes on 2 cores (later builds reuse them, see JACOBIAN_BUILD_DIR)"
            )
        yield Prepared(torch, release, pinned, env)
