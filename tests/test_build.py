"""The build backend: which release a torch selects, the pinned sources, and its early refusals."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib
import torch
from jacobian_build import build, releases, sources, torch_env

# The build tools (cargo, a C++ compiler, crates.io) are a developer's, not a user's: the GPU
# check, on a machine without them, leaves these tests out (`-m "not build"`).
pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parent.parent
TABLE = releases.load(ROOT)
MINORS = releases.minors(TABLE)


def row(minor: str) -> dict:
    """releases.toml's entry for a minor release."""
    return TABLE["torch"][minor]


@pytest.mark.parametrize("minor", MINORS)
def test_every_patch_release_of_a_supported_minor_selects_its_row(minor):
    entry = row(minor)
    major, number = (int(p) for p in minor.split("."))
    for version in (minor, entry["torch"], entry["torch"] + "+cpu", entry["torch"] + "+cu128"):
        release = releases.resolve(TABLE, version)
        assert (release.minor, release.tch, release.pyo3) == (minor, entry["tch"], entry["pyo3"])
        assert release.torch == entry["torch"]
        assert release.patch == entry.get("patch")
        assert release.cxx == entry.get("cxx", "c++17")
        assert release.bypass == bool(entry.get("bypass"))
        assert release.requirement == f"torch>={major}.{number},<{major}.{number + 1}"
        assert (ROOT / release.lock).is_file()
        if release.patch:
            assert (ROOT / "patches" / f"{release.patch}.patch").is_file()
    # Another patch release than tch was generated for builds with tch's check bypassed.
    other = releases.resolve(TABLE, f"{minor}.9")
    assert (other.torch, other.bypass, other.tch) == (f"{minor}.9", True, entry["tch"])


def test_the_default_release_is_a_row_and_cxx20_starts_at_2_14():
    assert TABLE["default"] in MINORS
    assert releases.resolve(TABLE, "default").minor == TABLE["default"]
    for minor in MINORS:
        needs_cxx20 = releases.version_key(minor) >= (2, 14)
        assert (releases.resolve(TABLE, minor).cxx == "c++20") == needs_cxx20, minor


@pytest.mark.parametrize(
    "version", ["2.4.1", "2.4.1+cu121", "2.16.0", "3.0.0", "2.16.0.dev20261201", "2.15.0rc1"]
)
def test_a_torch_outside_the_table_is_refused_naming_the_supported_releases(version):
    with pytest.raises(releases.Unsupported) as raised:
        releases.resolve(TABLE, version)
    message = str(raised.value)
    assert f"torch {version} is not supported" in message
    assert f"{MINORS[0]} to {MINORS[-1]} ({', '.join(MINORS)})" in message


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's build files alone, as an sdist holds them."""
    copy = tmp_path_factory.mktemp("sources")
    for relative in sources.build_files(ROOT):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, copy / relative)
    return copy


def test_the_build_files_are_the_sources_the_build_reads_and_nothing_else(source_copy):
    files = set(sources.build_files(ROOT))
    for needed in ("Cargo.toml", "build.rs", "csrc/engine.cpp", "releases.toml",
                   "pyproject.toml", "python/jacobian/__init__.py", "python/jacobian/py.typed",
                   "python/jacobian/_native.pyi", "src/lib.rs", "tests/native.rs",
                   "build_backend/jacobian_build/__init__.py", "README.md", "LICENSE"):  # fmt: skip
        assert needed in files
    assert {f"locks/{p.name}" for p in (ROOT / "locks").glob("*.lock")} <= files
    assert {f"patches/{p.name}" for p in (ROOT / "patches").glob("*.patch")} <= files
    assert not [f for f in files if f.startswith(("docs/", "experiments/", "benchmarks/"))]
    assert not [f for f in files if f.endswith(".so") or "__pycache__" in f]
    held = {p.relative_to(source_copy).as_posix() for p in source_copy.rglob("*") if p.is_file()}
    assert held == files


