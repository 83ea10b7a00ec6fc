"""The build's command line, for make, CI and maintainers (pip uses the PEP 517 hooks instead).

Usage: ``PYTHONPATH=build_backend python -m jacobian_build COMMAND ...`` from the source root.

Commands:
  patch RELEASE      the torch patch release a release ("2.12", "2.12.0", "default") installs
  list               the supported minor releases, oldest first
  other              the release CI tests besides the default, rotating with the commit
  cargo ARGS...      runs cargo in the sources pinned to this interpreter's torch, with the
                     environment the wheel is built with (the Rust tests, clippy)
  lock RELEASE       resolves a release's crates anew into locks/Cargo-torch<minor>.lock
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from jacobian_build import build, releases, sources
from jacobian_build.errors import BuildRefused

ROOT = Path.cwd()
# This package is on PYTHONPATH only to run this command: the build's tools must not inherit it.
os.environ["PYTHONPATH"] = os.pathsep.join(
    entry
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if entry and Path(entry).resolve() != Path(__file__).resolve().parent.parent
)
if not os.environ["PYTHONPATH"]:
    del os.environ["PYTHONPATH"]


def cargo(*args: str) -> int:
    """Runs cargo in the pinned sources of this interpreter's torch; returns its exit status."""
    with build.prepare(ROOT) as prepared:
        env = dict(prepared.env)
        # What maturin tells pyo3's build script about the interpreter: the same values keep
        # cargo from rebuilding pyo3 and what depends on it after every wheel build.
        env["PYO3_PYTHON"] = sys.executable
        env["PYO3_ENVIRONMENT_SIGNATURE"] = "cpython-{}.{}-64bit".format(*sys.version_info[:2])
        return subprocess.run(["cargo", *args], cwd=prepared.sources, env=env).returncode


def lock(release: str) -> None:
    """Resolves a release's crates in a pinned copy and saves the lock file."""
    chosen = releases.resolve(releases.load(ROOT), release)
    with tempfile.TemporaryDirectory() as scratch:
        target = sources.pin(ROOT, Path(scratch), chosen, locked=False)
        subprocess.run(["cargo", "generate-lockfile"], cwd=target, check=True)
        (ROOT / chosen.lock).write_bytes((target / "Cargo.lock").read_bytes())
    print(f"wrote {chosen.lock}")


def other() -> None:
    """Prints the release CI tests besides the default, the next one in turn for each commit."""
    table = releases.load(ROOT)
    others = [m for m in releases.minors(table) if m != table["default"]]
    count = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(others[int(count or 0) % len(others)])


def main(argv: list[str]) -> int:
    """Runs a command; returns the exit status."""
    if not argv:
        raise SystemExit(__doc__)
    command, args = argv[0], argv[1:]
    try:
        if command == "patch" and len(args) == 1:
            print(releases.resolve(releases.load(ROOT), args[0]).torch)
        elif command == "list" and not args:
            print(" ".join(releases.minors(releases.load(ROOT))))
        elif command == "other" and not args:
            other()
        elif command == "cargo":
            return cargo(*args)
        elif command == "lock" and len(args) == 1:
            lock(args[0])
        else:
            raise SystemExit(__doc__)
    except releases.Unsupported as err:
        raise BuildRefused(str(err)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
