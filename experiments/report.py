"""The report of an experiment: its JSON and figures, its tables, and its page from a template.

A page is the hand-written Markdown of ``experiments/pages/<dataset>.md`` for each dataset whose
JSON is in the results folder, with Python format fields filled from that JSON: ``{data[...]}``
(any JSON field, e.g. ``{data[models][none][accuracy]:.2%}``), ``{table[name]}`` (a table of
:data:`TABLES`), ``{value[name]}`` (a number of :data:`VALUES`), ``{figures}`` (the results
folder, relative to the page) and ``{stem}`` (the dataset's file stem).
"""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from experiments.pipeline import Summary, save_json
from experiments.plots import draw
from experiments.spec import EXPERIMENTS, slug

PAGES = Path(__file__).resolve().parent / "pages"
# The datasets a page can show, in the order of their sections.
SECTIONS = ("digits", "mnist", "fashion-mnist")


def write(summary: Summary, out: Path) -> list[Path]:
    """Writes a finished run's figures and its JSON (without per-sample data) into a folder.

    Args:
        summary: What :func:`experiments.pipeline.run` returned.
        out: The folder (created when missing).

    Returns:
        The JSON's path, then the figures'.
    """
    out.mkdir(parents=True, exist_ok=True)
    stem = slug(summary["dataset"])
    figures = draw(summary, out, stem)
    kept = dict(summary)
    kept["models"] = {
        name: {k: v for k, v in m.items() if not k.endswith("_all")}
        for name, m in summary["models"].items()
    }
    kept["slices"] = [{k: v for k, v in s.items() if k != "classes"} for s in summary["slices"]]
    save_json(kept, out / f"{stem}.json", indent=2)
    return [out / f"{stem}.json", *figures]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _pct(value: float | None, decimals: int = 1) -> str:
    """An accuracy in [0, 1] as a percentage."""
    return "—" if value is None else f"{100 * value:.{decimals}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; None (an infinite distance) as ``> max``."""
    return "> max" if value is None else f"{value:.{digits}g}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _curve(key: str, xs: str, symbol: str, title: Callable[[dict], str]) -> Callable[[dict], str]:
    """A table of every model's accuracy along a sweep (noise sigma, attack epsilon)."""

    def table(d: dict) -> str:
        values = d["evaluation"][xs]
        rows = [[m["label"], *(_pct(a) for a in m[key])] for m in d["models"].values()]
        return _table([title(d), *(f"{symbol}={x:g}" for x in values)], rows)

    return table


def _summary(d: dict) -> str:
    """Clean accuracy, ‖J‖ and median margins per model (the robustness page's first table)."""
    rows = [
        [
            m["label"],
            _pct(m["accuracy"]),
            f"{m['jacobian_frobenius_sq']:.4g}",
            _num(math.sqrt(m["jacobian_frobenius_sq"])),
            _num(m["margin_random"]["q50"]),
            _num(m["margin_adversarial"]["q50"]),
        ]
        for m in d["models"].values()
    ]
    head = ["model", "clean acc.", "mean ‖J‖²_F", "‖J‖_F (rms)"]
    head += ["median margin, random dir.", "median margin, adversarial dir."]
    return _table(head, rows)


def _paper(d: dict) -> str:
    """Our accuracy and ‖J‖_F beside the paper's, per model."""
    base = d["models"]["none"]["jacobian_frobenius"]
    rows = []
    for name, m in d["models"].items():
        p = d["paper"][name]
        rows.append(
            [
                m["label"],
                _pct(p["accuracy"]),
                _pct(m["accuracy"], 2),
                f"{p['jacobian_frobenius']:g}",
                _num(m["jacobian_frobenius"]),
                _num(m["jacobian_frobenius_pixels"]),
                _num(m["jacobian_frobenius_sq"]),
                f"{_times(base / m['jacobian_frobenius'])}×",
            ]
        )
    head = ["model", "accuracy, paper", "accuracy, ours", "‖J‖_F, paper", "‖J‖_F, ours"]
    head += ["‖J‖_F, ours, [0, 1] pixels", "mean ‖J‖²_F, ours", "‖J‖_F lower than none's by"]
    return _table(head, rows)


def _times(ratio: float) -> str:
    """A ratio as a factor: whole numbers from 10 up, else one decimal."""
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def _check(d: dict) -> str:
    """The stronger PGD on the first images, and how far it goes below the PGD of the tables."""
    ev, rows = d["evaluation"], []
    for m in d["models"].values():
        ours, strong = m["pgd_check_images_accuracy"], m["pgd_check_strong_accuracy"]
        gaps = [100 * (a - b) for a, b in zip(ours, strong) if a is not None]
        rows.append([m["label"], *(_pct(b) for b in strong[1:]), f"{max(gaps, default=0):+.1f}"])
    head = [f"stronger PGD, first {ev['check_size']:,} images"]
    head += [f"ε={e:g}" for e in ev["epsilons"][1:]] + ["largest drop vs PGD above (points)"]
    return _table(head, rows)


