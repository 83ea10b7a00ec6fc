"""The installed package: its metadata, its torch pin and where it is imported from."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import jacobian
import pytest
import tomllib
import torch
from jacobian import _native
from jacobian._torch_pin import REQUIRED_TORCH, check_torch_version

ROOT = Path(__file__).resolve().parent.parent


def test_tests_run_against_the_installed_wheel():
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


def test_torch_pin_is_consistent():
    requires = metadata.requires("jacobian-reg") or []
    assert f"torch=={REQUIRED_TORCH}" in requires
    assert _native.TORCH_VERSION == REQUIRED_TORCH
    assert torch.__version__.split("+")[0] == REQUIRED_TORCH
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"torch=={REQUIRED_TORCH}" in pyproject["project"]["dependencies"]
    assert re.search(
        rf"^torch=={re.escape(REQUIRED_TORCH)}$", (ROOT / "requirements-dev.txt").read_text(), re.M
    )


def test_other_torch_release_raises_import_error():
    check_torch_version(f"{REQUIRED_TORCH}+cu130")
    expected = (
        r"built against torch 2\.13\.0, but torch 2\.11\.0\+cpu is installed.*torch==2\.13\.0"
    )
    with pytest.raises(ImportError, match=expected):
        check_torch_version("2.11.0+cpu")
