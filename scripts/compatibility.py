"""Writes docs/compatibility.md from the matrix results (scripts/matrix.sh's JSON lines).

Usage: `PYTHONPATH=build_backend python3 scripts/compatibility.py docs/compatibility.jsonl`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jacobian_build import releases

ROOT = Path(__file__).resolve().parent.parent


def page(results: str) -> None:
    """Writes docs/compatibility.md from the matrix results (one JSON object per line)."""
    table = releases.load(ROOT)
    supported = releases.minors(table)
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
        f"{supported[0]} to {supported[-1]} is built and tested from one source tree, "
        "driven by `releases.toml`. `make matrix` builds and tests each release in turn (its own "
        "venv, deleted afterwards unless `KEEP_VENVS=1`) and writes this page; CI tests the "
        "default release and one other in every run, in rotation, the other installed as users "
        "install it (`pip install .` into a venv that holds its torch). The number of tests grows "
        "with the wheels of other releases already in `dist/`: each is checked to refuse this "
        "torch with an ImportError, so a release tested later in the run has more of them.",
        "",
        "| torch | tch | how | Rust tests | pytest passed | failed | skipped | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for minor in reversed(releases.minors(table)):
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


if __name__ == "__main__":
    page(*sys.argv[1:])
