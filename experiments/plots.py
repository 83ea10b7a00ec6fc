"""The figures of a run: accuracy curves, decision regions, margin histograms, PGD iterations."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def _pyplot():  # noqa: ANN202 - matplotlib is optional, so its types are not imported eagerly
    """Imports pyplot with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(summary: dict, out: Path, stem: str) -> list[Path]:
    """Draws a finished run's figures into ``out/<stem>-<figure>.png``; returns their paths."""
    figures = [("accuracy", accuracy), ("margins", slices), ("margin-histogram", histogram)]
    if "pgd_iterations_accuracy" in next(iter(summary["models"].values())):
        figures.append(("pgd-iterations", pgd_iterations))
    paths = []
    for name, plot in figures:
        plt = _pyplot()
        fig = plot(plt, summary)
        paths.append(out / f"{stem}-{name}.png")
        fig.savefig(paths[-1], dpi=80 if name == "margins" else 90)
        plt.close(fig)
    return paths


def accuracy(plt, summary: dict):  # noqa: ANN001, ANN201 - pyplot's types, see _pyplot
    """Accuracy versus noise sigma and versus FGSM and PGD epsilon for every model."""
    ev = summary["evaluation"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    starts = "random start" if ev["pgd_restarts"] == 1 else f"{ev['pgd_restarts']} random starts"
    panels = (
        ("white Gaussian noise", r"noise $\sigma$", ev["sigmas"], "noise_accuracy"),
        (r"FGSM ($L_\infty$)", r"attack $\epsilon$", ev["epsilons"], "fgsm_accuracy"),
        (
            rf"PGD-{ev['pgd_steps']} ($L_\infty$, {starts})",
            r"attack $\epsilon$",
            ev["epsilons"],
            "pgd_accuracy",
        ),
    )
    for ax, (title, xlabel, xs, key) in zip(axes, panels):
        for m in summary["models"].values():
            ax.plot(xs, [100 * a for a in m[key]], marker="o", ms=3, label=m["label"])
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Robustness on {summary['dataset']} (inputs in [0, 1])", fontsize=10)
    fig.tight_layout()
    return fig


def slices(plt, summary: dict):  # noqa: ANN001, ANN201
    """Each model's decision regions on a 2-D slice through one test input."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    cuts = summary["slices"]
    colors = plt.get_cmap("tab10").colors
    classes = max(10, *(max(max(row) for row in s["classes"]) + 1 for s in cuts))
    cmap = ListedColormap([colors[i % len(colors)] for i in range(classes)])
    norm = BoundaryNorm(torch.arange(classes + 1).sub(0.5).tolist(), classes)
    fig, axes = plt.subplots(1, len(cuts), figsize=(4 * len(cuts), 4.4))
    axes = [axes] if len(cuts) == 1 else list(axes)
    seen: set[int] = set()
    for ax, s in zip(axes, cuts):
        e, d = s["extent"], s["nearest"]
        grid = {"origin": "lower", "extent": (-e, e, -e, e), "interpolation": "nearest"}
        ax.imshow(s["classes"], cmap=cmap, norm=norm, **grid)
        seen.update(c for row in s["classes"] for c in row)
        ax.plot([0], [0], marker="*", color="black", ms=12)
        if math.isfinite(d):
            ax.add_patch(plt.Circle((0, 0), d, fill=False, ls="--", color="black", lw=1.2))
            tip = (d * math.cos(s["nearest_angle"]), d * math.sin(s["nearest_angle"]))
            ax.annotate("", tip, (0, 0), arrowprops={"arrowstyle": "->", "lw": 1.2})
        ax.set_title(f"{s['name']}\nnearest boundary d = {d:.3g}", fontsize=9)
        ax.set_xlabel("random direction")
        ax.set_xlim(-e, e)
        ax.set_ylim(-e, e)
    axes[0].set_ylabel("adversarial direction (∇ₓ loss)")
    handles = [Patch(color=cmap(c), label=str(c)) for c in sorted(seen)]
    fig.legend(handles=handles, title="class", loc="center right", fontsize=8)
    fig.suptitle(
        f"Decision regions around a test input of class {cuts[0]['label']} "
        f"({summary['dataset']}); dashed: nearest boundary in the plane",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    return fig


def histogram(plt, summary: dict):  # noqa: ANN001, ANN201
    """Histograms of distances to the boundary along random and adversarial directions."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    limit = summary["evaluation"]["max_distance"]
    for ax, key, title in (
        (axes[0], "margin_random", "along random directions"),
        (axes[1], "margin_adversarial", "along the adversarial direction"),
    ):
        models = summary["models"].values()
        finite_all = [d for m in models for d in m[f"{key}_all"] if math.isfinite(d)]
        # The axis ends at the 99th percentile; the few larger distances go into the last bin.
        top = torch.tensor(finite_all or [1.0], dtype=torch.float64).quantile(0.99).item()
        bins = torch.linspace(0, top, 41).tolist()
        for m in models:
            values = m[f"{key}_all"]
            finite = [min(d, top) for d in values if math.isfinite(d)]
            median = m[key]["q50"]
            label = f"{m['label']}: median {'inf' if median is None else format(median, '.3g')}"
            if len(values) > len(finite):
                label += f" ({len(values) - len(finite)} > {limit:g})"
            ax.hist(finite, bins=bins, histtype="step", lw=1.5, label=label)
        ax.set_title(f"distance to the nearest boundary {title}", fontsize=9)
        ax.set_xlabel(f"L2 distance in input space (last bin: \u2265 {top:.3g})")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    fig.suptitle(f"Margins on {summary['dataset']} test inputs", fontsize=10)
    fig.tight_layout()
    return fig


def pgd_iterations(plt, summary: dict):  # noqa: ANN001, ANN201
    """Each model's accuracy against the number of PGD iterations."""
    ev = summary["evaluation"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m in summary["models"].values():
        curve = m["pgd_iterations_accuracy"]
        ax.plot(range(len(curve)), [100 * a for a in curve], marker="o", ms=2, label=m["label"])
    ax.set_xlabel("PGD iterations")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    eps, step = ev["iteration_epsilon"] * 255, ev["iteration_step"] * 255
    ax.set_title(
        f"{summary['dataset']}: PGD, $\\epsilon$ = {eps:.0f}/255, step {step:.0f}/255", fontsize=10
    )
    fig.tight_layout()
    return fig
