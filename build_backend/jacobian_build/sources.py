"""A copy of the sources pinned to one torch release: its crates, lock file, torch pin and patch.

Cargo reads one manifest, so building for another torch means building from a copy whose
Cargo.toml names that release's crates. The copy is kept between builds (a directory per torch
build) and only files whose content changed are rewritten, so cargo rebuilds only what changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from jacobian_build.errors import BuildRefused
from jacobian_build.releases import Release, tomllib

# The crates whose versions a release pins: tch and its companions share tch's version.
TCH_CRATES = ("tch", "pyo3-tch", "torch-sys")
# What the copy holds besides the crate's own files (Cargo.toml's `include`): the Python package
# and its metadata, which maturin packs into the wheel.
PYTHON_PACKAGE = ("pyproject.toml", "python/**/*")
# Written by `pin` (the first two from the sources' own, pinned), not copied by `sync`.
GENERATED = ("Cargo.toml", "pyproject.toml", "Cargo.lock", ".cargo/config.toml", "vendor/")
SKIPPED_SUFFIXES = (".so", ".pyd", ".pyc")


def build_files(source: Path) -> list[str]:
    """The files a build needs, relative to ``source``: Cargo.toml's ``include`` and the package.

    The sdist is made from the same list, so what builds from a checkout builds from an sdist.
    """
    manifest = tomllib.loads((source / "Cargo.toml").read_text())
    patterns = [*manifest["package"]["include"], *PYTHON_PACKAGE]
    found: set[str] = set()
    for pattern in patterns:
        for path in source.glob(pattern.lstrip("/")):
            relative = path.relative_to(source).as_posix()
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and not relative.endswith(SKIPPED_SUFFIXES)
            ):
                found.add(relative)
    return sorted(found)


def write_if_changed(path: Path, content: bytes) -> None:
    """Writes ``content`` unless the file already holds it (cargo rebuilds on newer files)."""
    if path.is_file() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def sync(source: Path, dest: Path) -> None:
    """Makes ``dest`` hold exactly the build files of ``source`` (and what `pin` generates)."""
    files = [f for f in build_files(source) if f not in GENERATED]
    for relative in files:
        target = dest / relative
        if target.is_file() and target.read_bytes() == (source / relative).read_bytes():
            continue
        # A fresh modification time, whatever the source's: cargo rebuilds files newer than its
        # last build, and an sdist's files may carry older times than that.
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target)
        shutil.copymode(source / relative, target)
    wanted = set(files)
    for path in sorted(dest.rglob("*"), reverse=True):
        relative = path.relative_to(dest).as_posix()
        if relative.startswith(GENERATED) or relative in GENERATED:
            continue
        if path.is_file() and relative not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def pin_manifest(text: str, release: Release) -> str:
    """Cargo.toml's text with the release's crate versions and, if it has one, its patch."""
    for crate in TCH_CRATES:
        text, count = re.subn(
            rf'^{crate} = "=[^"]+"', f'{crate} = "={release.tch}"', text, flags=re.M
        )
        if count != 1:
            raise BuildRefused(f'Cargo.toml has no single `{crate} = "=..."` line to pin')
    for pattern in (r'^(pyo3 = \{ version = ")[^"]+', r'^(pyo3-build-config = ")[^"]+'):
        text, count = re.subn(pattern, rf"\g<1>{release.pyo3}", text, flags=re.M)
        if count != 1:
            raise BuildRefused(f"Cargo.toml has no single line matching {pattern!r} to pin")
    if release.patch:
        text = text.rstrip() + (
            "\n\n[patch.crates-io]\n"
            f"# torch-sys patched for torch {release.minor} (patches/{release.patch}.patch).\n"
            'torch-sys = { path = "vendor/torch-sys" }\n'
        )
    return text


def pin_pyproject(text: str, release: Release) -> str:
    """pyproject.toml's text with the wheel's torch requirement: the release's minor release."""
    text, count = re.subn(
        r'^dynamic = \["version", "dependencies"\]$',
        f'dynamic = ["version"]\ndependencies = ["{release.requirement}"]',
        text,
        flags=re.M,
    )
    if count != 1:
        raise BuildRefused(
            'pyproject.toml has no `dynamic = ["version", "dependencies"]` line to pin'
        )
    return text


