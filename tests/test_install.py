"""Installing from source as users do: the sdist, a wheel built from it, uv, an editable install.

These builds share the build directory of `make` (JACOBIAN_BUILD_DIR), whose pinned sources for
this torch they leave unchanged, so cargo has nothing to recompile and each takes seconds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import torch
from jacobian_build import releases, sources

# The build tools (cargo, a C++ compiler, crates.io) are a developer's, not a user's: the GPU
# check, on a machine without them, leaves these tests out (`-m "not build"`).
pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parent.parent
RELEASE = releases.resolve(releases.load(ROOT), torch.__version__)
BUILD_DIR = os.environ.get("JACOBIAN_BUILD_DIR", str(Path.home() / ".cache/jacobian/build"))
ENV = {**os.environ, "JACOBIAN_BUILD_DIR": BUILD_DIR}
# Imported from an installation in a directory of its own, it must give the exact regularizer
# of a linear map: ||W||_F^2 / 2 (with n=-1).
CHECK = """
import sys, torch, jacobian
from jacobian import JacobianReg
print(jacobian.__file__)
lin = torch.nn.Linear(5, 3).double()
x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
r = JacobianReg(n=-1)(x, lin(x))
assert torch.allclose(r, lin.weight.pow(2).sum() / 2), (r, lin.weight.pow(2).sum() / 2)
print("ok", jacobian._native.TORCH_VERSION)
"""


def run(
    *command: str | Path, cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a command with the shared build directory; fails the test with its output."""
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env or ENV, cwd=cwd,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def import_from(directory: Path) -> str:
    """Imports jacobian installed in ``directory`` (ahead of the venv's) and checks a value."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(directory)}, cwd=directory,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist entries of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of this checkout, as `make sdist` builds it."""
    out = tmp_path_factory.mktemp("sdist")
    run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out, ROOT)
    (found,) = out.glob("jacobian_reg-*.tar.gz")
    return found


def test_the_sdist_holds_every_build_file_and_declares_its_requirements_dynamic(sdist):
    with tarfile.open(sdist) as archive:
        names = {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}
        top = archive.getmembers()[0].name.split("/", 1)[0]
        info = archive.extractfile(f"{top}/PKG-INFO").read().decode()
    assert set(sources.build_files(ROOT)) <= names
    assert not [n for n in names if n.endswith(".so") or n.startswith(("docs/", "target/"))]
    metadata = Parser().parsestr(info)
    assert metadata.get_all("Dynamic") == ["Requires-Dist"]
    assert not [r for r in metadata.get_all("Requires-Dist") or [] if r.startswith("torch")]


def test_a_wheel_built_from_the_sdist_pins_this_torch_and_works(sdist, tmp_path):
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    run(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
        "--disable-pip-version-check", "--wheel-dir", tmp_path / "wheel", unpacked)  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("jacobian_reg-*.whl")
    assert [r for r in wheel_requirements(wheel) if r.startswith("torch")] == [RELEASE.requirement]
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    said = import_from(tmp_path / "site")
    assert str(tmp_path / "site") in said
    # Compiled against this torch's headers.
    assert said.split()[-2:] == ["ok", torch.__version__.split("+")[0]]


def test_uv_without_build_isolation_builds_against_this_torch(tmp_path):
    run(sys.executable, "-m", "uv", "pip", "install", "--offline", "--no-build-isolation",
        "--no-deps", "--python", sys.executable, "--target", tmp_path / "site", ROOT)  # fmt: skip
    (dist_info,) = (tmp_path / "site").glob("jacobian_reg-*.dist-info")
    requires = Parser().parsestr((dist_info / "METADATA").read_text()).get_all("Requires-Dist")
    assert [r for r in requires if r.startswith("torch")] == [RELEASE.requirement]
    assert "ok" in import_from(tmp_path / "site")
    assert torch.__version__ == subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_an_editable_build_points_at_the_sources_python_files(tmp_path):
    # A copy of the sources, so the checkout's python/ gets no native module.
    source = tmp_path / "source"
    for relative in sources.build_files(ROOT):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, source / relative)

    def runner(cmd, cwd=None, extra_environ=None):
        run(*cmd, cwd=cwd, env={**ENV, **(extra_environ or {})})

    from pyproject_hooks import BuildBackendHookCaller  # a build tool: imported where used

    hooks = BuildBackendHookCaller(
        str(source), "jacobian_build", backend_path=["build_backend"], runner=runner,
        python_executable=sys.executable,
    )  # fmt: skip
    (tmp_path / "wheel").mkdir()
    name = hooks.build_editable(str(tmp_path / "wheel"))
    with zipfile.ZipFile(tmp_path / "wheel" / name) as archive:
        (pth,) = [n for n in archive.namelist() if n.endswith(".pth")]
        assert archive.read(pth).decode().strip() == str(source / "python")
        record = archive.read(next(n for n in archive.namelist() if n.endswith("RECORD")))
        archive.extractall(tmp_path / "site")
    # RECORD's hash of the .pth is the rewritten file's, so installers accept the wheel.
    entry = next(line for line in record.decode().splitlines() if line.startswith(pth + ","))
    content = (tmp_path / "site" / pth).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    assert entry == f"{pth},sha256={digest},{len(content)}"
    natives = list((source / "python" / "jacobian").glob("_native*.so"))
    assert len(natives) == 1
    said = import_from(source / "python")
    assert str(source / "python" / "jacobian") in said
