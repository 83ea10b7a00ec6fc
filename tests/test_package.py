"""The installed package: its metadata, its torch pin and where it is imported from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import jacobian
import pytest
import tomllib
import torch
from jacobian import _native
from jacobian._torch_pin import REQUIRED_TORCH, check_torch_version

ROOT = Path(__file__).resolve().parent.parent


def editable_install() -> bool:
    """Whether `make dev` (maturin develop) installed the package editable, from python/."""
    direct_url = json.loads(
        metadata.distribution("jacobian-reg").read_text("direct_url.json") or "{}"
    )
    return bool(direct_url.get("dir_info", {}).get("editable"))


def test_tests_run_against_the_installed_wheel():
    if editable_install():
        pytest.skip("installed editable by `make dev`; `make test` installs the wheel")
    assert "site-packages" in Path(jacobian.__file__).parts
    assert (Path(jacobian.__file__).parent / "py.typed").is_file()
    assert (Path(jacobian.__file__).parent / "_native.pyi").is_file()


def test_version_comes_from_the_crate():
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert jacobian.__version__ == cargo["package"]["version"]
    assert metadata.version("jacobian-reg") == jacobian.__version__
    assert set(jacobian.__all__) == {
        "JacobianReg",
        "JacobianSpectralReg",
        "__version__",
        "jacobian_norm",
        "spectral_norm",
    }
    assert all(hasattr(jacobian, name) for name in jacobian.__all__)


def test_installed_wheel_pins_the_torch_it_was_built_for():
    requires = metadata.requires("jacobian-reg") or []
    assert f"torch=={REQUIRED_TORCH}" in requires
    assert _native.TORCH_VERSION == REQUIRED_TORCH
    assert torch.__version__.split("+")[0] == REQUIRED_TORCH


def test_sources_pin_the_default_release_and_list_the_others():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch==")]
    default = pin.removeprefix("torch==")
    assert re.search(
        rf"^torch=={re.escape(default)}$", (ROOT / "requirements-dev.txt").read_text(), re.M
    )
    assert f'JACOBIAN_TORCH_VERSION = "{default}"' in (ROOT / ".cargo" / "config.toml").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert f"DEFAULT_TORCH := {default}" in makefile
    # A wheel for another release (`make TORCH=... test`) is built from a copy pinned to it.
    assert f"TCH_{REQUIRED_TORCH} := " in makefile
    assert (
        REQUIRED_TORCH == default
        or (ROOT / "locks" / f"Cargo-torch{REQUIRED_TORCH}.lock").is_file()
    )


def test_other_torch_release_raises_import_error():
    check_torch_version(f"{REQUIRED_TORCH}+cu130")
    other = "2.12.0" if REQUIRED_TORCH != "2.12.0" else "2.10.0"
    pinned = re.escape(REQUIRED_TORCH)
    expected = rf"built against torch {pinned}, but torch {re.escape(other)}\+cpu is installed.*"
    with pytest.raises(ImportError, match=expected + rf"pip install torch=={pinned}"):
        check_torch_version(f"{other}+cpu")


def other_release_wheels() -> list[Path]:
    """Wheels this checkout built for the other supported torch releases (`make TORCH=... wheel`).

    Only releases the Makefile still supports count; `make wheel` replaces a release's wheel, so
    each is the newest build for its release.
    """
    supported = re.findall(r"^TCH_(\S+) := ", (ROOT / "Makefile").read_text(), re.M)
    return [
        wheel
        for release in supported
        if release != REQUIRED_TORCH
        for wheel in (ROOT / "dist" / f"torch{release}").glob("jacobian_reg-*.whl")
    ]


@pytest.mark.skipif(
    not other_release_wheels(),
    reason="no wheel for another torch release in dist/ (CI builds both: the second run has one)",
)
@pytest.mark.parametrize("wheel", other_release_wheels(), ids=lambda w: w.parent.name)
def test_wheel_for_another_release_raises_import_error_not_a_crash(wheel, tmp_path):
    # Install the other release's wheel beside this torch, where it shadows ours, and import it.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--disable-pip-version-check", "--target", str(tmp_path), str(wheel)],
        check=True,
        timeout=120,
    )  # fmt: skip
    script = (
        "import torch\n"
        "try:\n"
        "    import jacobian\n"
        "except ImportError as err:\n"
        "    print(err)\n"
        "    raise SystemExit(0)\n"
        "raise SystemExit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built_for = wheel.parent.name.removeprefix("torch")
    assert f"built against torch {built_for}, but torch {torch.__version__} is installed" in (
        result.stdout
    )
    assert f"pip install torch=={built_for}" in result.stdout