def _iterations(d: dict) -> str:
    """Accuracy after some numbers of PGD iterations."""
    count = len(next(iter(d["models"].values()))["pgd_iterations_accuracy"])
    shown = sorted({0, 1, 2, 5, 10, 20, count - 1} & set(range(count)))
    rows = [
        [m["label"], *(_pct(m["pgd_iterations_accuracy"][k]) for k in shown)]
        for m in d["models"].values()
    ]
    head = [f"PGD, ε={d['evaluation']['iteration_epsilon'] * 255:.0f}/255"]
    return _table(head + [f"{k} it." for k in shown], rows)


def _margins(d: dict) -> str:
    """Median margins and the share of images whose loss gradient underflows to zero."""
    rows = [
        [
            m["label"],
            _num(m["margin_random"]["q50"]),
            _num(m["margin_adversarial"]["q50"]),
            _pct(m["zero_gradient"]),
        ]
        for m in d["models"].values()
    ]
    head = ["margins", "median, random directions", "median, adversarial direction"]
    return _table([*head, "images with a zero cross-entropy gradient"], rows)


def _overview(d: dict) -> str:
    """One row per model: accuracy, ‖J‖, a few noise and PGD points, median margins."""
    ev = d["evaluation"]
    sigmas = [s for s in (0.3, 0.6, 1.0) if s in ev["sigmas"]]
    epsilons = [e for e in (0.05, 0.1, 0.2) if e in ev["epsilons"]]
    rows = [
        [
            m["label"],
            _pct(m["accuracy"], 2),
            _num(m["jacobian_frobenius"]),
            _num(m["jacobian_frobenius_sq"]),
            *(_pct(m["noise_accuracy"][ev["sigmas"].index(s)]) for s in sigmas),
            *(_pct(m["pgd_accuracy"][ev["epsilons"].index(e)]) for e in epsilons),
            f"{_num(m['margin_random']['q50'])} / {_num(m['margin_adversarial']['q50'])}",
        ]
        for m in d["models"].values()
    ]
    head = ["model", "accuracy", "‖J‖_F", "mean ‖J‖²_F", *(f"noise σ={s:g}" for s in sigmas)]
    head += [*(f"PGD ε={e:g}" for e in epsilons), "median margin, random / adversarial"]
    return _table(head, rows)


def _duration(seconds: float | None) -> str:
    """A wall time in seconds, minutes or hours."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _run(d: dict) -> str:
    """How long the run took, and on what."""
    wall, machine = d["wall"], d["machine"]
    row = [
        d["dataset"],
        *(_duration(wall.get(k)) for k in ("train_seconds", "eval_seconds", "compute_seconds")),
        _duration(wall.get("elapsed_seconds")),
        f"{machine['cpu_count']} {machine['processor']} CPU cores ({machine['platform']})",
        f"torch {machine['torch']}, Python {machine['python']}",
        str(machine["torch_threads"]),
    ]
    head = ["run", "training", "measuring", "in all", "first start to page", "machine"]
    return _table([*head, "software", "torch threads"], [row], right=99)


def _targets(d: dict) -> str:
    """The targets of the run's dataset, each with what was measured and whether it is met."""
    rows = [
        [text, measured, "met" if met else "**not met**"]
        for text, measured, met in TARGETS[slug(d["dataset"])](d)
    ]
    return _table(["target", "measured", ""], rows, right=99)


def _at(d: dict, key: str, xs: str, x: float) -> tuple[float, float] | None:
    """The none and Jacobian models' values of a sweep at ``x``, if it was measured."""
    values = d["evaluation"][xs]
    if x not in values:
        return None
    i = values.index(x)
    return d["models"]["none"][key][i], d["models"]["Jacobian"][key][i]


