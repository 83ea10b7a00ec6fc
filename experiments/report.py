"""A run's outputs: its JSON and figures, and the page of every JSON in a results folder.

A page is the hand-written Markdown of ``experiments/pages/<dataset>.md`` for each dataset whose
JSON is in the results folder, with Python format fields filled from that JSON: ``{data[...]}``
(any JSON field, e.g. ``{data[models][none][accuracy]:.2%}``), ``{table[name]}`` (a table of
:data:`experiments.tables.TABLES`), ``{value[name]}`` (a number of
:data:`experiments.tables.VALUES`), ``{figures}`` (the results folder, relative to the page)
and ``{stem}`` (the dataset's file stem).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Callable

from experiments.pipeline import Summary
from experiments.plots import draw
from experiments.spec import EXPERIMENTS, slug
from experiments.store import save_json
from experiments.tables import TABLES, VALUES

PAGES = Path(__file__).resolve().parent / "pages"
# The datasets a page can show, in the order of their sections.
SECTIONS = ("digits", "mnist", "fashion-mnist")
# What refilled prose never breaks: code spans, links' texts, "[0, 1]", "sigma = " and "epsilon = ".
UNBROKEN = r"`[^`]*`|\[[^]]*\]|[\u03c3\u03b5] = "


def write(summary: Summary, out: Path) -> list[Path]:
    """Writes a run's figures and JSON (less per-sample data) into ``out``; returns the paths."""
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


class _Lookup:
    """``lookup[name]`` is ``functions[name](data)``: the tables and values of a template."""

    def __init__(self, functions: dict[str, Callable[[dict], object]], data: dict) -> None:
        self.functions, self.data = functions, data

    def __getitem__(self, name: str) -> object:
        return self.functions[name](self.data)


def _rewrap(text: str, width: int = 100) -> str:
    """Refills the prose and list items the filled fields left ragged; the rest stays as it is."""
    blocks = []
    for block in text.split("\n\n"):
        if block.startswith(("|", "#", "```", "<!--", "![")):
            blocks.append(block)
            continue
        filled = []
        for item in re.split(r"\n(?=- )", block):
            kept = re.sub(UNBROKEN, lambda m: re.sub(r"\s", "\0", m[0]), item)
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


def render(stem: str, data: dict, figures: str) -> str:
    """One dataset's section of a page: ``pages/<stem>.md`` filled from its JSON ``data``.

    Raises:
        ValueError: The results are not of every model of the dataset's experiment, or lack
            what the template asks for; the message says what.
    """
    variants = [v.name for v in EXPERIMENTS[data["dataset"]].variants]
    if list(data["models"]) != variants:
        raise ValueError(
            f"a page shows every model of a run: {data['dataset']}'s results hold "
            f"{list(data['models'])}, not {variants}"
        )
    template = (PAGES / f"{stem}.md").read_text()
    fields = {"data": data, "figures": figures, "stem": stem}
    fields |= {"table": _Lookup(TABLES, data), "value": _Lookup(VALUES, data)}  # type: ignore[arg-type]
    try:
        return _rewrap(template.format_map(fields).strip())
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f"the page template {stem}.md needs {err!s}, which {data['dataset']}'s results lack"
        ) from err


def page(results: Path, figures: str) -> str:
    """The page of every dataset whose JSON is in ``results``; FileNotFoundError if none."""
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


def console(summary: Summary) -> str:
    """The main tables of a finished run, for the console."""
    return "\n\n".join(TABLES[name](summary) for name in ("summary", "noise", "fgsm", "pgd"))
