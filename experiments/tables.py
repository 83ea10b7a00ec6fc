"""The Markdown tables of a run's JSON, and the few derived numbers its page quotes."""

# The headers write Greek letters and the multiplication sign.
# ruff: noqa: RUF001

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

Column = tuple[str, Callable[[str, dict, dict], str]]  # header; cell from (name, model, JSON)


def pct(value: float | None, decimals: int = 1) -> str:
    """An accuracy in [0, 1] as a percentage."""
    return "—" if value is None else f"{100 * value:.{decimals}f}%"


def num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; None (an infinite distance) as ``> max``."""
    return "> max" if value is None else f"{value:.{digits}g}"


def times(ratio: float) -> str:
    """A ratio as a factor: whole numbers from 10 up, else one decimal."""
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def per_model(*columns: Column) -> Callable[[dict], str]:
    """A table of one row per model."""

    def table(d: dict) -> str:
        rows = [[cell(name, m, d) for _, cell in columns] for name, m in d["models"].items()]
        return markdown([head for head, _ in columns], rows)

    return table


def curve(key: str, xs: str, symbol: str, title: str) -> Callable[[dict], str]:
    """Every model's accuracy along a sweep; ``title`` may name settings (``{pgd_steps}``)."""

    def table(d: dict) -> str:
        rows = [[m["label"], *(pct(a) for a in m[key])] for m in d["models"].values()]
        xs_ = (f"{symbol}={x:g}" for x in d["evaluation"][xs])
        return markdown([title.format(**d["evaluation"]), *xs_], rows)

    return table


def _median(key: str) -> Callable[[str, dict, dict], str]:
    return lambda _, m, __: num(m[key]["q50"])


def _at(key: str, xs: str, x: float) -> Callable[[str, dict, dict], str]:
    def cell(_: str, m: dict, d: dict) -> str:
        values = d["evaluation"][xs]
        return pct(m[key][values.index(x)]) if x in values else "—"

    return cell


def _check(d: dict) -> str:
    """The stronger PGD on the first images, and how far it goes below the PGD of the tables."""
    ev, rows = d["evaluation"], []
    for m in d["models"].values():
        ours, strong = m["pgd_check_images_accuracy"], m["pgd_check_strong_accuracy"]
        gaps = [100 * (a - b) for a, b in zip(ours, strong) if a is not None]
        rows.append([m["label"], *(pct(b) for b in strong[1:]), f"{max(gaps, default=0):+.1f}"])
    head = [f"stronger PGD, first {ev['check_size']:,} images"]
    head += [f"ε={e:g}" for e in ev["epsilons"][1:]] + ["largest drop vs PGD above (points)"]
    return markdown(head, rows)


def _iterations(d: dict) -> str:
    """Accuracy after some numbers of PGD iterations."""
    count = d["evaluation"]["iterations"] + 1
    shown = sorted({0, 1, 2, 5, 10, 20, count - 1} & set(range(count)))
    rows = [
        [m["label"], *(pct(m["pgd_iterations_accuracy"][k]) for k in shown)]
        for m in d["models"].values()
    ]
    head = [f"PGD, ε={d['evaluation']['iteration_epsilon'] * 255:.0f}/255"]
    return markdown(head + [f"{k} it." for k in shown], rows)


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
    keys = ("train_seconds", "eval_seconds", "compute_seconds", "elapsed_seconds")
    row = [
        d["dataset"],
        *(_duration(wall.get(k)) for k in keys),
        f"{machine['cpu_count']} {machine['processor']} CPU cores ({machine['platform']})",
        f"torch {machine['torch']}, Python {machine['python']}",
        str(machine["torch_threads"]),
    ]
    head = ["run", "training", "measuring", "in all", "first start to page", "machine"]
    return markdown([*head, "software", "torch threads"], [row], right=99)


def _arrow(before: float, after: float, decimals: int = 1) -> str:
    return f"{pct(before, decimals)} → {pct(after, decimals)}"


def _digits_targets(d: dict) -> list[tuple[str, str, bool]]:
    """What the digits run set out to show: the regularized model against none."""
    base, jac, ev = d["models"]["none"], d["models"]["Jacobian"], d["evaluation"]
    ratio = base["jacobian_frobenius_sq"] / jac["jacobian_frobenius_sq"]
    drop = round(100 * (base["accuracy"] - jac["accuracy"]), 1)
    sq = f"{base['jacobian_frobenius_sq']:.4g} → {jac['jacobian_frobenius_sq']:.4g}"
    out = [
        ("‖J‖²_F at least 30 times lower", f"{times(ratio)} times ({sq})", ratio >= 30),
        ("clean accuracy within 1 point", _arrow(base["accuracy"], jac["accuracy"]), drop <= 1),
    ]
    for key, xs, x, what in (
        ("noise_accuracy", "sigmas", 0.6, "white noise at σ = 0.6"),
        ("pgd_accuracy", "epsilons", 0.1, "PGD at ε = 0.1"),
        ("fgsm_accuracy", "epsilons", 0.1, "FGSM at ε = 0.1"),
    ):
        if x in ev[xs]:
            i = ev[xs].index(x)
            before, after = base[key][i], jac[key][i]
            out.append((f"higher accuracy under {what}", _arrow(before, after), after > before))
    medians = [(base[k]["q50"], jac[k]["q50"]) for k in ("margin_random", "margin_adversarial")]
    wider = all(a is not None and (b is None or b > a) for a, b in medians)
    measured = ", ".join(f"{num(a)} → {num(b)}" for a, b in medians)
    out.append(("wider median margins (random, adversarial directions)", measured, wider))
    return out