def _digits_targets(d: dict) -> list[tuple[str, str, bool]]:
    """What the digits run set out to show, with the regularizer against none."""
    base, jac = d["models"]["none"], d["models"]["Jacobian"]
    ratio = base["jacobian_frobenius_sq"] / jac["jacobian_frobenius_sq"]
    points = 100 * (jac["accuracy"] - base["accuracy"])
    out = [
        (
            "‖J‖²_F on the test set at least 30 times lower",
            f"{_times(ratio)} times ({base['jacobian_frobenius_sq']:.4g} → "
            f"{jac['jacobian_frobenius_sq']:.4g})",
            ratio >= 30,
        ),
        (
            "clean accuracy within 1 point",
            f"{_pct(base['accuracy'])} → {_pct(jac['accuracy'])}",
            round(points, 1) >= -1,
        ),
    ]
    noise = _at(d, "noise_accuracy", "sigmas", 0.6)
    if noise:
        out.append(("higher accuracy under white noise at σ = 0.6", _arrow(*noise), _up(*noise)))
    pgd, fgsm = _at(d, "pgd_accuracy", "epsilons", 0.1), _at(d, "fgsm_accuracy", "epsilons", 0.1)
    if pgd and fgsm:
        measured = f"PGD {_arrow(*pgd)}, FGSM {_arrow(*fgsm)}"
        out.append(("higher accuracy under PGD and FGSM at ε = 0.1", measured, _up(*pgd, *fgsm)))
    medians = [(base[k]["q50"], jac[k]["q50"]) for k in ("margin_random", "margin_adversarial")]
    wider = all(a is not None and (b is None or b > a) for a, b in medians)
    measured = ", ".join(f"{_num(a)} → {_num(b)}" for a, b in medians)
    out.append(("wider median margins (random, adversarial directions)", measured, wider))
    return out


def _arrow(before: float, after: float) -> str:
    """Two accuracies, before and after."""
    return f"{_pct(before)} → {_pct(after)}"


def _up(*pairs: float) -> bool:
    """Whether each (before, after) pair in a flat sequence rises."""
    return all(b > a for a, b in zip(pairs[::2], pairs[1::2]))


def _mnist_targets(d: dict) -> list[tuple[str, str, bool]]:
    """What the MNIST run set out to show, with the regularizer against none."""
    base, jac, ev = d["models"]["none"], d["models"]["Jacobian"], d["evaluation"]
    points = 100 * (jac["accuracy"] - base["accuracy"])
    ratio = base["jacobian_frobenius"] / jac["jacobian_frobenius"]
    out = [
        (
            "clean accuracy of the Jacobian model within 0.2 points of none's, and at least 98.8%",
            f"{_pct(base['accuracy'], 2)} → {_pct(jac['accuracy'], 2)} ({points:+.2f} points)",
            points >= -0.2 and jac["accuracy"] >= 0.988,
        ),
        (
            "mean ‖J‖_F at least 20 times lower (the paper: 30 times)",
            f"{_times(ratio)} times ({_num(base['jacobian_frobenius'])} → "
            f"{_num(jac['jacobian_frobenius'])})",
            ratio >= 20,
        ),
    ]
    for key, xs, what in (("noise_accuracy", "sigmas", "σ"), ("pgd_accuracy", "epsilons", "ε")):
        sweep = [(x, b, r) for x, b, r in zip(ev[xs], base[key], jac[key]) if x > 0]
        lost = [f"{what} = {x:g}" for x, b, r in sweep if r <= b]
        # A win by fewer than 10 test images in 10,000 is within noise: name it.
        narrow = [f"{what} = {x:g} ({b:.2%} → {r:.2%})" for x, b, r in sweep if 0 < r - b < 1e-3]
        measured = f"lower or equal at {', '.join(lost)}" if lost else "higher at every one"
        measured += f"; by under 0.1 points at {', '.join(narrow)}" if narrow else ""
        noun = "white noise" if what == "σ" else "PGD"
        out.append((f"higher accuracy under {noun} at every {what} > 0", measured, not lost))
    pgd = base["pgd_accuracy"]
    out.append(
        (
            "PGD strong enough that none's accuracy falls monotonically with ε",
            f"{_pct(pgd[0])} → {_pct(pgd[-1])} at ε = {ev['epsilons'][-1]:g}",
            all(b <= a for a, b in zip(pgd, pgd[1:])),
        )
    )
    return out


TARGETS: dict[str, Callable[[dict], list[tuple[str, str, bool]]]] = {
    "digits": _digits_targets,
    "mnist": _mnist_targets,
}

TABLES: dict[str, Callable[[dict], str]] = {
    "summary": _summary,
    "paper": _paper,
    "noise": _curve("noise_accuracy", "sigmas", "σ", lambda d: "white noise"),
    "noise_unclipped": _curve(
        "noise_accuracy_unclipped", "sigmas", "σ", lambda d: "white noise, unclipped"
    ),
    "fgsm": _curve("fgsm_accuracy", "epsilons", "ε", lambda d: "FGSM"),
    "pgd": _curve("pgd_accuracy", "epsilons", "ε", lambda d: f"PGD-{d['evaluation']['pgd_steps']}"),
    "check": _check,
    "iterations": _iterations,
    "margins": _margins,
    "overview": _overview,
    "targets": _targets,
    "run": _run,
}


