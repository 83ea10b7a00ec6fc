"""One experiment, end to end: train each variant, measure it, gather the results.

Training checkpoints every model after each epoch and measurements are cached as they finish,
so a run stopped by its time budget picks up where it stopped when run again, and gives the same
result as an uninterrupted one. Several processes may run the same experiment at once: each
model's folder is locked while one of them trains or measures it, the others skip it, and
whichever finds every model done gathers the results.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from experiments.margins import decision_slices
from experiments.measure import evaluate
from experiments.spec import Experiment, Variant, slug
from experiments.store import config_hash, exclusive, load_json, save_json
from experiments.train import Budget, train_variant

# The exit status of a run stopped with work left: run it again to go on.
EXIT_UNFINISHED = 75

Summary = dict  # a run's results: what run() returns and, less the per-sample data, the JSON


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """Quantiles of distances (inf counts as larger than any; None where inf), and inf's share."""
    data = torch.tensor(list(values), dtype=torch.float64)
    out: dict[str, float | None] = {}
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        value = data.quantile(q).item() if len(data) else math.nan
        out[f"q{round(q * 100):02d}"] = value if math.isfinite(value) else None
    out["not_found"] = (~torch.isfinite(data)).double().mean().item() if len(data) else 0.0
    return out


def machine_info() -> dict[str, object]:
    """Where the experiment ran: platform, CPU count, torch threads and version."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def model_summary(variant: Variant, state: dict, units: dict[str, dict], epsilons: list) -> dict:
    """One model's training log and measurements; per-sample margins in ``margin_*_all``."""
    clean, margins = units["clean"], units["margins"]
    out: dict = {
        "label": variant.label,
        "weight_decay": variant.weight_decay,
        "dropout": variant.dropout,
        "lambda_jr": variant.lambda_jr,
        **{k: v for k, v in clean.items() if k != "seconds"},
        **{k: v for k, v in units["noise"].items() if k != "seconds"},
        "fgsm_accuracy": units["fgsm"]["fgsm_accuracy"],
        "pgd_accuracy": [
            units[f"pgd:{e:g}"]["accuracy"] if e else clean["accuracy"] for e in epsilons
        ],
    }
    if "pgd-check" in units:
        out["pgd_check_images_accuracy"] = [
            units[f"pgd:{e:g}"]["accuracy_check_images"] if e else None for e in epsilons
        ]
        out["pgd_check_strong_accuracy"] = units["pgd-check"]["accuracy"]
    if "iterations" in units:
        out["pgd_iterations_accuracy"] = units["iterations"]["pgd_iterations_accuracy"]
    for key in ("margin_random", "margin_adversarial"):
        out[key], out[f"{key}_all"] = quantiles(margins[key]), margins[key]
    losses = state["losses"]
    return out | {
        "train_loss": losses,
        "train_accuracy": state["train_accuracy"],
        "final_train_loss": losses[-1] if losses else math.nan,
        "train_seconds": sum(state["seconds"]),
        "eval_seconds": sum(float(u["seconds"]) for u in units.values()),
    }


def summarise(
    experiment: Experiment,
    trained: dict[str, tuple[nn.Sequential, dict]],
    measured: dict[str, dict],
    test_set: TensorDataset,
    *,
    command: str,
    train_size: int,
    normalization: dict[str, float],
    first_start: float,
) -> Summary:
    """Draws the decision-region slices and gathers every result of a finished run.

    ``trained`` holds each model and its training log, ``measured`` its evaluation units, by
    variant name; ``first_start`` is when the run's first piece started (time.time()).

    Returns:
        What the JSON holds, plus the per-sample margins and the slices' grids (``*_all``,
        ``classes``) that only the figures use.
    """
    tic = time.perf_counter()
    ev = experiment.evaluation
    x, y = test_set.tensors
    slices = decision_slices(
        [(v.label, trained[v.name][0]) for v in experiment.variants],
        x,
        y,
        seed=ev.seed,
        max_distance=ev.max_distance,
        resolution=ev.slice_resolution,
    )
    models = {
        v.name: model_summary(v, trained[v.name][1], measured[v.name], list(ev.epsilons))
        for v in experiment.variants
    }
    wall = {k: sum(m[k] for m in models.values()) for k in ("train_seconds", "eval_seconds")}
    wall["report_seconds"] = time.perf_counter() - tic
    wall["compute_seconds"] = sum(wall.values())
    wall["elapsed_seconds"] = time.time() - first_start
    return {
        "dataset": experiment.dataset,
        "command": command,
        "train_size": train_size,
        "test_size": len(x),
        "normalization": normalization,
        "training": {**asdict(experiment.training), "milestones": experiment.training.milestones()},
        "evaluation": {
            **asdict(ev),
            "pgd_step_size": "2.5 * epsilon / pgd_steps",
            "check_step_size": "2.5 * epsilon / check_steps",
            "units": "sigma and epsilon in pixel units (images in [0, 1]); noise clipped to "
            "[0, 1] in noise_accuracy, not in noise_accuracy_unclipped",
            "jacobian": "exact, of the logits with respect to the standardised input "
            "(jacobian_frobenius*), and with respect to the [0, 1] image (*_pixels)",
        },
        "paper": {
            k: {"accuracy": a, "jacobian_frobenius": j} for k, (a, j) in experiment.paper.items()
        }
        if experiment.paper
        else None,
        "models": models,
        "slices": [asdict(s) for s in slices],
        "machine": machine_info(),
        "wall": wall,
    }


