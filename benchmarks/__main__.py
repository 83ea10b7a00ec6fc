"""Runs the benchmarks and writes JSON and a Markdown table: ``python -m benchmarks [--quick]``.

Times, in one process with interleaved repetitions, a full training step without a regularizer,
with the pure-PyTorch reference of the upstream algorithm (``tests/reference.py``) and with ours;
the exact norm under ``torch.no_grad()`` for logging; the per-call overhead on a tiny model; and,
in child processes, the peak memory of each variant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import jacobian
import torch

from benchmarks import page
from benchmarks.models import CONFIGS
from benchmarks.steps import VARIANTS, bare_call, evaluation_step, failing_call, training_step
from benchmarks.timing import interleaved, ratio_summary

EVAL_CONFIGS = [0, 3]  # the MLP and LeNet-5


def thread_counts() -> list[int]:
    """One thread, and all cores when there are more."""
    cores = os.cpu_count() or 1
    return [1] if cores == 1 else [1, cores]


def step_rows(device: torch.device, reps: int, block: float) -> list[dict]:
    """Training-step times of every configuration, variant and thread count."""
    rows = []
    for threads in thread_counts() if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for config in CONFIGS:
            model, x, target = config.batch(device)
            steps = {v: training_step(v, model, x, target, config.n) for v in VARIANTS}
            times = interleaved(steps, device, reps, block)
            rows.append(
                {
                    "config": config.name,
                    "threads": threads,
                    "ms": {v: 1e3 * statistics.median(t) for v, t in times.items()},
                    "ours_over_reference": ratio_summary(times["ours"], times["reference"]),
                    "floor_over_reference": ratio_summary(times["floor"], times["reference"]),
                    "ours_over_plain": ratio_summary(times["ours"], times["plain"]),
                    "params_over_ours": ratio_summary(times["ours_params"], times["ours"]),
                }
            )
            print(format_step_row(rows[-1]), flush=True)
    return rows


def format_step_row(row: dict) -> str:
    """One line of progress."""
    ratio = row["ours_over_reference"]
    return (
        f"{row['config']:<34} threads={row['threads']}  plain {row['ms']['plain']:7.3f} ms  "
        f"reference {row['ms']['reference']:7.3f} ms  ours {row['ms']['ours']:7.3f} ms  "
        f"ours/ref {ratio['median']:.3f} [{ratio['min']:.3f}-{ratio['max']:.3f}]"
    )


def evaluation_rows(device: torch.device, reps: int, block: float) -> list[dict]:
    """The exact norm computed under no_grad for logging, ours against the reference."""
    torch.set_num_threads(thread_counts()[-1] if device.type == "cpu" else torch.get_num_threads())
    rows = []
    for index in EVAL_CONFIGS:
        config = CONFIGS[index]
        model, x, _ = config.batch(device)
        steps = {v: evaluation_step(v, model, x) for v in ("reference", "ours")}
        times = interleaved(steps, device, reps, block)
        speedup = ratio_summary(times["reference"], times["ours"])
        rows.append(
            {
                "config": config.name.replace("n=1", "n=-1"),
                "ms": {v: 1e3 * statistics.median(t) for v, t in times.items()},
                "reference_over_ours": speedup,
            }
        )
        print(f"eval {rows[-1]['config']:<34} reference/ours {speedup['median']:.2f}", flush=True)
    return rows


def overhead_row(device: torch.device, reps: int, block: float) -> dict:
    """Per-call cost on the tiny model: ours against the bare autograd work, in microseconds."""
    torch.set_num_threads(1)
    tiny = CONFIGS[-1]
    model, x, _ = tiny.batch(device)
    data = x.detach().requires_grad_(True)
    output = model(data)
    empty = data[:0]
    empty_output = model(empty)
    reg = jacobian.JacobianReg()
    calls = {
        "ours": lambda: reg(data, output),
        "bare": lambda: bare_call(data, output),
        "ours_empty_batch": lambda: reg(empty, empty_output),
        # The same four ops the native module runs on an empty batch, called from Python.
        "python_empty_batch": lambda: empty_output.reshape(0, 4).sum(1).sum() * 0.0,
    }
    times = interleaved(calls, device, reps, block)
    us = {name: 1e6 * statistics.median(t) for name, t in times.items()}
    row = {
        "us": us,
        "ours_minus_bare_us": us["ours"] - us["bare"],
        "boundary_us": us["ours_empty_batch"] - us["python_empty_batch"],
    }
    print(
        f"tiny model: ours {us['ours']:.1f} us, bare autograd {us['bare']:.1f} us, "
        f"difference {row['ours_minus_bare_us']:+.1f} us; wrapper+FFI on an empty batch "
        f"{row['boundary_us']:+.1f} us",
        flush=True,
    )
    return row


def error_row(device: torch.device, reps: int, block: float) -> dict:
    """The cost of a call that fails inside libtorch's engine, ours against the reference's."""
    torch.set_num_threads(1)
    model, x, _ = CONFIGS[-1].batch(device)
    calls = {v: failing_call(v, model, x) for v in ("reference", "ours")}
    times = interleaved(calls, device, reps, block)
    row = {"us": {name: 1e6 * statistics.median(t) for name, t in times.items()}}
    print(
        f"failing call: ours {row['us']['ours']:.1f} us, reference {row['us']['reference']:.1f} us",
        flush=True,
    )
    return row


def memory_rows(device: torch.device) -> list[dict]:
    """Peak memory per variant, each measured in a fresh child process."""
    rows = []
    root = Path(__file__).resolve().parent.parent
    for index, config in enumerate(CONFIGS):
        peaks: dict[str, float] = {}
        for variant in ("plain", "reference", "ours"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", str(index), variant, str(device)],
                capture_output=True,
                text=True,
                cwd=root,
            )
            if out.returncode != 0:
                # One failing child must not cost the timings measured before it: report it, go on.
                print(f"memory {config.name} {variant} failed:\n{out.stderr}", flush=True)
                peaks[variant] = math.nan
                continue
            peaks[variant] = float(out.stdout.strip().splitlines()[-1])
        rows.append({"config": config.name, "peak_mib": peaks})
        print(
            f"memory {config.name:<34} " + "  ".join(f"{v} {p:7.2f} MiB" for v, p in peaks.items()),
            flush=True,
        )
    return rows


def machine(device: torch.device) -> str:
    """A one-line description of where the figures come from."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> dict:
    """Runs everything; writes ``<out>/<device>.json`` and ``.md``, and the docs page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--block", type=float, default=0.05, help="seconds per timed block")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few, short blocks")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory children")
    parser.add_argument("--out", type=Path, default=page.RESULTS)
    args = parser.parse_args(argv)
    reps, block = (3, 0.005) if args.quick else (args.reps, args.block)
    device = torch.device(args.device)
    steps = step_rows(device, reps, block)
    ratios = [row["ours_over_reference"]["median"] for row in steps]
    result = {
        "machine": machine(device),
        "jacobian": jacobian.__version__,
        "reps": reps,
        "block_seconds": block,
        "steps": steps,
        "geomean_ours_over_reference": math.exp(statistics.fmean(math.log(r) for r in ratios)),
        "worst_ours_over_reference": max(ratios),
        "evaluation": evaluation_rows(device, reps, block),
        "overhead": overhead_row(device, reps, block),
        "error": error_row(device, reps, block),
        "memory": [] if args.no_memory else memory_rows(device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick-" + device.type if args.quick else device.type
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nGeometric mean ours/reference: {result['geomean_ours_over_reference']:.3f}")
    print(f"Wrote {args.out / name}.json")
    if args.out.resolve() == page.RESULTS.resolve():
        if not args.quick:
            print(f"Wrote {page.write()}")
    else:  # elsewhere (the GPU check's folder), the tables go beside the JSON
        (args.out / f"{name}.md").write_text(page.device_section(device.type, result))
    return result


if __name__ == "__main__":
    main()