def _late_change(d: dict, epochs: int = 5) -> float:
    """The largest relative change of any model's training loss over its last epochs, in %."""
    changes = [
        abs(loss[-1] - loss[-1 - epochs]) / loss[-1 - epochs]
        for loss in (m["train_loss"] for m in d["models"].values())
        if len(loss) > epochs
    ]
    return 100 * max(changes, default=math.nan)


# Numbers the pages need that the JSON does not hold as such.
VALUES: dict[str, Callable[[dict], float]] = {
    "steps": lambda d: (
        d["training"]["epochs"] * math.ceil(d["train_size"] / d["training"]["batch_size"])
    ),
    "inverse_std": lambda d: 1 / d["normalization"]["std"],
    "late_loss_change": _late_change,
    "margin_images": lambda d: min(d["test_size"], d["evaluation"]["margin_samples"] or math.inf),
    # The standard error of an accuracy near 50%, in points.
    "error_at_half": lambda d: 100 * math.sqrt(0.25 / d["test_size"]),
}


class _Lookup:
    """``lookup[name]`` computes ``functions[name](data)``: tables and values for templates."""

    def __init__(self, functions: dict[str, Callable[[dict], object]], data: dict) -> None:
        self.functions, self.data = functions, data

    def __getitem__(self, name: str) -> object:
        return self.functions[name](self.data)


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


def render(stem: str, data: dict, figures: str) -> str:
    """One dataset's section of a page: its template with the fields filled from its JSON.

    Args:
        stem: The dataset's file stem (``experiments/pages/<stem>.md``).
        data: Its JSON.
        figures: The results folder, relative to the page (a POSIX path).

    Returns:
        The Markdown, without a final newline.

    Raises:
        ValueError: The template asks for something the JSON does not hold (a run of only some
            of the models, say); the message names it.
    """
    variants = [v.name for v in EXPERIMENTS[data["dataset"]].variants]
    if list(data["models"]) != variants:
        raise ValueError(
            f"a page shows every model of a run: {data['dataset']}'s results hold "
            f"{list(data['models'])}, not {variants}"
        )
    template = (PAGES / f"{stem}.md").read_text()
    fields = {
        "data": data,
        "table": _Lookup(TABLES, data),  # type: ignore[arg-type]
        "value": _Lookup(VALUES, data),  # type: ignore[arg-type]
        "figures": figures,
        "stem": stem,
    }
    try:
        return _rewrap(template.format_map(fields).strip())
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f"the page template {stem}.md needs {err!s}, which {data['dataset']}'s results lack: "
            "a page shows complete runs of every model"
        ) from err


def _rewrap(text: str, width: int = 100) -> str:
    """Refills the prose and list items the filled fields left ragged; the rest stays as it is."""
    blocks = []
    for block in text.split("\n\n"):
        if block.startswith(("|", "#", "```", "<!--", "![")):
            blocks.append(block)
            continue
        filled = []
        for item in re.split(r"\n(?=- )", block):
            # Never break inside a code span, a link's text, "[0, 1]" or "sigma = 0.5".
            kept = re.sub(r"`[^`]*`|\[[^]]*\]|[σε] = ", lambda m: re.sub(r"\s", "\0", m[0]), item)
            indent = "  " if item.startswith("- ") else ""
            lines = textwrap.fill(
                " ".join(kept.split()),
                width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
            filled.append(lines.replace("\0", " "))
        blocks.append("\n".join(filled))
    return "\n\n".join(blocks)


def page(results: Path, figures: str) -> str:
    """The page of every dataset whose JSON is in ``results``, one section each.

    Args:
        results: The folder of the JSON files and figures.
        figures: That folder, relative to the page (a POSIX path).

    Returns:
        The Markdown, ending in a newline.

    Raises:
        FileNotFoundError: ``results`` holds no dataset's JSON.
    """
    sections = [
        render(stem, json.loads((results / f"{stem}.json").read_text()), figures)
        for stem in SECTIONS
        if (results / f"{stem}.json").is_file()
    ]
    if not sections:
        raise FileNotFoundError(f"no results under {results}: none of {SECTIONS} has a JSON")
    return "\n\n".join(sections) + "\n"


def write_page(results: Path, path: Path) -> Path:
    """Writes :func:`page` to ``path``, linking the figures relative to it; returns ``path``."""
    figures = Path(os.path.relpath(results.resolve(), path.resolve().parent)).as_posix()
    text = page(results, figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tables(summary: Summary) -> str:
    """The main tables of a finished run, for the console."""
    names = ["summary", "noise", "fgsm", "pgd"]
    return "\n\n".join(TABLES[name](summary) for name in names)
