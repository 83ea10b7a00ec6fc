"""The torch release table (releases.toml), and what the build does with it.

Usage: `python3 scripts/releases.py SUBCOMMAND ...`.

Subcommands, all driven by releases.toml:
  info RELEASE         the release's settings as make variables (`make` reads them)
  patch RELEASE        the torch patch release RELEASE builds against and installs
  list                 the supported minor releases, oldest first
  other                the release CI tests besides the default, rotating with the commit
  source RELEASE DEST  a copy of the sources pinned to RELEASE (crates, lock file, torch pin)
  vendor DEST          torch-sys from crates.io with the repository's patch applied, in DEST
  lock RELEASE DEST    resolve DEST's Cargo.lock and save it as the release's lock file
  page RESULTS         docs/compatibility.md from the matrix results (JSON lines)

RELEASE is a minor release ("2.12"), or a patch release ("2.12.0") to build against a patch
release other than the table's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "releases.toml"
# The crates whose versions a release pins: tch and its companions share tch's version.
TCH_CRATES = ("tch", "pyo3-tch", "torch-sys")


def load() -> dict:
    """The table."""
    return tomllib.loads(TABLE.read_text())


def minors(table: dict) -> list[str]:
    """Supported minor releases, oldest first."""
    return sorted(table["torch"], key=lambda v: tuple(int(p) for p in v.split(".")))


def resolve(release: str, table: dict) -> tuple[str, dict, str]:
    """(minor release, its table entry, the torch patch release to install) for RELEASE."""
    if release == "default":
        release = table["default"]
    parts = release.split(".")
    minor = ".".join(parts[:2])
    if minor not in table["torch"] or len(parts) not in (2, 3):
        raise SystemExit(
            f"torch {release} is not supported; supported releases: {', '.join(minors(table))} "
            f"(see releases.toml)"
        )
    entry = table["torch"][minor]
    return minor, entry, release if len(parts) == 3 else entry["torch"]


def lock_file(minor: str, table: dict) -> Path:
    """The committed Cargo.lock of a release: the top-level one for the default release."""
    return (
        ROOT / "Cargo.lock"
        if minor == table["default"]
        else ROOT / f"locks/Cargo-torch{minor}.lock"
    )


def requirement(minor: str) -> str:
    """The torch requirement a wheel built for ``minor`` carries."""
    major, number = (int(p) for p in minor.split("."))
    return f"torch>={major}.{number},<{major}.{number + 1}"


def info(release: str) -> None:
    """Prints make variable assignments for RELEASE."""
    table = load()
    minor, entry, torch = resolve(release, table)
    values = {
        "MINOR": minor,
        "TORCH_RELEASE": torch,
        "TCH": entry["tch"],
        "PYO3": entry["pyo3"],
        "BYPASS": "1" if entry.get("bypass") else "",
        "PATCH": entry.get("patch", ""),
        # The default release as the table has it builds in the checkout itself.
        "IN_TREE": "1" if minor == table["default"] and torch == entry["torch"] else "",
        "LOCK": str(lock_file(minor, table).relative_to(ROOT)),
    }
    for name, value in values.items():
        print(f"{name}={value}")


def pin_manifest(text: str, entry: dict) -> str:
    """Cargo.toml's text with the release's crate versions and torch-sys patch."""
    for crate in TCH_CRATES:
        text, count = re.subn(
            rf'^{crate} = "=[^"]+"', f'{crate} = "={entry["tch"]}"', text, flags=re.M
        )
        if count != 1:
            raise SystemExit(f'Cargo.toml has no single `{crate} = "=..."` line to pin')
    text = re.sub(r'^(pyo3 = \{ version = ")[^"]+', rf"\g<1>{entry['pyo3']}", text, flags=re.M)
    text = re.sub(r'^(pyo3-build-config = ")[^"]+', rf"\g<1>{entry['pyo3']}", text, flags=re.M)
    # The default release's [patch.crates-io] section is the file's last; other releases may
    # not want it.
    text = text.split("\n[patch.crates-io]")[0].rstrip() + "\n"
    if entry.get("patch"):
        text += (
            "\n[patch.crates-io]\n"
            "# torch-sys patched for this torch release (patches/, releases.toml).\n"
            'torch-sys = { path = "vendor/torch-sys" }\n'
        )
    return text


def source(release: str, dest: str) -> None:
    """Copies the checkout's files to DEST and pins the copy to RELEASE."""
    table = load()
    minor, entry, _ = resolve(release, table)
    target = Path(dest)
    if target.exists():
        shutil.rmtree(target)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    manifest = target / "Cargo.toml"
    manifest.write_text(pin_manifest(manifest.read_text(), entry))
    pyproject = target / "pyproject.toml"
    pyproject.write_text(
        re.sub(r'"torch[^"]*"', f'"{requirement(minor)}"', pyproject.read_text(), count=1)
    )
    lock = lock_file(minor, table)
    if lock.is_file():
        shutil.copy2(lock, target / "Cargo.lock")
    else:
        (target / "Cargo.lock").unlink(missing_ok=True)
    if entry.get("patch"):
        vendor(str(target / "vendor"), entry["patch"])


