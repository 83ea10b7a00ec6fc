"""What torch integration costs: a compiled JR step against an eager one, and the per-call checks.

``python -m benchmarks.interop [--quick]`` prints, measured side by side in one process
(interleaved blocks, medians and ranges of paired ratios):

- a training step with the regularizer, eager and under ``torch.compile`` (aot_eager and
  inductor), after compilation, whose one-off time is printed separately;
- the cost on plain tensors of the ``__torch_function__`` check the public functions make
  (``jacobian_reg`` against the same call without it), and of the graph walk that looks for a
  torch.compile'd function between y and x.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from jacobian import JacobianReg, _calls, _native
from jacobian.functional import jacobian_reg
from torch import nn

from benchmarks.models import mnist_mlp, tiny
from benchmarks.timing import interleaved, ratio_summary


def _step(
    model: nn.Module, reg: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> Callable[[], None]:
    """One training step on (x, target): cross-entropy plus 0.01 times the regularizer."""

    def step() -> None:
        data = x.detach().requires_grad_()
        output = model(data)
        loss = nn.functional.cross_entropy(output, target) + 0.01 * reg(data, output)
        loss.backward()

    return step


def compiled_rows(reps: int, block: float) -> list[str]:
    """A JR training step (MNIST MLP, batch 64, n=1), eager and compiled."""
    torch.manual_seed(0)
    model = mnist_mlp()
    x, target = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    reg = JacobianReg(n=1)
    eager = _step(model, reg, x, target)
    steps = {"eager": eager}
    lines = []
    for backend in ("aot_eager", "inductor"):
        compiled = torch.compile(eager, backend=backend)
        start = time.perf_counter()
        compiled()
        lines.append(f"  first call with {backend}: {time.perf_counter() - start:.1f} s (compiles)")
        steps[backend] = compiled
    times = interleaved(steps, torch.device("cpu"), reps, block)
    base = sorted(times["eager"])[len(times["eager"]) // 2]
    lines.append(f"  eager: {base * 1e3:.2f} ms per step")
    for backend in ("aot_eager", "inductor"):
        ratio = ratio_summary(times[backend], times["eager"])
        median = sorted(times[backend])[len(times[backend]) // 2]
        lines.append(
            f"  {backend}: {median * 1e3:.2f} ms per step, {ratio['median']:.2f}x eager "
            f"(range {ratio['min']:.2f}-{ratio['max']:.2f})"
        )
    return lines


def call_rows(reps: int, block: float) -> list[str]:
    """Per-call costs on plain tensors, on a tiny model where they show most."""
    torch.manual_seed(0)
    model = tiny()
    x = torch.randn(8, 8, requires_grad=True)
    y = model(x)
    direct = lambda: _calls.frobenius_sq(x, y, 1, "sphere", "mean", 0.5)  # noqa: E731
    public = lambda: jacobian_reg(x, y, 1)  # noqa: E731
    scan = lambda: _native.compiled_function_between(x, y)  # noqa: E731
    times = interleaved({"direct": direct, "public": public}, torch.device("cpu"), reps, block)
    scan_times = interleaved({"scan": scan}, torch.device("cpu"), reps, block)["scan"]
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    ratio = ratio_summary(times["public"], times["direct"])
    return [
        "  jacobian_reg (with the __torch_function__ check): "
        f"{median(times['public']) * 1e6:.1f} us",
        f"  the same call without the check: {median(times['direct']) * 1e6:.1f} us "
        f"(ratio {ratio['median']:.3f}, range {ratio['min']:.3f}-{ratio['max']:.3f})",
        f"  graph walk for a compiled function (8 nodes): {median(scan_times) * 1e6:.2f} us",
    ]


def main(argv: list[str] | None = None) -> None:
    """Prints the figures (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repetitions")
    args = parser.parse_args(argv)
    reps, block = (5, 0.2) if args.quick else (15, 0.5)
    # One thread: the figures are ratios of neighbouring blocks, which other load on a shared
    # machine disturbs least when no step waits on a second core.
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU")
    print("A training step with the regularizer (MNIST MLP, batch 64, n=1):")
    print("\n".join(compiled_rows(reps, block)))
    print("Per call on plain tensors (8 -> 16 -> 4 MLP, batch 8, n=1, gradients enabled):")
    print("\n".join(call_rows(reps, block)))


if __name__ == "__main__":
    main()