def _skipped(mine: bool, variant: Variant, log: bool) -> bool:
    """Whether another process holds a model (and so says, when logging)."""
    if not mine and log:
        print(f"  {variant.name}: another process has it; skipped.", flush=True)
    return not mine


def run(
    experiment: Experiment,
    train_set: TensorDataset,
    test_set: TensorDataset,
    *,
    checkpoints: Path,
    budget: Budget,
    train_only: bool = False,
    command: str = "",
    finish: Callable[[Summary], None] | None = None,
    log: bool = True,
) -> tuple[int, Summary | None]:
    """Trains and measures every variant of an experiment, as far as the budget allows.

    Uses the first ``train_size`` training and ``test_size`` test images (in [0, 1]), keeps
    checkpoints and cached measurements under ``checkpoints``, and calls ``finish`` with the
    summary under the run's lock (so only one process writes the results).

    Returns:
        The exit status (0: done, :data:`EXIT_UNFINISHED`: stopped with work left) and the
        summary (None unless done, and None in a process that left the results to another).
    """
    training, ev = experiment.training, experiment.evaluation
    train_set = TensorDataset(*(t[: training.train_size] for t in train_set.tensors))
    test_set = TensorDataset(*(t[: ev.test_size] for t in test_set.tensors))
    images = train_set.tensors[0].double()
    mean, std = (images.mean().item(), images.std().item()) if experiment.standardize else (0, 1)
    root = checkpoints / f"{slug(experiment.dataset)}-{config_hash(training)}"
    root.mkdir(parents=True, exist_ok=True)
    first_start = load_json(root / "run.json").get("first_start") or time.time()
    save_json({"first_start": first_start, "train": asdict(training)}, root / "run.json")
    if log:
        print(
            f"{experiment.dataset}: {len(train_set)} training and {len(test_set)} test images, "
            f"standardised with mean {mean:.4f} and std {std:.4f}; {training.epochs} epochs "
            f"(learning rate decays after epochs {training.milestones()}); checkpoints in {root}.",
            flush=True,
        )
    pending, trained, measured = False, {}, {}
    for v in experiment.variants:
        folder = root / slug(v.name)
        with exclusive(folder) as mine:
            if mine:
                trained[v.name] = train_variant(
                    experiment, v, train_set, folder, budget, mean=mean, std=std, log=log
                )
        pending |= _skipped(mine, v, log) or trained[v.name][1]["epoch"] < training.epochs
    for v in [] if train_only else experiment.variants:
        if v.name not in trained or trained[v.name][1]["epoch"] < training.epochs:
            continue
        folder, model = root / slug(v.name), trained[v.name][0]
        with exclusive(folder) as mine:
            cache = folder / "measurements.json"
            result = (
                evaluate(model, test_set, ev, cache, budget, log=log, name=v.name) if mine else None
            )
        measured[v.name] = result
        pending |= _skipped(mine, v, log) or result is None
    if pending and log:
        print("Stopped with work left (or left to another process): run it again.", flush=True)
    if pending or train_only:
        return (EXIT_UNFINISHED if pending else 0), None
    with exclusive(root) as mine:
        if not mine:
            return 0, None
        summary = summarise(
            experiment,
            trained,
            measured,
            test_set,
            command=command,
            train_size=len(train_set),
            normalization={"mean": float(mean), "std": float(std)},
            first_start=float(first_start),
        )
        if finish is not None:
            finish(summary)
    return 0, summary
