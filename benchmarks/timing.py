"""Interleaved timing of training steps and calls: medians and ranges of paired ratios."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

Step = Callable[[], object]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(step: Step, device: torch.device, block_seconds: float) -> int:
    """How many calls of ``step`` fill about ``block_seconds``."""
    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, round(block_seconds / once))


def interleaved(
    steps: dict[str, Step], device: torch.device, reps: int, block_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each step, one block per variant per repetition.

    The variants run in rotating order within each repetition, so drifts of the machine (clock,
    other load) hit all of them alike and ratios are taken between neighbouring blocks.
    """
    calls = min(calibrate(step, device, block_seconds) for step in steps.values())
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            step = steps[name]
            _sync(device)
            start = time.perf_counter()
            for _ in range(calls):
                step()
            _sync(device)
            times[name].append((time.perf_counter() - start) / calls)
    return times


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Median, min and max of the per-repetition ratios numerator/denominator."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