def vendor(dest: str, patch: str | None = None) -> None:
    """Writes torch-sys from crates.io, patched with patches/<patch>.patch, to DEST/torch-sys."""
    table = load()
    patch = patch or table["torch"][table["default"]]["patch"]
    crate, version = patch.rsplit("-", 1)
    out = Path(dest) / "torch-sys"
    stamp = out / ".patched"
    patch_file = ROOT / "patches" / f"{patch}.patch"
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
            check=True,
        )
        packages = json.loads(metadata.stdout)["packages"]
        manifest = next(p["manifest_path"] for p in packages if p["name"] == crate)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(Path(manifest).parent, out)
    subprocess.run(["patch", "-s", "-p1", "-d", str(out), "-i", str(patch_file)], check=True)
    stamp.write_text(patch_file.read_text())


def lock(release: str, dest: str) -> None:
    """Resolves DEST's lock file (a pinned copy) and saves it as the release's lock file."""
    table = load()
    minor, _, _ = resolve(release, table)
    subprocess.run(["cargo", "generate-lockfile"], cwd=dest, check=True)
    shutil.copy2(Path(dest) / "Cargo.lock", lock_file(minor, table))


def page(results: str) -> None:
    """Writes docs/compatibility.md from the matrix results (one JSON object per line)."""
    table = load()
    rows, crossed = {}, {}
    for line in Path(results).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            # The last run of a release (or of a pair of patch releases) counts.
            if record.get("built_against"):
                crossed[(record["built_against"], record["release"])] = record
            else:
                rows[record["release"]] = record
    lines = [
        "# Compatibility",
        "",
        "Every torch minor release from "
        f"{minors(table)[0]} to {minors(table)[-1]} is built and tested from one source tree, "
        "driven by `releases.toml`. `make matrix` builds and tests each release in turn (its own "
        "venv, deleted afterwards unless `KEEP_VENVS=1`) and writes this page; CI tests the "
        "default release and one other in every run, in rotation. The number of tests grows "
        "with the wheels of other releases already in `dist/`: each is checked to refuse this "
        "torch with an ImportError, so a release tested later in the run has more of them.",
        "",
        "| torch | tch | how | Rust tests | pytest passed | failed | skipped | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for minor in reversed(minors(table)):
        entry = table["torch"][minor]
        how = "patched torch-sys" if entry.get("patch") else (
            "version check bypassed" if entry.get("bypass") else "matching tch"
        )  # fmt: skip
        record = rows.get(entry["torch"])
        if record is None:
            lines.append(f"| {entry['torch']} | {entry['tch']} | {how} | not run | | | | |")
            continue
        lines.append(
            f"| {record['release']} | {entry['tch']} | {how} | {record['rust']} | "
            f"{record['passed']} | {record['failed']} | {record['skipped']} | {record['date']} |"
        )
    lines += ["", *pin_section(list(crossed.values())), ""]
    (ROOT / "docs" / "compatibility.md").write_text("\n".join(lines))


def pin_section(crossed: list[dict]) -> list[str]:
    """The results of building against one patch release and testing beside another."""
    if not crossed:
        return []
    held = all(r["status"] == 0 and r["failed"] == 0 and r["passed"] > 0 for r in crossed)
    verdict = (
        "every pair passed, so the wheels require the minor release (`torch>=X.Y,<X.Y+1`), "
        "not one patch release."
        if held
        else "a pair failed, so a wheel is only known to work beside the patch release it was "
        "built against: see its log under `~/.cache/jacobian/logs/pin-*.log`."
    )
    lines = [
        "## A wheel beside another patch release",
        "",
        "Built against one patch release and tested beside another of the same minor release "
        f"(`make pin-check`): {verdict}",
        "",
        "| built against | tested beside | pytest passed | failed | skipped | date |",
        "|---|---|---|---|---|---|",
    ]
    for r in crossed:
        lines.append(
            f"| {r['built_against']} | {r['release']} | {r['passed']} | {r['failed']} | "
            f"{r['skipped']} | {r['date']} |"
        )
    return lines


def other() -> None:
    """Prints the release CI tests besides the default.

    Each commit takes the next one in turn, so consecutive runs cover every release.
    """
    table = load()
    others = [m for m in minors(table) if m != table["default"]]
    count = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(others[int(count or 0) % len(others)])


def main(argv: list[str]) -> None:
    """Dispatches a subcommand."""
    commands = {
        "info": info,
        "source": source,
        "vendor": vendor,
        "lock": lock,
        "page": page,
        "list": lambda: print(" ".join(minors(load()))),
        "patch": lambda release: print(resolve(release, load())[2]),
        "other": other,
    }
    if not argv or argv[0] not in commands:
        raise SystemExit(__doc__)
    commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