def cargo_config(release: Release) -> str:
    """The copy's .cargo/config.toml: what every cargo command there must agree on."""
    env = {
        # torch-sys builds against the torch of `python` on PATH (the build's own, see build.py).
        "LIBTORCH_USE_PYTORCH": "1",
        # build.rs compiles the C++ shim in the standard torch's headers need.
        "JACOBIAN_CXX_STANDARD": release.cxx,
    }
    if release.bypass:
        # tch checks that torch is the release it was generated for; releases.toml says which
        # neighbouring releases its C++ compiles against.
        env["LIBTORCH_BYPASS_VERSION_CHECK"] = "1"
    lines = [f"# Written for torch {release.torch} by jacobian_build (releases.toml).", "[env]"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in env.items()]
    return "\n".join(lines) + "\n"


def vendor(source: Path, dest: Path, patch: str) -> None:
    """Writes torch-sys from crates.io, patched with ``patches/<patch>.patch``, to ``dest``."""
    crate, version = patch.rsplit("-", 1)
    stamp = dest / ".patched"
    patch_file = source / "patches" / f"{patch}.patch"
    if stamp.is_file() and stamp.read_text() == patch_file.read_text():
        return
    with tempfile.TemporaryDirectory() as scratch:
        # A throwaway crate that depends on the pristine release: cargo downloads and checks it.
        Path(scratch, "src").mkdir()
        Path(scratch, "src", "lib.rs").write_text("")
        Path(scratch, "Cargo.toml").write_text(
            f'[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n'
            f'[dependencies]\n{crate} = "={version}"\n'
        )
        metadata = subprocess.run(
            ["cargo", "metadata", "--format-version", "1"],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        if metadata.returncode != 0:
            raise BuildRefused(
                f"cargo could not fetch {crate} {version} from crates.io to patch it:\n"
                + metadata.stderr.strip()
            )
        packages = json.loads(metadata.stdout)["packages"]
        manifest = next(p["manifest_path"] for p in packages if p["name"] == crate)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(Path(manifest).parent, dest)
    subprocess.run(["patch", "-s", "-p1", "-d", str(dest), "-i", str(patch_file)], check=True)
    stamp.write_text(patch_file.read_text())


def pin(source: Path, dest: Path, release: Release, *, locked: bool = True) -> Path:
    """Makes ``dest`` a copy of ``source``'s build files pinned to ``release``; returns ``dest``.

    Args:
        source: The sources (a checkout or an unpacked sdist).
        dest: The copy, created or refreshed.
        release: The torch release to pin to.
        locked: Copy the release's lock file (False: leave the crates to be resolved anew).
    """
    lock = source / release.lock
    if locked and not lock.is_file():
        raise BuildRefused(f"{release.lock} is missing from the sources")
    sync(source, dest)
    write_if_changed(
        dest / "Cargo.toml", pin_manifest((source / "Cargo.toml").read_text(), release).encode()
    )
    write_if_changed(
        dest / "pyproject.toml",
        pin_pyproject((source / "pyproject.toml").read_text(), release).encode(),
    )
    if locked:
        write_if_changed(dest / "Cargo.lock", lock.read_bytes())
    else:
        (dest / "Cargo.lock").unlink(missing_ok=True)
    write_if_changed(dest / ".cargo" / "config.toml", cargo_config(release).encode())
    if release.patch:
        vendor(source, dest / "vendor" / "torch-sys", release.patch)
    elif (dest / "vendor").exists():
        shutil.rmtree(dest / "vendor")
    return dest
