"""Writes docs/performance.md from the benchmarks' JSON results: ``python -m benchmarks.page``.

``python -m benchmarks`` and ``python -m benchmarks.variance`` call it after writing their results,
so the page always shows the last measurement; nothing in it is pasted by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANCE = ROOT / "docs" / "figures" / "variance.json"
PAGE = ROOT / "docs" / "performance.md"

INTRO = """\
# Performance

`make bench` (`python -m benchmarks`; not part of the test run) times, in one process with
interleaved repetitions, a full training step (forward, loss + λ·R, backward, SGD step) three
ways: without a regularizer (*plain*), with the pure-PyTorch reference of the upstream algorithm
(`tests/reference.py`) and with ours; then the exact norm computed for logging under
`torch.no_grad()`, the per-call cost on a tiny model, the cost of a call that fails inside
libtorch, and the peak tensor memory of each variant (from the profiler's allocation events, each
variant in a child process of its own). The *floor* is the estimator's bare autograd calls with
the directions drawn beforehand: the least work any implementation of it does. Ratios are
medians of paired, interleaved repetitions, with their min-max range: the range shows how noisy
the machine is. The results are in `benchmarks/results/<device>.json`; this page is generated from
them (`python -m benchmarks.page`).
"""

ADVICE = """\
## What you can do yourself

- Log the exact norm under `torch.no_grad()` (`jacobian_norm(x, y)` or `JacobianReg(n=-1)`): no
  double-backward graph is built.
- `loss.backward(inputs=list(model.parameters()))` skips accumulating the gradient of the loss
  into `data.grad`, which training does not need.
- One projection (`n=1`, the default) is enough for any reasonable batch size: the estimate's
  noise averages out over the batch, and each projection costs one more backward pass.
"""


def _steps_section(result: dict) -> list[str]:
    """The training-step table and its summary line."""
    lines = [
        "| configuration | threads | plain ms | reference ms | ours ms | ours/reference "
        "median [min-max] | floor/reference | ours/plain | `inputs=params`/ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["steps"]:
        r, p = row["ours_over_reference"], row["ours_over_plain"]
        floor, params = row["floor_over_reference"], row["params_over_ours"]
        lines.append(
            f"| {row['config']} | {row['threads']} | {row['ms']['plain']:.3f} | "
            f"{row['ms']['reference']:.3f} | {row['ms']['ours']:.3f} | "
            f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}] | {floor['median']:.3f} | "
            f"{p['median']:.2f} | {params['median']:.3f} |"
        )
    gaps = [
        row["ours_over_reference"]["median"] - row["floor_over_reference"]["median"]
        for row in result["steps"]
    ]
    lines += [
        "",
        f"Geometric mean of ours/reference: **{result['geomean_ours_over_reference']:.3f}** "
        f"(worst configuration {result['worst_ours_over_reference']:.3f}).",
    ]
    if gaps:
        lines += [
            "",
            f"Ours minus the floor, in units of the reference's step: {min(gaps):+.3f} to "
            f"{max(gaps):+.3f} over the configurations. What is left of our step is the "
            "estimator's own autograd work, which no implementation of it avoids: a faster "
            "wrapper cannot bring the ratios below the floor column.",
        ]
    return lines


def _evaluation_section(result: dict) -> list[str]:
    """The exact norm under no_grad, ours against the reference."""
    lines = [
        "| exact norm under `no_grad` | reference ms | ours ms | speed-up |",
        "|---|---|---|---|",
    ]
    for row in result["evaluation"]:
        s = row["reference_over_ours"]
        lines.append(
            f"| {row['config']} | {row['ms']['reference']:.3f} | {row['ms']['ours']:.3f} | "
            f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}] |"
        )
    return lines


def _overhead_section(result: dict) -> list[str]:
    """The per-call cost on the tiny model."""
    o = result["overhead"]
    return [
        f"Tiny model (8-16-4, B=8, n=1), one call: ours {o['us']['ours']:.1f} µs, the bare "
        f"pure-PyTorch autograd work {o['us']['bare']:.1f} µs (difference "
        f"{o['ours_minus_bare_us']:+.1f} µs); the wrapper and FFI on an empty batch "
        f"{o['boundary_us']:+.1f} µs.",
    ]


def _error_section(result: dict) -> list[str]:
    """The cost of a call that fails inside libtorch's engine."""
    if "error" not in result:
        return []
    us = result["error"]["us"]
    return [
        f"A call that fails inside libtorch's engine (a graph freed by an earlier backward), "
        f"caught: ours {us['ours']:.1f} µs, the reference's `torch.autograd.grad` "
        f"{us['reference']:.1f} µs.",
    ]


def _memory_section(result: dict) -> list[str]:
    """Peak tensor memory per variant, when it was measured."""
    if not result.get("memory"):
        return ["Peak memory was not measured in this run (`--no-memory`)."]
    lines = [
        "| peak tensor memory of a step (MiB) | plain | reference | ours |",
        "|---|---|---|---|",
    ]
    for row in result["memory"]:
        m = row["peak_mib"]
        lines.append(
            f"| {row['config']} | {m['plain']:.1f} | {m['reference']:.1f} | {m['ours']:.1f} |"
        )
    return lines


def device_section(name: str, result: dict) -> str:
    """Every table of one device's result."""
    lines = [f"## {name.upper()}", "", f"Machine: {result['machine']}.", ""]
    sections = (
        _steps_section,
        _evaluation_section,
        _overhead_section,
        _error_section,
        _memory_section,
    )
    for section in sections:
        lines += [*section(result), ""]
    return "\n".join(lines)


def variance_section(results: dict) -> str:
    """The sphere and orthogonal estimators' variances against (C - n)/(C - 1)."""
    lines = [
        "## Variance",
        "",
        "`make variance` (`python -m benchmarks.variance`) draws each estimator 500 times on the "
        "10-class MLP 64-200-200-10 over the bundled digits, untrained and trained, and compares "
        "the per-sample variances (relative to the exact value squared, averaged over 64 test "
        "images). Orthonormal directions are sampled without replacement, so their variance is "
        "lower than n independent draws by the factor (C - n)/(C - 1).",
        "",
        "| model | n | sphere | orthogonal | ratio | (C - n)/(C - 1) |",
        "|---|---|---|---|---|---|",
    ]
    for state, rows in results.items():
        for n, row in rows.items():
            lines.append(
                f"| {state} | {n} | {row['sphere']['relative_variance']:.4f} | "
                f"{row['orthogonal']['relative_variance']:.4f} | {row['ratio']:.3f} | "
                f"{row['expected_ratio']:.3f} |"
            )
    lines += ["", "![Variance of the sphere and orthogonal estimators](figures/variance.png)", ""]
    return "\n".join(lines)


def write(path: Path = PAGE) -> Path:
    """Writes the page from whatever results exist; returns its path."""
    parts = [INTRO]
    for name in ("cpu", "cuda"):
        result_path = RESULTS / f"{name}.json"
        if result_path.is_file():
            parts.append(device_section(name, json.loads(result_path.read_text())))
    if not (RESULTS / "cuda.json").is_file():
        parts.append(
            "No CUDA figures yet: the GPU check (`scripts/gpu_check.sh`, see CONTRIBUTING.md) "
            "writes `benchmarks/results/cuda.json` on a machine with a GPU.\n"
        )
    if VARIANCE.is_file():
        parts.append(variance_section(json.loads(VARIANCE.read_text())))
    parts.append(ADVICE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


if __name__ == "__main__":
    print(f"Wrote {write()}")
