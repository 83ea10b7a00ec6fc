"""The paper experiment's report: its JSON, its figures and the page beside the paper's table."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from experiments.evaluation import ModelResult, RobustnessConfig, RobustnessResult, machine_info
from experiments.margins import slices_through_first_correct
from experiments.paper import (
    PAPER_TABLE,
    EvalConfig,
    TrainConfig,
    TrainState,
    Variant,
    slug,
)
from experiments.plots import plot_accuracy, plot_margin_histogram, plot_slices
from experiments.report import _json_safe, _quantiles

# The figures written beside each dataset's JSON, by suffix.
FIGURES = {
    "accuracy": "accuracy under white noise, FGSM and PGD",
    "margins": "decision regions on a 2-D slice of input space",
    "margin-histogram": "distances to the decision boundary",
    "pgd-iterations": "accuracy against PGD iterations",
}

# The paper's number of epochs, for the page.
PAPER_EPOCHS = 250


def robustness_result(summary: dict[str, object]) -> RobustnessResult:
    """The summary as a :class:`RobustnessResult`, for the figures of ``experiments.plots``.

    Args:
        summary: What :func:`finish` writes to the JSON, with per-sample margins
            (``margin_random_all``, ``margin_adversarial_all``) still in each model.

    Returns:
        The same measurements in the layout of ``python -m experiments``.
    """
    train, ev = summary["training"], summary["evaluation"]
    config = RobustnessConfig(
        epochs=train["epochs"],
        lr=train["lr"],
        momentum=train["momentum"],
        batch_size=train["batch_size"],
        n_proj=train["n_proj"],
        seed=train["seed"],
        sigmas=tuple(ev["sigmas"]),
        noise_draws=ev["noise_draws"],
        epsilons=tuple(ev["epsilons"]),
        pgd_steps=ev["pgd_steps"],
        pgd_restarts=ev["pgd_restarts"],
        pgd_losses=tuple(ev["pgd_losses"]),
        margin_samples=ev["margin_samples"],
        margin_directions=ev["margin_directions"],
        max_distance=ev["max_distance"],
        slice_resolution=ev["slice_resolution"],
    )
    models = [
        ModelResult(
            name=name,
            lambda_jr=m["lambda_jr"],
            weight_decay=m["weight_decay"],
            train_seconds=m["train_seconds"],
            eval_seconds=m["eval_seconds"],
            final_train_loss=m["final_train_loss"],
            clean_accuracy=m["accuracy"],
            jacobian_sq=m["jacobian_frobenius_sq"],
            jacobian_frobenius=m["jacobian_frobenius"],
            zero_gradient=m["zero_gradient"],
            noise_accuracy=m["noise_accuracy"],
            fgsm_accuracy=m["fgsm_accuracy"],
            pgd_accuracy=m["pgd_accuracy"],
            margin_random=m["margin_random_all"],
            margin_adversarial=m["margin_adversarial_all"],
        )
        for name, m in summary["models"].items()  # type: ignore[union-attr]
    ]
    return RobustnessResult(
        dataset=summary["dataset"],  # type: ignore[arg-type]
        config=config,
        models=models,
        slices=summary["slices_all"],  # type: ignore[arg-type]
        test_size=summary["test_size"],  # type: ignore[arg-type]
        seconds=summary["wall"]["compute_seconds"],  # type: ignore[index]
        machine=summary["machine"],  # type: ignore[arg-type]
    )


def plot_pgd_iterations(summary: dict[str, object], path: Path) -> None:
    """Plots each model's accuracy against the number of PGD iterations.

    Args:
        summary: What :func:`finish` writes to the JSON.
        path: The PNG to write.
    """
    from experiments.plots import _pyplot

    plt = _pyplot()
    ev = summary["evaluation"]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, m in summary["models"].items():  # type: ignore[union-attr]
        curve = m["pgd_iterations_accuracy"]
        ax.plot(range(len(curve)), [100 * a for a in curve], marker="o", ms=2, label=name)
    ax.set_xlabel("PGD iterations")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    eps, step = ev["iteration_epsilon"] * 255, ev["iteration_step"] * 255  # type: ignore[index]
    ax.set_title(
        f"{summary['dataset']}: PGD, $\\epsilon$ = {eps:.0f}/255, step {step:.0f}/255", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def finish(
    *,
    name: str,
    variants: Sequence[Variant],
    trained: dict[str, tuple[nn.Sequential, TrainState]],
    measured: dict[str, dict[str, object]],
    test_set: TensorDataset,
    train_cfg: TrainConfig,
    eval_cfg: EvalConfig,
    normalization: tuple[float, float],
    train_size: int,
    first_start: float,
    command: str,
    out: Path,
    page: Path | None,
) -> dict[str, object]:
    """Draws the decision-region slices, then writes the JSON, the figures and the page.

    Args:
        name: The dataset's name.
        variants: The models, in the table's order.
        trained: Each model and its training state, by name.
        measured: Each model's cached evaluation units, by name.
        test_set: The test images and labels.
        train_cfg: The training recipe.
        eval_cfg: The evaluation settings.
        normalization: The standardisation's mean and standard deviation.
        train_size: Training images used.
        first_start: When the first piece of this run started (seconds since the epoch).
        command: The command line, for the page.
        out: The folder of the JSON and figures.
        page: The Markdown page to write, or None.

    Returns:
        The summary written to ``out/<dataset>.json``.
    """
    tic = time.perf_counter()
    x, y = test_set.tensors
    slices = slices_through_first_correct(
        [(v.name, trained[v.name][0]) for v in variants],
        x,
        y,
        seed=eval_cfg.seed,
        max_distance=eval_cfg.max_distance,
        resolution=eval_cfg.slice_resolution,
    )
    per_model: dict[str, dict[str, object]] = {}
    for v in variants:
        state, units = trained[v.name][1], measured[v.name]
        clean = units["clean"]
        pgd = [clean["accuracy"]] + [
            units[f"pgd:{e:g}"]["accuracy"] for e in eval_cfg.epsilons if e > 0
        ]
        pgd_check_base = [
            units[f"pgd:{e:g}"]["accuracy_check_images"] if e > 0 else None
            for e in eval_cfg.epsilons
        ]
        margins = units["margins"]
        per_model[v.name] = {
            "label": v.label,
            "weight_decay": v.weight_decay,
            "dropout": v.dropout,
            "lambda_jr": v.lambda_jr,
            **{k: val for k, val in clean.items() if k != "seconds"},
            "noise_accuracy": units["noise"]["noise_accuracy"],
            "noise_accuracy_unclipped": units["noise"]["noise_accuracy_unclipped"],
            "fgsm_accuracy": units["fgsm"]["fgsm_accuracy"],
            "pgd_accuracy": pgd,
            "pgd_check_images_accuracy": pgd_check_base,
            "pgd_check_strong_accuracy": units["pgd-check"]["accuracy"],
            "pgd_iterations_accuracy": units["iterations"]["pgd_iterations_accuracy"],
            "margin_random": _quantiles(margins["margin_random"]),
            "margin_adversarial": _quantiles(margins["margin_adversarial"]),
            "margin_random_all": margins["margin_random"],
            "margin_adversarial_all": margins["margin_adversarial"],
            "train_loss": state.losses,
            "train_accuracy": state.train_accuracy,
            "final_train_loss": state.losses[-1] if state.losses else math.nan,
            "train_seconds": sum(state.seconds),
            "eval_seconds": sum(float(u["seconds"]) for u in units.values()),
        }
    train_seconds = sum(m["train_seconds"] for m in per_model.values())
    eval_seconds = sum(m["eval_seconds"] for m in per_model.values())
    summary: dict[str, object] = {
        "dataset": name,
        "command": command,
        "train_size": train_size,
        "test_size": len(x),
        "normalization": {"mean": normalization[0], "std": normalization[1]},
        "training": {**asdict(train_cfg), "milestones": train_cfg.milestones()},
        "evaluation": {
            **asdict(eval_cfg),
            "pgd_step_size": "2.5 * epsilon / pgd_steps",
            "check_step_size": "2.5 * epsilon / check_steps",
            "units": "sigma and epsilon in pixel units (images in [0, 1]); noise clipped to "
            "[0, 1] in noise_accuracy, not in noise_accuracy_unclipped",
            "jacobian": "exact, of the logits with respect to the standardised input "
            "(jacobian_frobenius*), and with respect to the [0, 1] image (*_pixels)",
        },
        "paper": (
            {k: {"accuracy": a, "jacobian_frobenius": j} for k, (a, j) in PAPER_TABLE.items()}
            if name == "MNIST"
            else None
        ),
        "models": per_model,
        "slices_all": slices,
        "slices": [{k: v for k, v in asdict(s).items() if k != "classes"} for s in slices],
        "machine": machine_info(),
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = slug(name)
    result = robustness_result({**summary, "wall": {"compute_seconds": 0.0}})
    plot_accuracy(result, out / f"{stem}-accuracy.png")
    plot_slices(result, out / f"{stem}-margins.png")
    plot_margin_histogram(result, out / f"{stem}-margin-histogram.png")
    plot_pgd_iterations(summary, out / f"{stem}-pgd-iterations.png")
    report_seconds = time.perf_counter() - tic
    summary["wall"] = {
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "report_seconds": report_seconds,
        "compute_seconds": train_seconds + eval_seconds + report_seconds,
        "elapsed_seconds": time.time() - first_start,
    }
    kept = {k: v for k, v in summary.items() if k != "slices_all"}
    kept["models"] = {
        k: {key: val for key, val in m.items() if not key.endswith("_all")}
        for k, m in per_model.items()
    }
    write_json_dict(kept, out / f"{stem}.json")
    if page is not None:
        from experiments.paper_page import write_page

        write_page(out, page)
    return kept


def write_json_dict(data: dict[str, object], path: Path) -> None:
    """Writes a summary as indented JSON, infinite and NaN numbers as null."""
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")
