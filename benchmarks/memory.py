"""Peak memory of one training-step variant, measured in a child process of its own.

Run as ``python -m benchmarks.memory CONFIG_INDEX VARIANT DEVICE``; prints the peak, in MiB, of
tensor memory allocated during five steps above what was held before them: on the CPU from the
profiler's allocation events, on CUDA from the caching allocator's statistics.
"""

from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.models import CONFIGS
from benchmarks.steps import training_step


def cpu_peak(step: object) -> int:
    """The peak of live tensor bytes allocated while ``step`` runs five times."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(5):
            step()  # type: ignore[operator]
    # Each op reports what it allocated itself (net of its own frees); frees outside any op come
    # as "[memory]" events. Replayed in time order, they trace the live tensor memory.
    events = sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.end
    )
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    """Prints the peak memory of the variant named on the command line."""
    index, variant, device_name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    device = torch.device(device_name)
    config = CONFIGS[index]
    model, x, target = config.batch(device)
    step = training_step(variant, model, x, target, config.n)
    step()  # the optimizer and autograd state exist before measuring
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(5):
            step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = cpu_peak(step)
    print(max(peak, 0) / 2**20)


if __name__ == "__main__":
    main()