@pytest.mark.parametrize("minor", MINORS)
def test_pinned_sources_name_the_release_crates_lock_patch_and_requirement(
    minor, source_copy, tmp_path
):
    release = releases.resolve(TABLE, minor)
    pinned = sources.pin(source_copy, tmp_path / "src", release)
    manifest = tomllib.loads((pinned / "Cargo.toml").read_text())
    for crate in sources.TCH_CRATES:
        assert manifest["dependencies"][crate] == f"={release.tch}"
    assert manifest["dependencies"]["pyo3"]["version"] == release.pyo3
    assert manifest["build-dependencies"]["pyo3-build-config"] == release.pyo3
    patched = manifest.get("patch", {}).get("crates-io", {})
    assert patched == ({"torch-sys": {"path": "vendor/torch-sys"}} if release.patch else {})
    project = tomllib.loads((pinned / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == [release.requirement]
    assert project["dynamic"] == ["version"]
    assert (pinned / "Cargo.lock").read_bytes() == (ROOT / release.lock).read_bytes()
    env = tomllib.loads((pinned / ".cargo" / "config.toml").read_text())["env"]
    assert env["JACOBIAN_CXX_STANDARD"] == release.cxx
    assert env["LIBTORCH_USE_PYTORCH"] == "1"
    assert ("LIBTORCH_BYPASS_VERSION_CHECK" in env) == release.bypass
    assert (pinned / "vendor" / "torch-sys" / "Cargo.toml").is_file() == bool(release.patch)
    # The lock file is the one for exactly these crates: cargo accepts it without resolving.
    metadata = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        cwd=pinned, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert metadata.returncode == 0, metadata.stderr
    versions = {p["name"]: p["version"] for p in json.loads(metadata.stdout)["packages"]}
    assert versions["tch"] == versions["torch-sys"] == versions["pyo3-tch"] == release.tch
    assert versions["pyo3"].startswith(release.pyo3 + ".")


def test_refreshing_pinned_sources_rewrites_only_what_changed(source_copy, tmp_path):
    # cargo rebuilds files newer than its last build: untouched files must keep their times.
    source = tmp_path / "source"
    shutil.copytree(source_copy, source)
    release = releases.resolve(TABLE, "default")
    pinned = sources.pin(source, tmp_path / "src", release)
    times = {p: p.stat().st_mtime_ns for p in pinned.rglob("*") if p.is_file()}
    (pinned / "stale.rs").write_text("// left over from an older tree\n")
    (source / "src" / "lib.rs").write_text((source / "src" / "lib.rs").read_text() + "\n")
    os.utime(source / "src" / "lib.rs", ns=(1, 1))  # an old time, as an sdist's may be
    sources.pin(source, pinned, release)
    changed = {p for p, t in times.items() if p.stat().st_mtime_ns != t}
    assert changed == {pinned / "src" / "lib.rs"}
    assert (pinned / "src" / "lib.rs").stat().st_mtime_ns > 1
    assert not (pinned / "stale.rs").exists()


PIP_SITECUSTOMIZE = """
import os, site, sys
original = sys.path[:]
known = set()
for path in {system_sites!r}:
    site.addsitedir(path, known_paths=known)
system = set(os.path.normcase(p) for p in sys.path[len(original):])
sys.path = [p for p in original if os.path.normcase(p) not in system]
"""


def pip_isolation(tmp_path: Path) -> dict[str, str]:
    """The environment pip's build isolation gives a backend (pip/_internal/build_env.py)."""
    site_dir = tmp_path / "pip-build-env-test" / "site"
    site_dir.mkdir(parents=True)
    (site_dir / "sitecustomize.py").write_text(
        PIP_SITECUSTOMIZE.format(system_sites=site.getsitepackages())
    )
    return {**os.environ, "PYTHONPATH": str(site_dir), "PYTHONNOUSERSITE": "1"}


def test_torch_is_found_through_pip_build_isolation(tmp_path, monkeypatch):
    isolated = pip_isolation(tmp_path)
    hidden = subprocess.run(
        [sys.executable, "-c", "import torch"], env=isolated, capture_output=True, text=True
    )
    assert "No module named 'torch'" in hidden.stderr  # the isolation is real
    for name in ("PYTHONPATH", "PYTHONNOUSERSITE"):
        monkeypatch.setenv(name, isolated[name])
    found = torch_env.find(sys.executable)
    assert found.version == torch.__version__
    assert found.directory == Path(torch.__file__).parent
    assert found.cxx11_abi == bool(torch._C._GLIBCXX_USE_CXX11_ABI)
    # torch-sys and build.rs ask `python`/`python3` on PATH: the shims are this interpreter,
    # without the isolation.
    shims = build.python_shims(tmp_path / "bin", found)
    for name in ("python", "python3"):
        answer = subprocess.run(
            [shims / name, "-c", "import sys, torch; print(sys.executable, torch.__version__)"],
            env=isolated, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert answer.stdout.split() == [sys.executable, torch.__version__]


def test_user_pythonpath_entries_survive_and_pip_entries_go(tmp_path):
    isolated = pip_isolation(tmp_path)
    mine = str(tmp_path / "mine")
    env = torch_env.user_environment(
        {**isolated, "PYTHONPATH": os.pathsep.join([isolated["PYTHONPATH"], mine])}
    )
    assert env["PYTHONPATH"] == mine
    assert "PYTHONNOUSERSITE" not in env
    # Without pip's overlay nothing is touched, not even a user's own PYTHONNOUSERSITE.
    assert torch_env.user_environment({"PYTHONNOUSERSITE": "1"}) == {"PYTHONNOUSERSITE": "1"}


# --- Refusals, through the PEP 517 hooks as pip and uv call them -------------------------------


def bare_venv(path: Path) -> Path:
    """A virtual environment without torch (or anything else); returns its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    return path / "bin" / "python"


def fake_torch(path: Path, version: str) -> Path:
    """A directory holding a module named torch that reports ``version``."""
    package = path / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"__version__ = {version!r}\nclass _C:\n    _GLIBCXX_USE_CXX11_ABI = True\n"
    )
    return path


def call_hook(python: Path, env: dict[str, str], tmp_path: Path) -> str:
    """Runs prepare_metadata_for_build_wheel as an installer does; returns what it printed.

    The hook must fail: the text is the reason the user sees.
    """
    out: list[str] = []

    def runner(cmd, cwd=None, extra_environ=None):
        result = subprocess.run(
            cmd, cwd=cwd, env={**env, **(extra_environ or {})},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        out.append(result.stdout + result.stderr)
        result.check_returncode()

    from pyproject_hooks import BuildBackendHookCaller  # a build tool: imported where used

    hooks = BuildBackendHookCaller(
        str(ROOT), "jacobian_build", backend_path=["build_backend"],
        runner=runner, python_executable=str(python),
    )  # fmt: skip
    with pytest.raises(subprocess.CalledProcessError):
        hooks.prepare_metadata_for_build_wheel(str(tmp_path / "metadata"))
    # Refused before any build began: nothing was pinned or compiled.
    assert not (tmp_path / "builds").exists()
    return out[-1]


def hook_env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    """The environment of a hook call, building into tmp_path/builds."""
    env = {**os.environ, "JACOBIAN_BUILD_DIR": str(tmp_path / "builds")}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_no_torch_says_to_install_it_first_and_names_no_build_isolation(tmp_path):
    python = bare_venv(tmp_path / "venv")
    said = call_hook(python, hook_env(tmp_path, PYTHONPATH=None), tmp_path)
    assert f"no torch in the Python environment being installed into ({python})" in said
    assert "install torch there first" in said
    assert "--no-build-isolation" in said
    assert "Traceback" not in said


def test_no_torch_in_uv_build_environment_says_to_build_without_isolation(tmp_path):
    # uv builds in a venv of its own under its cache's builds-v0/, with UV set.
    python = bare_venv(tmp_path / "builds-v0" / ".tmpAbC")
    said = call_hook(python, hook_env(tmp_path, PYTHONPATH=None, UV="/usr/bin/uv"), tmp_path)
    assert "uv builds in an isolated environment of its own" in said
    assert "uv pip install --no-build-isolation" in said


@pytest.mark.parametrize("version", ["2.4.1+cu121", "2.16.0"])
def test_unsupported_torch_names_the_supported_releases(version, tmp_path):
    python = bare_venv(tmp_path / "venv")
    found = fake_torch(tmp_path / "site", version)
    said = call_hook(python, hook_env(tmp_path, PYTHONPATH=str(found)), tmp_path)
    assert f"torch {version} is not supported" in said
    assert f"builds against torch {MINORS[0]} to {MINORS[-1]}" in said


def tool_dir(tmp_path: Path, *names: str) -> str:
    """A PATH of one directory holding links to the named programs only."""
    directory = tmp_path / "tools"
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).symlink_to(shutil.which(name))
    return str(directory)


def test_no_cargo_says_to_install_rust(tmp_path):
    path = tool_dir(tmp_path, "c++", "patch")
    said = call_hook(Path(sys.executable), hook_env(tmp_path, PATH=path), tmp_path)
    assert "cargo (Rust) is not on PATH" in said
    assert "rustup" in said


def test_a_compiler_too_old_for_torchs_headers_is_named_with_the_fix(tmp_path):
    # A compiler that predates the standard this torch's headers need, as g++ 9 knows no
    # -std=c++20 (and g++ 4 no -std=c++17).
    release = releases.resolve(TABLE, torch.__version__)
    old = tmp_path / "g++-old"
    old.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        case "$*" in
          *--version*) echo "g++-old (Debian 9.3.0-22) 9.3.0"; exit 0 ;;
          *-std={release.cxx}*)
            echo "g++: error: unrecognized command-line option '-std={release.cxx}'" >&2
            exit 1 ;;
        esac
        exec c++ "$@"
        """)
    )
    old.chmod(0o755)
    said = call_hook(Path(sys.executable), hook_env(tmp_path, CXX=str(old)), tmp_path)
    assert "the C++ compiler (g++-old (Debian 9.3.0-22) 9.3.0) cannot compile torch" in said
    assert f"as {release.cxx.upper()}, which torch {release.minor} needs" in said
    assert "g++ 10 or later" in said
    assert f"unrecognized command-line option '-std={release.cxx}'" in said


def test_no_compiler_says_to_install_one(tmp_path):
    said = call_hook(
        Path(sys.executable), hook_env(tmp_path, CXX="no-such-compiler-here"), tmp_path
    )
    assert "no C++ compiler ('no-such-compiler-here' is not on PATH)" in said
    assert "install g++" in said


@pytest.mark.skipif(
    not releases.resolve(TABLE, torch.__version__).patch,
    reason=f"torch {torch.__version__}'s torch-sys is not patched, so `patch` is not needed",
)
def test_no_patch_program_where_torch_sys_is_patched_says_to_install_it(tmp_path):
    path = tool_dir(tmp_path, "cargo", "c++")
    said = call_hook(Path(sys.executable), hook_env(tmp_path, PATH=path), tmp_path)
    assert "applied with the `patch` program, which is not on PATH" in said
