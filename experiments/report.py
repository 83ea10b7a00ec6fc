"""Reports of a robustness result: Markdown tables, the JSON summary and the generated page."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import torch

from experiments.evaluation import ModelResult, RobustnessConfig, RobustnessResult
from experiments.margins import SCAN_STEP, TOLERANCE, median_distance
from experiments.plots import plot_accuracy, plot_margin_histogram, plot_slices

# What save writes into its folder, in this order; the page links the three figures.
JSON_NAME = "robustness.json"
ACCURACY_FIGURE = "accuracy.png"
SLICES_FIGURE = "margins.png"
HISTOGRAM_FIGURE = "margin_histogram.png"

# The targets the page checks the Jacobian-regularized model against.
TARGET_JACOBIAN_RATIO = 30
TARGET_ACCURACY_POINTS = 1.0
TARGET_SIGMA = 0.6
TARGET_EPSILON = 0.1

# How the page describes each dataset and the model default_model trains on it.
DATASETS = {
    "digits": (
        "the 1797 handwritten 8x8 digits bundled with scikit-learn, split 3:1 and stratified by "
        "class",
        "the MLP 64-200-200-10 with ReLUs",
    ),
    "MNIST": ("MNIST (1x28x28 images)", "LeNet-5"),
}


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """Quantiles of distances (inf counts as larger than any) and the share of inf ones."""
    data = torch.tensor(list(values), dtype=torch.float64)
    out: dict[str, float | None] = {}
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        value = data.quantile(q).item() if len(data) else math.nan
        out[f"q{round(q * 100):02d}"] = value if math.isfinite(value) else None
    out["not_found"] = (~torch.isfinite(data)).double().mean().item() if len(data) else 0.0
    return out


def model_summary(model: ModelResult) -> dict[str, object]:
    """One model's measurements without per-sample margins, with their quantiles instead.

    Args:
        model: One of :attr:`RobustnessResult.models`.

    Returns:
        A JSON-ready dict (infinite numbers still to be replaced, see :func:`write_json`).
    """
    out = {k: v for k, v in asdict(model).items() if not k.startswith("margin_")}
    out["jacobian_frobenius_sq"] = model.jacobian_sq
    out["jacobian_frobenius_rms"] = math.sqrt(model.jacobian_sq)
    for key in ("margin_random", "margin_adversarial"):
        out[key] = _quantiles(getattr(model, key))
    return out


def to_dict(result: RobustnessResult) -> dict[str, object]:
    """A JSON-ready summary of a result (per-sample margins and slice grids are left out).

    Args:
        result: What :func:`experiments.evaluation.run` returned.

    Returns:
        The summary, in the layout of ``robustness.json``.
    """
    return {
        "dataset": result.dataset,
        "test_size": result.test_size,
        "seconds": result.seconds,
        "machine": result.machine,
        "config": asdict(result.config),
        "models": [model_summary(m) for m in result.models],
        "slices": [{k: v for k, v in asdict(s).items() if k != "classes"} for s in result.slices],
    }


def _json_safe(value: object) -> object:
    """Replaces infinite and NaN floats (which JSON cannot hold) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(result: RobustnessResult, path: str | Path) -> None:
    """Writes :func:`to_dict` as indented JSON (infinite or NaN numbers become null).

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        path: The file to write.
    """
    text = json.dumps(_json_safe(to_dict(result)), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n")


def save(result: RobustnessResult, out_dir: str | Path) -> list[Path]:
    """Writes the JSON and the three figures of a result into a folder.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        out_dir: The folder (created when missing).

    Returns:
        The paths written: ``robustness.json``, ``accuracy.png``, ``margins.png`` and
        ``margin_histogram.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in (JSON_NAME, ACCURACY_FIGURE, SLICES_FIGURE, HISTOGRAM_FIGURE)]
    write_json(result, paths[0])
    plot_accuracy(result, paths[1])
    plot_slices(result, paths[2])
    plot_margin_histogram(result, paths[3])
    return paths


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def format_table(result: RobustnessResult) -> str:
    """Markdown tables of a result: a summary, then accuracies under noise, FGSM and PGD.

    Args:
        result: What :func:`experiments.evaluation.run` returned.

    Returns:
        The tables, separated by blank lines.
    """
    cfg = result.config
    lines = [
        "| model | clean acc. | mean ‖J‖²_F | ‖J‖_F (rms) | median margin, random dir. "
        "| median margin, adversarial dir. |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in result.models:
        lines.append(
            f"| {m.name} | {100 * m.clean_accuracy:.1f}% | {m.jacobian_sq:.4g} | "
            f"{math.sqrt(m.jacobian_sq):.3g} | {median_distance(m.margin_random):.3g} | "
            f"{median_distance(m.margin_adversarial):.3g} |"
        )
    blocks = ["\n".join(lines)]
    for title, key, values, symbol in (
        ("white noise", "noise_accuracy", cfg.sigmas, "\u03c3"),
        ("FGSM", "fgsm_accuracy", cfg.epsilons, "\u03b5"),
        (f"PGD-{cfg.pgd_steps}", "pgd_accuracy", cfg.epsilons, "\u03b5"),
    ):
        head = f"| {title} | " + " | ".join(f"{symbol}={v:g}" for v in values) + " |"
        rows = [head, "|---|" + "---:|" * len(values)]
        for m in result.models:
            accs = getattr(m, key)
            rows.append(f"| {m.name} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + " |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def print_table(result: RobustnessResult, file: TextIO | None = None) -> None:
    """Prints the tables of a result (to stdout by default).

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        file: A text stream; default ``sys.stdout``.
    """
    print(format_table(result), file=file or sys.stdout)


# --------------------------------------------------------------------------------------------
# The generated page
# --------------------------------------------------------------------------------------------


def _wrap(text: str, first: str = "", rest: str = "") -> str:
    """Wraps Markdown at 100 columns, never inside a code span, [0, 1] or "sigma = 0.5"."""
    kept = re.sub(r"`[^`]*`|\[[^]]*\]|[σε] = ", lambda m: m.group().replace(" ", "\0"), text)
    lines = textwrap.fill(
        kept,
        100,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return lines.replace("\0", " ")


def _bullet(text: str) -> str:
    """Wraps one Markdown list item at 100 columns."""
    return _wrap(text, "- ", "  ")


def _plural(count: int, noun: str) -> str:
    """A count and a noun, with an s unless the count is one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pct(value: float) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal."""
    return f"{100 * value:.1f}%"


def _times(ratio: float) -> str:
    """A ratio as a factor: whole numbers from 10 up, else one decimal."""
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def _change(before: float, after: float) -> str:
    """The relative change from ``before`` to ``after`` in percent, signed ("n/a" if undefined)."""
    if not (math.isfinite(before) and math.isfinite(after)) or before == 0:
        return "n/a"
    return f"{round(100 * (after / before - 1)):+d}%"


def _status(met: bool) -> str:
    """Whether a target was met, in the page's words."""
    return "met" if met else "**not met**"


def describe_pgd(cfg: RobustnessConfig) -> str:
    """PGD's settings in words: steps, step size, restarts and losses.

    Args:
        cfg: The evaluation's configuration.

    Returns:
        A phrase such as "PGD with a random start and 20 steps of 2.5ε/20 ...".
    """
    names = {"ce": "the cross-entropy", "margin": "the logit margin of Carlini and Wagner"}
    losses = " and ".join(dict.fromkeys(names.get(name, name) for name in cfg.pgd_losses))
    runs = (
        f"{_plural(cfg.pgd_restarts, 'run')} from independent random starts (cycling through "
        f"{losses}), each"
        if cfg.pgd_restarts > 1
        else f"a random start and, ascending {losses},"
    )
    return (
        f"PGD with {runs} {cfg.pgd_steps} steps of 2.5ε/{cfg.pgd_steps}; an image counts as "
        "broken at the first iterate the model misclassifies"
    )


def _variants(result: RobustnessResult) -> str:
    """The trained models in words: the baselines and the regularized one."""
    cfg = result.config
    parts = ["without regularization"]
    if any(m.weight_decay > 0 for m in result.models):
        parts.append(f"with L2 weight decay {cfg.weight_decay:g} (the paper's other baseline)")
    proj = "the exact Jacobian" if cfg.n_proj == -1 else _plural(cfg.n_proj, "random projection")
    parts.append(f"with Jacobian regularization (λ_JR = {cfg.lambda_jr:g}, {proj})")
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _method(result: RobustnessResult) -> str:
    """What the evaluation does, with the settings of this result."""
    cfg = result.config
    margin_inputs = result.test_size
    if cfg.margin_samples is not None:
        margin_inputs = min(margin_inputs, cfg.margin_samples)
    clip = "clipped to the data range" if cfg.clip_noise else "not clipped"
    data, model = DATASETS.get(result.dataset, (result.dataset, "the default model"))
    mnist = (
        ""
        if result.dataset == "MNIST"
        else "; with the MNIST files under `--data-dir`, the same command trains LeNet-5 on "
        "1x28x28 images"
    )
    intro = (
        "The paper's claims, measured: Jacobian regularization widens classification margins "
        "and makes a model more robust to white and adversarial noise at little cost in clean "
        f"accuracy. `python -m experiments` trains the same model {len(result.models)} times, "
        "from the same initialisation, on the same batches, with the same recipe: "
        f"{_variants(result)}. It then measures each model on the test set:"
    )
    steps = [
        "the clean accuracy and the mean exact ‖J‖²_F per test image (`jacobian_norm` under "
        "`torch.no_grad()`);",
        "the accuracy under white Gaussian noise of standard deviation σ "
        f"({_plural(cfg.noise_draws, 'draw')} per image, {clip}), and under FGSM and PGD "
        "attacks of L∞ radius ε (plain torch autograd, clipped to [0, 1]; "
        f"{describe_pgd(cfg)}; fixed seeds);",
        f"margins: the L2 distance from each of {margin_inputs} test images to where the "
        "predicted class changes, along "
        f"{_plural(cfg.margin_directions, 'random direction')} per image and along its "
        "adversarial direction (the input gradient of the loss), found by a walk in steps of "
        f"{SCAN_STEP:g} up to {cfg.max_distance:g}, then bisection to {TOLERANCE:g}. The rays "
        "are not clipped to [0, 1]: they measure the model's geometry.",
    ]
    setup = (
        "Inputs are not normalised: they stay in [0, 1], so σ and ε are fractions of the pixel "
        f"range. On {data} ({result.test_size} test images), the model is {model}, trained with "
        f"SGD (learning rate {cfg.lr:g}, momentum {cfg.momentum:g}, batch {cfg.batch_size}, "
        f"{_plural(cfg.epochs, 'epoch')}, seed {cfg.seed}){mnist}."
    )
    return "\n\n".join([_wrap(intro), "\n".join(_bullet(s) for s in steps), _wrap(setup)])


def _run(result: RobustnessResult, command: str, figures: str) -> str:
    """The command, its wall time and the machine it ran on."""
    machine = result.machine
    threads = machine.get("torch_threads")
    one_thread = ": the results then do not depend on the core count" if threads == 1 else ""
    before = _wrap(
        "The command that wrote this page, the JSON and the figures (`make robustness` runs it "
        "with `--out docs/figures --page docs/robustness.md`; `--quick` is a smoke run of one "
        "epoch on 200 images, `--help` lists the options):"
    )
    after = _wrap(
        f"Training and measuring took {result.seconds:.0f} s of wall time on "
        f"{machine.get('cpu_count')} {machine.get('processor')} CPU cores "
        f"({machine.get('platform')}; torch {machine.get('torch')}, Python "
        f"{machine.get('python')}, {_plural(threads, 'torch thread')}"
        f"{one_thread}). It wrote `{figures}/{JSON_NAME}` and the figures below."
    )
    return f"{before}\n\n```sh\n{command}\n```\n\n{after}"


def _targets(result: RobustnessResult) -> str:
    """The regularized model against the targets, with the numbers of this result."""
    cfg = result.config
    base, reg = result.models[0], result.models[-1]
    items = []
    ratio = base.jacobian_sq / reg.jacobian_sq if reg.jacobian_sq > 0 else math.inf
    items.append(
        f"‖J‖²_F on the test set {_times(ratio)} times lower ({base.jacobian_sq:.4g} → "
        f"{reg.jacobian_sq:.4g}; target: at least {TARGET_JACOBIAN_RATIO} times): "
        f"{_status(ratio >= TARGET_JACOBIAN_RATIO)}. The paper's MNIST/LeNet table goes "
        "further, ‖J‖_F 32.9 → 1.1; here the rms ‖J‖_F goes "
        f"{math.sqrt(base.jacobian_sq):.3g} → {math.sqrt(reg.jacobian_sq):.3g} after "
        f"{_plural(cfg.epochs, 'epoch')}."
    )
    points = round(100 * (reg.clean_accuracy - base.clean_accuracy), 1)
    clean = (
        f"The same clean accuracy, {_pct(base.clean_accuracy)}"
        if points == 0
        else f"Clean accuracy {_pct(base.clean_accuracy)} → {_pct(reg.clean_accuracy)} "
        f"({points:+.1f} points)"
    )
    items.append(
        f"{clean} (target: within {TARGET_ACCURACY_POINTS:g} point; the paper: 98.9% → 99.0%): "
        f"{_status(points >= -TARGET_ACCURACY_POINTS)}."
    )
    if TARGET_SIGMA in cfg.sigmas:
        i = cfg.sigmas.index(TARGET_SIGMA)
        gains = [100 * (r - b) for b, r in zip(base.noise_accuracy, reg.noise_accuracy)]
        best = max(range(len(gains)), key=gains.__getitem__)
        p = base.noise_accuracy[i]
        error = 100 * math.sqrt(p * (1 - p) / result.test_size)
        items.append(
            f"Higher accuracy under white noise at σ = {TARGET_SIGMA:g}, "
            f"{_pct(base.noise_accuracy[i])} → {_pct(reg.noise_accuracy[i])} "
            f"({gains[i]:+.1f} points): {_status(gains[i] > 0)}. The standard error of one "
            f"accuracy near {_pct(p)} on {result.test_size} test images is {error:.1f} points. "
            f"The largest gain is {gains[best]:+.1f} points, at σ = {cfg.sigmas[best]:g}; at "
            f"σ = {cfg.sigmas[-1]:g} the gain is {gains[-1]:+.1f} points."
        )
    j = cfg.epsilons.index(TARGET_EPSILON) if TARGET_EPSILON in cfg.epsilons else None
    if j is not None:
        higher = reg.pgd_accuracy[j] > base.pgd_accuracy[j]
        higher &= reg.fgsm_accuracy[j] > base.fgsm_accuracy[j]
        items.append(
            f"Higher accuracy under PGD at ε = {TARGET_EPSILON:g}, {_pct(base.pgd_accuracy[j])} "
            f"→ {_pct(reg.pgd_accuracy[j])}, and under FGSM, {_pct(base.fgsm_accuracy[j])} → "
            f"{_pct(reg.fgsm_accuracy[j])}: {_status(higher)}."
        )
    medians = {
        key: (median_distance(getattr(base, key)), median_distance(getattr(reg, key)))
        for key in ("margin_random", "margin_adversarial")
    }
    wider = all(math.isfinite(a) and b > a for a, b in medians.values())
    (rand_base, rand_reg), (adv_base, adv_reg) = medians.values()
    items.append(
        "Wider margins: the median distance to the boundary changes by "
        f"{_change(rand_base, rand_reg)} along random directions ({rand_base:.3g} → "
        f"{rand_reg:.3g}) and by {_change(adv_base, adv_reg)} along the adversarial direction "
        f"({adv_base:.3g} → {adv_reg:.3g}): {_status(wider)}."
    )
    for l2 in (m for m in result.models[1:-1] if m.weight_decay > 0):
        pgd = (
            f", and the accuracy under PGD at ε = {TARGET_EPSILON:g} by "
            f"{100 * (l2.pgd_accuracy[j] - base.pgd_accuracy[j]):+.1f} points"
            if j is not None
            else ""
        )
        items.append(
            f"For comparison, L2 weight decay ({l2.weight_decay:g}) lowers ‖J‖²_F "
            f"{_times(base.jacobian_sq / l2.jacobian_sq)} times ({base.jacobian_sq:.4g} → "
            f"{l2.jacobian_sq:.4g}) and changes the median margins by "
            f"{_change(rand_base, median_distance(l2.margin_random))} (random directions) and "
            f"{_change(adv_base, median_distance(l2.margin_adversarial))} (adversarial)"
            f"{pgd}."
        )
    zero = [m for m in result.models if m.zero_gradient > 0]
    if zero:
        shares = ", ".join(f"{m.name}: {_pct(m.zero_gradient)}" for m in zero)
        underflow = (
            "Some input gradients underflow to zero in float32 (`zero_gradient` in the JSON; "
            f"{shares} of the test images): gradient attacks cannot move those images, so the "
            "accuracy under attack overstates those models' robustness."
        )
    else:
        underflow = (
            "No model's input gradient underflows to zero on any test image (`zero_gradient` in "
            "the JSON), so the attacks are not blunted by float32 saturation."
        )
    return "\n\n".join(
        [
            "Against the targets set for this run, with the regularizer:",
            "\n".join(_bullet(item) for item in items),
            _wrap(
                f"{underflow} `--seed` draws another split, initialisation, batch order and "
                "noise: the numbers above are one seed's."
            ),
        ]
    )


def _figures(result: RobustnessResult, figures: str) -> str:
    """The three figures, linked relative to the page."""
    every = {2: "both", 3: "all three"}.get(len(result.models), f"all {len(result.models)}")
    slices = _wrap(
        "The decision regions of each model on a plane through a test image (the first one "
        f"{every} models classify correctly), spanned by a random direction and the model's own "
        "adversarial direction, with the nearest boundary in the plane dashed:"
    )
    return "\n\n".join(
        [
            f"![Accuracy under white noise, FGSM and PGD]({figures}/{ACCURACY_FIGURE})",
            slices,
            f"![Decision regions on a 2-D slice of input space]({figures}/{SLICES_FIGURE})",
            f"![Histograms of distances to the decision boundary]({figures}/{HISTOGRAM_FIGURE})",
        ]
    )


def format_page(result: RobustnessResult, command: str, figures: str = "figures") -> str:
    """The Markdown page of a result: method, command, machine, tables, targets and figures.

    Every number on the page comes from ``result``; the prose around them is a template.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        command: The command line that produced it, shown in a ``sh`` block.
        figures: The folder of the figures and JSON, relative to the page (a POSIX path).

    Returns:
        The page, ending in a newline.
    """
    sections = [
        "# Robustness",
        "<!-- Generated by `python -m experiments --page ...` (experiments/report.py) from the\n"
        "evaluation's result: edit the generator, not this file. -->",
        _method(result),
        "## How it ran",
        _run(result, command, figures),
        "## Results",
        format_table(result),
        _targets(result),
        "## Figures",
        _figures(result, figures),
    ]
    return "\n\n".join(sections) + "\n"


def write_page(
    result: RobustnessResult, path: str | Path, figures_dir: str | Path, command: str
) -> Path:
    """Writes :func:`format_page` to a file, linking the figures relative to it.

    Args:
        result: What :func:`experiments.evaluation.run` returned.
        path: The Markdown file to write (its folder is created when missing).
        figures_dir: Where :func:`save` wrote the figures.
        command: The command line that produced the result.

    Returns:
        The path written.
    """
    page = Path(path)
    page.parent.mkdir(parents=True, exist_ok=True)
    figures = Path(os.path.relpath(Path(figures_dir).resolve(), page.resolve().parent))
    page.write_text(format_page(result, command, figures.as_posix()))
    return page
