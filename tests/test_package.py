"""The installed package: its metadata, its torch pin and where it is imported from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import jacobian
import pytest
import tomllib
import torch
from jacobian import _native
from jacobian._torch_pin import SUPPORTED, check_torch_version, minor, required_minor

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
    # Nothing else public at the top level but upstream's `name` and the submodules.
    public = {
        name
        for name, value in vars(jacobian).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(jacobian.__all__) - {"__version__"} | {"name"}
    assert jacobian.name == "jacobian"


def test_installed_wheel_pins_the_torch_minor_release_it_was_built_for():
    built_for = minor(torch.__version__)
    requires = metadata.requires("jacobian-reg") or []
    assert required_minor(requires) == built_for
    major, number = built_for.split(".")
    pins = [set(r.removeprefix("torch").split(",")) for r in requires if r.startswith("torch")]
    assert pins == [{f">={built_for}", f"<{major}.{int(number) + 1}"}]
    # The native module reports the headers it was compiled against: a patch release of this
    # venv's minor release (`make pin-check` tests wheels beside another patch release).
    assert minor(_native.TORCH_VERSION) == built_for


def table() -> dict:
    """releases.toml."""
    return tomllib.loads((ROOT / "releases.toml").read_text())


def test_the_release_table_is_the_one_source_of_the_pins():
    releases = table()
    default = releases["torch"][releases["default"]]
    # The checkout's manifest names the default release's crates; builds pin a copy of it (and
    # add the torch-sys patch) for the torch they build against (tests/test_build.py).
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    for crate in ("tch", "pyo3-tch", "torch-sys"):
        assert cargo["dependencies"][crate] == f"={default['tch']}"
    assert cargo["dependencies"]["pyo3"]["version"] == default["pyo3"]
    assert "patch" not in cargo  # vendor/ exists only in pinned copies
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "dependencies" in project["dynamic"] and "dependencies" not in project
    assert "torch" not in (ROOT / "requirements-dev.txt").read_text().split("\n# ")[0].split()
    # Every release has its lock file and, where it names one, its torch-sys patch.
    for name, entry in releases["torch"].items():
        assert entry["torch"].startswith(name + ".")
        assert (ROOT / "locks" / f"Cargo-torch{name}.lock").is_file(), name
        if entry.get("patch"):
            assert (ROOT / "patches" / f"{entry['patch']}.patch").is_file(), name
    # The ImportError names the same releases.
    assert list(SUPPORTED) == sorted(
        releases["torch"], key=lambda v: [int(p) for p in v.split(".")]
    )


def test_another_torch_release_raises_import_error_naming_both_and_the_fix():
    requires = ["torch<2.16,>=2.15", "scikit-learn>=1.3; extra == 'examples'"]
    check_torch_version("2.15.0+cu130", requires)
    check_torch_version("2.15.1", requires)  # another patch release of the same minor
    expected = (
        r"built for torch 2\.15, but torch 2\.12\.1\+cpu is installed; reinstall jacobian-reg "
        r"for torch 2\.12: from source .*--force-reinstall.*torch-2\.12"
    )
    with pytest.raises(ImportError, match=expected + r".*pip install \"torch==2\.15\.\*\""):
        check_torch_version("2.12.1+cpu", requires)
    with pytest.raises(ImportError, match=r"supports torch 2\.5 to 2\.15 \(2\.5, 2\.6"):
        check_torch_version("2.3.1", requires)
    check_torch_version("2.3.1", [])  # no metadata: nothing to check against


def other_release_wheels() -> list[Path]:
    """Wheels this checkout built for other torch minor releases (`make TORCH=... wheel`).

    `make wheel` replaces a release's wheel, so each is the newest build for its release.
    """
    ours = minor(torch.__version__)
    return [
        wheel
        for folder in sorted((ROOT / "dist").glob("torch[0-9]*"))
        if minor(folder.name.removeprefix("torch")) != ours
        for wheel in folder.glob("jacobian_reg-*.whl")
    ]


@pytest.mark.skipif(
    not other_release_wheels(),
    reason="no wheel for another torch release in dist/ (CI builds two: the second run has one)",
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
    built_for = minor(wheel.parent.name.removeprefix("torch"))
    assert f"built for torch {built_for}, but torch {torch.__version__} is installed" in (
        result.stdout
    )
    assert f'pip install "torch=={built_for}.*"' in result.stdout
