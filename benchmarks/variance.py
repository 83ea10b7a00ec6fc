"""Variance of the sphere and orthogonal estimators: ``python -m benchmarks.variance``.

On a 10-class MLP (64-200-200-10) over the bundled digits, untrained and trained, draws each
estimator many times at n = 2, 3, 5 and compares the per-sample variances with each other and
with the finite-population factor (C - n)/(C - 1) expected for orthonormal directions. Writes a
PNG figure and JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from jacobian import JacobianReg
from torch import nn

from benchmarks import page
from experiments.data import load_digits
from experiments.models import MLP

ROOT = Path(__file__).resolve().parent.parent
NS = (2, 3, 5)


def train(model: nn.Module, epochs: int) -> None:
    """Plain cross-entropy training on the digits' training split."""
    train_set, _ = load_digits()
    loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        for x, target in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), target).backward()
            optimizer.step()


def relative_variances(model: nn.Module, x: torch.Tensor, draws: int) -> dict[str, dict]:
    """Per-sample variance of each estimator over ``draws``, relative to the exact value squared."""
    data = x.clone().requires_grad_(True)
    y = model(data)
    with torch.no_grad():
        exact = JacobianReg(n=-1, reduction="none")(data, y)
        out: dict[str, dict] = {}
        for n in NS:
            row = {}
            for projection in ("sphere", "orthogonal"):
                reg = JacobianReg(n=n, reduction="none", projection=projection)
                samples = torch.stack([reg(data, y) for _ in range(draws)])
                bias = (samples.mean(0) - exact).abs() / samples.std(0) * draws**0.5
                row[projection] = {
                    "relative_variance": (samples.var(0) / exact**2).mean().item(),
                    "max_bias_in_standard_errors": bias.max().item(),
                }
            sphere, orthogonal = row["sphere"], row["orthogonal"]
            row["ratio"] = orthogonal["relative_variance"] / sphere["relative_variance"]
            row["expected_ratio"] = (10 - n) / (10 - 1)
            out[str(n)] = row
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    """Bars of the relative variance per n, both estimators, both models."""
    plt.switch_backend("Agg")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (state, rows) in zip(axes, results.items()):
        xs = range(len(NS))
        for offset, projection in ((-0.2, "sphere"), (0.2, "orthogonal")):
            heights = [rows[str(n)][projection]["relative_variance"] for n in NS]
            ax.bar([i + offset for i in xs], heights, width=0.4, label=projection)
        ax.set_xticks(list(xs), [f"n={n}" for n in NS])
        ax.set_title(f"{state} MLP 64-200-200-10")
        ax.set_yscale("log")
    axes[0].set_ylabel("Var(estimate) / exact$^2$ (per sample, mean)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Measures, prints, and writes ``variance.json`` and ``variance.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    _, test_set = load_digits()
    x = test_set.tensors[0][:64]
    model = MLP(inputs=64)
    results = {"untrained": relative_variances(model, x, args.draws)}
    train(model, args.epochs)
    results["trained"] = relative_variances(model, x, args.draws)
    for state, rows in results.items():
        for n, row in rows.items():
            print(
                f"{state:9} n={n}: sphere {row['sphere']['relative_variance']:.4f}, orthogonal "
                f"{row['orthogonal']['relative_variance']:.4f}, ratio {row['ratio']:.3f} "
                f"(expected {row['expected_ratio']:.3f})"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variance.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "variance.png")
    print(f"Wrote {args.out / 'variance.png'} and variance.json")
    print(f"Wrote {page.write()}")
    return results


if __name__ == "__main__":
    main()
