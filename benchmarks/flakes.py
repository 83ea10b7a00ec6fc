"""Reruns tests many times, optionally under extra load, to show they do not flake: `make flakes`.

``python -m benchmarks.flakes --runs 50 -k ddp`` reruns the DDP test 50 times;
``python -m benchmarks.flakes --runs 10 --load 3`` reruns the whole suite 10 times while 3 busy
processes compete for the cores. Stops at the first failure. Each run's outcome, duration and
load average go to ``benchmarks/results/flakes-<name>.json``, which docs/reliability.md reports.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def busy() -> None:
    """Spins forever: one process's worth of load."""
    while True:
        pass


def run_once(pytest_args: list[str], timeout: float) -> tuple[bool, float, str]:
    """One pytest run: whether it passed, its wall time, and the tail of its output."""
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        passed, tail = out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    except subprocess.TimeoutExpired as err:
        passed, tail = False, f"timed out after {timeout} s: {err}"
    return passed, time.perf_counter() - start, tail


def main(argv: list[str] | None = None) -> dict:
    """Runs, records, and returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--load", type=int, default=0, help="busy processes to run alongside")
    parser.add_argument("--name", default=None, help="result name (default: from -k, or suite)")
    parser.add_argument("-k", default=None, help="pytest -k expression (default: whole suite)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    args = parser.parse_args(argv)
    pytest_args = ["-k", args.k] if args.k else []
    name = args.name or (args.k.replace(" ", "_") if args.k else "suite")
    loaders = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.load)]
    for loader in loaders:
        loader.start()
    runs = []
    try:
        for index in range(args.runs):
            passed, seconds, tail = run_once(pytest_args, args.timeout)
            load = os.getloadavg()[0]
            runs.append({"passed": passed, "seconds": round(seconds, 1), "load": round(load, 2)})
            print(f"run {index + 1}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s, "
                  f"load {load:.1f}", flush=True)  # fmt: skip
            if not passed:
                print(tail, flush=True)
                break
    finally:
        for loader in loaders:
            loader.terminate()
    consecutive = 0
    while consecutive < len(runs) and runs[consecutive]["passed"]:
        consecutive += 1
    record = {
        "pytest_args": pytest_args,
        "busy_processes": args.load,
        "cores": os.cpu_count(),
        "runs": runs,
        "consecutive_passes": consecutive,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"flakes-{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    sys.exit(0 if all(run["passed"] for run in main()["runs"]) else 1)
