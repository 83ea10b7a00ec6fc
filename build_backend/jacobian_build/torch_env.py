"""Finds the torch of the environment a build installs into, seen through pip's build isolation.

pip runs a build backend with the target environment's own interpreter (``sys.executable``) and
hides that environment's site-packages only through a ``sitecustomize.py`` on ``PYTHONPATH``
(plus ``PYTHONNOUSERSITE=1``). Asking the same interpreter without those two variables sees the
environment as its user does, torch included. Installers that build in a separate virtual
environment (uv) leave no way back to the user's: there ``--no-build-isolation`` is the way, as
for every PyTorch extension.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jacobian_build.errors import BuildRefused

# What the build needs to know of torch; headers and libraries are found from its directory.
QUERY = """
import json, os, torch
print(json.dumps({
    "version": torch.__version__,
    "dir": os.path.dirname(torch.__file__),
    "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
}))
"""


@dataclass(frozen=True)
class Torch:
    """The torch a build compiles against.

    Attributes:
        python: The interpreter of the environment that holds it.
        version: ``torch.__version__``, such as ``"2.9.1+cu128"``.
        directory: The installed package's directory (its ``include/`` and ``lib/``).
        cxx11_abi: Whether it was built with the C++11 ABI of libstdc++.
    """

    python: str
    version: str
    directory: Path
    cxx11_abi: bool

    @property
    def tag(self) -> str:
        """The version as a directory name: one build directory per torch build."""
        return self.version.replace("+", "-")


def pip_overlay(pythonpath: str | None) -> list[str]:
    """The entries of ``PYTHONPATH`` that are pip's isolation (its ``pip-build-env-*/site``)."""
    return [
        entry
        for entry in (pythonpath or "").split(os.pathsep)
        if entry
        and Path(entry).name == "site"
        and Path(entry).parent.name.startswith("pip-build-env-")
        and (Path(entry) / "sitecustomize.py").is_file()
    ]


def user_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables with pip's build isolation taken off, if it is on."""
    env = dict(os.environ if environ is None else environ)
    overlay = pip_overlay(env.get("PYTHONPATH"))
    if overlay:
        kept = [e for e in env["PYTHONPATH"].split(os.pathsep) if e and e not in overlay]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            env.pop("PYTHONPATH")
        env.pop("PYTHONNOUSERSITE", None)
    return env


def separate_build_environment() -> str | None:
    """The installer, when this interpreter is a build environment of its own (uv's)."""
    if os.environ.get("UV") and "builds-v" in Path(sys.prefix).as_posix():
        return "uv"
    return None


def find(python: str | None = None) -> Torch:
    """The torch of the environment a build installs into.

    Args:
        python: The interpreter to ask; by default the one running the build (PEP 517's
            ``sys.executable``).

    Raises:
        BuildRefused: That environment has no torch, or torch fails to import.
    """
    python = python or sys.executable
    result = subprocess.run(
        [python, "-c", QUERY],
        capture_output=True,
        text=True,
        env=user_environment(),
        check=False,
    )
    if result.returncode == 0:
        found = json.loads(result.stdout.strip().splitlines()[-1])
        return Torch(python, found["version"], Path(found["dir"]), found["cxx11_abi"])
    if "No module named 'torch'" not in result.stderr:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise BuildRefused(f"torch is installed in {python} but fails to import:\n{tail}")
    installer = separate_build_environment()
    if installer:
        raise BuildRefused(
            f"{installer} builds in an isolated environment of its own ({sys.prefix}), which "
            "cannot see your torch, and jacobian-reg must be built against the torch it will "
            "run beside. Install the build requirements into your environment and build there: "
            f"`{installer} pip install maturin` then `{installer} pip install "
            "--no-build-isolation <this package>`."
        )
    raise BuildRefused(
        f"no torch in the Python environment being installed into ({python}). jacobian-reg is "
        "compiled against the torch installed beside it and never installs one itself: install "
        'torch there first (for example `pip install "torch==2.15.*"`), then install '
        "jacobian-reg. If torch is installed in the environment you meant, your installer "
        "built in an isolated environment that hides it: rerun with --no-build-isolation "
        "(after `pip install maturin`)."
    )
