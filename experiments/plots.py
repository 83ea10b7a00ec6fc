"""The figures of a robustness result: accuracy curves, decision regions and margin histograms."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from experiments.evaluation import RobustnessResult
from experiments.margins import median_distance


def _pyplot():  # noqa: ANN202 - matplotlib is optional, so its types are not imported eagerly
    """Imports pyplot with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(result: RobustnessResult, path: str | Path) -> None:
    """Plots accuracy versus noise sigma and versus FGSM and PGD epsilon for every model.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    cfg = result.config
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    panels = (
        ("white Gaussian noise", r"noise $\sigma$", cfg.sigmas, "noise_accuracy"),
        (r"FGSM ($L_\infty$)", r"attack $\epsilon$", cfg.epsilons, "fgsm_accuracy"),
        (
            rf"PGD-{cfg.pgd_steps} ($L_\infty$, "
            + ("random start)" if cfg.pgd_restarts == 1 else f"{cfg.pgd_restarts} random starts)"),
            r"attack $\epsilon$",
            cfg.epsilons,
            "pgd_accuracy",
        ),
    )
    for ax, (title, xlabel, xs, key) in zip(axes, panels):
        for m in result.models:
            ax.plot(xs, [100 * a for a in getattr(m, key)], marker="o", ms=3, label=m.name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Robustness on {result.dataset} (inputs in [0, 1])", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_slices(result: RobustnessResult, path: str | Path) -> None:
    """Plots each model's decision regions on a 2-D slice through one test input.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    colors = plt.get_cmap("tab10").colors
    classes = max(10, *(max(max(row) for row in s.classes) + 1 for s in result.slices))
    cmap = ListedColormap([colors[i % len(colors)] for i in range(classes)])
    norm = BoundaryNorm(torch.arange(classes + 1).sub(0.5).tolist(), classes)
    fig, axes = plt.subplots(1, len(result.slices), figsize=(4 * len(result.slices), 4.4))
    axes = [axes] if len(result.slices) == 1 else list(axes)
    seen: set[int] = set()
    for ax, s in zip(axes, result.slices):
        e = s.extent
        ax.imshow(
            s.classes,
            origin="lower",
            extent=(-e, e, -e, e),
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
        )
        seen.update(c for row in s.classes for c in row)
        ax.plot([0], [0], marker="*", color="black", ms=12)
        if math.isfinite(s.nearest):
            ring = plt.Circle((0, 0), s.nearest, fill=False, ls="--", color="black", lw=1.2)
            ax.add_patch(ring)
            dx, dy = s.nearest * math.cos(s.nearest_angle), s.nearest * math.sin(s.nearest_angle)
            ax.annotate("", (dx, dy), (0, 0), arrowprops={"arrowstyle": "->", "lw": 1.2})
        ax.set_title(f"{s.name}\nnearest boundary d = {s.nearest:.3g}", fontsize=9)
        ax.set_xlabel("random direction")
        ax.set_xlim(-e, e)
        ax.set_ylim(-e, e)
    axes[0].set_ylabel("adversarial direction (∇ₓ loss)")
    handles = [Patch(color=cmap(c), label=str(c)) for c in sorted(seen)]
    fig.legend(handles=handles, title="class", loc="center right", fontsize=8)
    label = result.slices[0].label if result.slices else "?"
    fig.suptitle(
        f"Decision regions around a test input of class {label} ({result.dataset}); "
        "dashed: nearest boundary in the plane",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_margin_histogram(result: RobustnessResult, path: str | Path) -> None:
    """Plots histograms of distances to the boundary along random and adversarial directions.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "margin_random", "along random directions"),
        (axes[1], "margin_adversarial", "along the adversarial direction"),
    ):
        finite_all = [d for m in result.models for d in getattr(m, key) if math.isfinite(d)]
        # The axis ends at the 99th percentile; the few larger distances go into the last bin.
        top = torch.tensor(finite_all or [1.0], dtype=torch.float64).quantile(0.99).item()
        bins = torch.linspace(0, top, 41).tolist()
        for m in result.models:
            values = getattr(m, key)
            finite = [min(d, top) for d in values if math.isfinite(d)]
            missing = len(values) - len(finite)
            label = f"{m.name}: median {median_distance(values):.3g}"
            if missing:
                label += f" ({missing} > {result.config.max_distance:g})"
            ax.hist(finite, bins=bins, histtype="step", lw=1.5, label=label)
        ax.set_title(f"distance to the nearest boundary {title}", fontsize=9)
        ax.set_xlabel(f"L2 distance in input space (last bin: \u2265 {top:.3g})")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    fig.suptitle(f"Margins on {result.dataset} test inputs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