def _mnist_targets(d: dict) -> list[tuple[str, str, bool]]:
    """What the MNIST run set out to show: the regularized model against none."""
    base, jac, ev = d["models"]["none"], d["models"]["Jacobian"], d["evaluation"]
    points = 100 * (jac["accuracy"] - base["accuracy"])
    ratio = base["jacobian_frobenius"] / jac["jacobian_frobenius"]
    norms = f"{num(base['jacobian_frobenius'])} → {num(jac['jacobian_frobenius'])}"
    out = [
        (
            "clean accuracy of the Jacobian model within 0.2 points of none's, and at least 98.8%",
            f"{_arrow(base['accuracy'], jac['accuracy'], 2)} ({points:+.2f} points)",
            points >= -0.2 and jac["accuracy"] >= 0.988,
        ),
        (
            "mean ‖J‖_F at least 20 times lower (the paper: 30 times)",
            f"{times(ratio)} times ({norms})",
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
            f"{pct(pgd[0])} → {pct(pgd[-1])} at ε = {ev['epsilons'][-1]:g}",
            all(b <= a for a, b in zip(pgd, pgd[1:])),
        )
    )
    return out


# The targets of each dataset's run, by the dataset's name.
TARGETS = {"digits": _digits_targets, "MNIST": _mnist_targets}


def _targets(d: dict) -> str:
    """The run's targets, each with what was measured and whether it is met."""
    rows = [
        [t, measured, "met" if met else "**not met**"]
        for t, measured, met in TARGETS[d["dataset"]](d)
    ]
    return markdown(["target", "measured", ""], rows, right=99)


TABLES: dict[str, Callable[[dict], str]] = {
    "summary": per_model(
        ("model", lambda n, m, d: m["label"]),
        ("clean acc.", lambda n, m, d: pct(m["accuracy"])),
        ("mean ‖J‖²_F", lambda n, m, d: f"{m['jacobian_frobenius_sq']:.4g}"),
        ("‖J‖_F (rms)", lambda n, m, d: num(math.sqrt(m["jacobian_frobenius_sq"]))),
        ("median margin, random dir.", _median("margin_random")),
        ("median margin, adversarial dir.", _median("margin_adversarial")),
    ),
    "paper": per_model(
        ("model", lambda n, m, d: m["label"]),
        ("accuracy, paper", lambda n, m, d: pct(d["paper"][n]["accuracy"])),
        ("accuracy, ours", lambda n, m, d: pct(m["accuracy"], 2)),
        ("‖J‖_F, paper", lambda n, m, d: f"{d['paper'][n]['jacobian_frobenius']:g}"),
        ("‖J‖_F, ours", lambda n, m, d: num(m["jacobian_frobenius"])),
        ("‖J‖_F, ours, [0, 1] pixels", lambda n, m, d: num(m["jacobian_frobenius_pixels"])),
        ("mean ‖J‖²_F, ours", lambda n, m, d: num(m["jacobian_frobenius_sq"])),
        (
            "‖J‖_F lower than none's by",
            lambda n, m, d: (
                f"{times(d['models']['none']['jacobian_frobenius'] / m['jacobian_frobenius'])}×"
            ),
        ),
    ),
    "noise": curve("noise_accuracy", "sigmas", "σ", "white noise"),
    "noise_unclipped": curve("noise_accuracy_unclipped", "sigmas", "σ", "white noise, unclipped"),
    "fgsm": curve("fgsm_accuracy", "epsilons", "ε", "FGSM"),
    "pgd": curve("pgd_accuracy", "epsilons", "ε", "PGD-{pgd_steps}"),
    "check": _check,
    "iterations": _iterations,
    "margins": per_model(
        ("margins", lambda n, m, d: m["label"]),
        ("median, random directions", _median("margin_random")),
        ("median, adversarial direction", _median("margin_adversarial")),
        ("images with a zero cross-entropy gradient", lambda n, m, d: pct(m["zero_gradient"])),
    ),
    "overview": per_model(
        ("model", lambda n, m, d: m["label"]),
        ("accuracy", lambda n, m, d: pct(m["accuracy"], 2)),
        ("‖J‖_F", lambda n, m, d: num(m["jacobian_frobenius"])),
        ("mean ‖J‖²_F", lambda n, m, d: num(m["jacobian_frobenius_sq"])),
        *((f"noise σ={s:g}", _at("noise_accuracy", "sigmas", s)) for s in (0.3, 0.6, 1.0)),
        *((f"PGD ε={e:g}", _at("pgd_accuracy", "epsilons", e)) for e in (0.05, 0.1, 0.2)),
        (
            "median margin, random / adversarial",
            lambda n, m, d: (
                f"{_median('margin_random')(n, m, d)} / {_median('margin_adversarial')(n, m, d)}"
            ),
        ),
    ),
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


# Numbers the pages quote that the JSON does not hold as such.
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
