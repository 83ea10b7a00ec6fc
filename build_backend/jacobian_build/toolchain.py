"""Checks the tools a build needs before it starts, so a missing one is named in seconds.

Without these checks a missing cargo or a compiler too old for torch's headers shows up as a
C++ error minutes into compiling libtorch's bindings.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from jacobian_build.errors import BuildRefused
from jacobian_build.releases import Release

# The oldest Rust that builds the crates (Cargo.toml's rust-version; lock files of version 4).
MIN_RUST = (1, 80)
# Headers that use the newest C++ features torch relies on (C++20's <bit> and <compare> from
# torch 2.14): compiling them is what compiling libtorch's bindings first fails at.
PROBE = "#include <c10/core/DispatchKeySet.h>\n#include <c10/util/intrusive_ptr.h>\n"
HOW_TO_INSTALL_CXX = (
    "install g++ 10 or later (Debian/Ubuntu: `apt install g++`; conda: `conda install "
    "-c conda-forge gxx`), or point CXX at such a compiler"
)


def check_cargo(env: dict[str, str]) -> str:
    """Returns cargo's version line.

    Raises:
        BuildRefused: cargo is missing or older than the crates need.
    """
    cargo = shutil.which("cargo", path=env.get("PATH"))
    if cargo is None:
        raise BuildRefused(
            "cargo (Rust) is not on PATH. The native module is compiled from Rust: install "
            "Rust with rustup (https://rustup.rs: `curl https://sh.rustup.rs -sSf | sh`), open "
            "a new shell so that ~/.cargo/bin is on PATH, and install again"
        )
    line = subprocess.run(
        [cargo, "--version"], capture_output=True, text=True, env=env, check=False
    ).stdout.strip()
    found = re.match(r"cargo (\d+)\.(\d+)", line)
    if not found or (int(found[1]), int(found[2])) < MIN_RUST:
        raise BuildRefused(
            f"{line or cargo} is too old: the crates need Rust {MIN_RUST[0]}.{MIN_RUST[1]} or "
            "later (`rustup update`)"
        )
    return line


def cxx_command(env: dict[str, str]) -> list[str]:
    """The C++ compiler the build will use: $CXX (with its arguments) or ``c++``, as cc-rs."""
    return shlex.split(env.get("CXX", "")) or ["c++"]


def check_cxx(env: dict[str, str], release: Release, torch_dir: Path) -> str:
    """Returns the C++ compiler's version line, having compiled torch's headers with it.

    Raises:
        BuildRefused: No compiler, or one that cannot compile torch's headers in the C++
            standard this torch release needs.
    """
    command = cxx_command(env)
    if shutil.which(command[0], path=env.get("PATH")) is None:
        raise BuildRefused(
            f"no C++ compiler ({command[0]!r} is not on PATH). libtorch's bindings are C++: "
            + HOW_TO_INSTALL_CXX
        )
    version = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, env=env, check=False
    ).stdout.strip()
    version = version.splitlines()[0] if version else command[0]
    result = subprocess.run(
        [*command, f"-std={release.cxx}", "-fsyntax-only", "-x", "c++", "-",
         "-isystem", str(torch_dir / "include")],
        input=PROBE, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        detail = "\n".join(result.stderr.strip().splitlines()[:3])
        raise BuildRefused(
            f"the C++ compiler ({version}) cannot compile torch {release.torch}'s headers as "
            f"{release.cxx.upper()}, which torch {release.minor} needs; {HOW_TO_INSTALL_CXX}. "
            f"The compiler said:\n{detail}"
        )
    return version


def check_patch(env: dict[str, str], release: Release) -> None:
    """Checks that ``patch`` exists where the release's torch-sys is patched.

    Raises:
        BuildRefused: The release needs it and it is missing.
    """
    if release.patch and shutil.which("patch", path=env.get("PATH")) is None:
        raise BuildRefused(
            f"torch {release.minor} builds with a patched torch-sys, applied with the `patch` "
            "program, which is not on PATH: install it (Debian/Ubuntu: `apt install patch`)"
        )


def check(release: Release, torch_dir: Path) -> list[str]:
    """Runs every check; returns the tools' version lines, for the build's log."""
    env = dict(os.environ)
    check_patch(env, release)
    return [check_cargo(env), check_cxx(env, release, torch_dir)]
