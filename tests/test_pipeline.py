"""The experiments end to end: a --quick run of each dataset (the digits, and MNIST and
Fashion-MNIST on synthetic IDX files), checked against a recomputation in plain torch; resuming
and locks; the published JSON and pages; and the import graph of experiments/."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from experiments import measure, pipeline, report, store, train
from experiments.__main__ import main
from experiments.data import idx_bytes, load_digits, load_mnist
from experiments.migrate import migrate
from experiments.models import MLP, LeNetPrime, Normalize
from experiments.spec import EXPERIMENTS, quick
from experiments.tables import TABLES

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


# The models are tiny: one thread is as fast, immune to spin-waits on shared cores, and
# bitwise resume checks need a fixed thread count.
pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(*argv: str) -> tuple[int, str]:
    """Runs `python -m experiments` in this process: its exit status and what it printed."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            status = main(list(argv))
    finally:
        # The command sets the thread count and flushes denormals: put both back.
        torch.set_num_threads(1)
        torch.set_flush_denormal(False)
    return status, printed.getvalue()


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    """MNIST-format IDX files of random images: 256 training and 64 test images."""
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 256), ("t10k", 64)):
        images, labels = rng.integers(0, 256, (count, 28, 28)), rng.integers(0, 10, count)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return root


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A --quick run on the digits, seed 1: its folder, exit status, output and JSON."""
    root = tmp_path_factory.mktemp("digits")
    status, printed = run_cli(
        *("--quick", "--seed", "1", "--out", str(root / "figures")),
        *("--page", str(root / "robustness.md"), "--checkpoints", str(root / "checkpoints")),
    )
    return root, status, printed, json.loads((root / "figures" / "digits.json").read_text())


@pytest.fixture(scope="module")
def paper_runs(idx_dir, tmp_path_factory):
    """--quick runs of MNIST then Fashion-MNIST (on the synthetic files) onto one page."""
    root = tmp_path_factory.mktemp("paper")
    statuses = [
        run_cli(
            *("--quick", "--data-dir", str(idx_dir), "--dataset", name),
            *("--out", str(root / "paper"), "--page", str(root / "paper.md")),
            *("--checkpoints", str(root / "checkpoints")),
        )[0]
        for name in ("MNIST", "Fashion-MNIST")
    ]
    data = {
        s: json.loads((root / "paper" / f"{s}.json").read_text())
        for s in ("mnist", "fashion-mnist")
    }
    return root, statuses, data


def check_results(data: dict, variants: list[str], figures: Path, stem: str) -> None:
    """What every run's JSON and figures must hold, whatever the dataset."""
    ev = data["evaluation"]
    assert list(data["models"]) == variants
    assert data["training"]["epochs"] == 1 and ev["test_size"] == 200
    for m in data["models"].values():
        assert 0 <= m["accuracy"] <= 1 and m["jacobian_frobenius"] > 0
        # Jensen: the mean of squares is at least the square of the mean.
        assert m["jacobian_frobenius_sq"] >= m["jacobian_frobenius"] ** 2 * (1 - 1e-9)
        for key, xs in (("noise_accuracy", "sigmas"), ("fgsm_accuracy", "epsilons")):
            assert len(m[key]) == len(ev[xs])
        # At sigma = 0 and epsilon = 0 nothing moves the images.
        assert m["noise_accuracy"][0] == m["pgd_accuracy"][0] == m["accuracy"]
        assert m["fgsm_accuracy"][0] == pytest.approx(m["accuracy"], abs=1e-6)
        quantiles = [m["margin_random"][q] for q in ("q10", "q25", "q50", "q75", "q90")]
        finite = [q for q in quantiles if q is not None]
        assert finite == sorted(finite) and quantiles[: len(finite)] == finite
        assert not any(key.endswith("_all") for key in m)
    assert all("classes" not in s for s in data["slices"])
    names = ["accuracy", "margins", "margin-histogram"]
    names += ["pgd-iterations"] if ev["iterations"] else []
    assert sorted(p.name for p in figures.glob(f"{stem}-*.png")) == sorted(
        f"{stem}-{n}.png" for n in names
    )
    for name in names:
        png = figures / f"{stem}-{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size < 200_000


def check_page(page: Path, data: dict, tables: list[str]) -> None:
    """A page holds a dataset's tables as its JSON gives them, and links files that exist."""
    text = page.read_text()
    for name in tables:
        assert TABLES[name](data) in text, name
    assert "```python" not in text  # test_docs.py runs the python blocks of docs/
    links = re.findall(r"\]\(([^)]*\.(?:png|json))\)", text)
    assert links and all((page.parent / link).is_file() for link in links)


def test_digits_run_writes_json_figures_and_page(digits_run):
    root, status, printed, data = digits_run
    assert status == 0
    assert data["dataset"] == "digits" and data["train_size"] == 500
    assert data["training"]["seed"] == data["evaluation"]["seed"] == 1
    check_results(data, ["none", "L2", "Jacobian"], root / "figures", "digits")
    # The digits run leaves out the stronger PGD and the iterations curve.
    assert "pgd_check_strong_accuracy" not in data["models"]["none"]
    page = root / "robustness.md"
    assert page.read_text().startswith("# Robustness\n")
    check_page(page, data, ["summary", "noise", "fgsm", "pgd", "targets", "run"])
    assert report.console(data) in printed
    assert f"Wrote {root / 'figures' / 'digits.json'}, " in printed


def test_paper_runs_write_json_figures_and_one_page(paper_runs):
    root, statuses, data = paper_runs
    assert statuses == [0, 0]
    names = [v.name for v in EXPERIMENTS["MNIST"].variants]
    for stem, d in data.items():
        assert d["train_size"] == 256 and d["test_size"] == 64
        check_results(d, names, root / "paper", stem)
        ev, std = d["evaluation"], d["normalization"]["std"]
        for m in d["models"].values():
            assert m["jacobian_frobenius_pixels"] == pytest.approx(m["jacobian_frobenius"] / std)
            assert len(m["pgd_iterations_accuracy"]) == ev["iterations"] + 1
            assert m["pgd_iterations_accuracy"][0] == pytest.approx(m["accuracy"])
            assert m["pgd_check_strong_accuracy"][0] == pytest.approx(m["accuracy"])
    assert data["mnist"]["paper"]["Jacobian"] == {"accuracy": 0.99, "jacobian_frobenius": 1.1}
    assert data["fashion-mnist"]["paper"] is None
    page = root / "paper.md"
    text = page.read_text()
    assert text.startswith("# The paper's MNIST table") and "\n## Fashion-MNIST\n" in text
    jac = data["mnist"]["models"]["Jacobian"]
    assert f"| Jacobian | 99.0% | {100 * jac['accuracy']:.2f}% | 1.1 |" in text
    tables = ["paper", "noise", "noise_unclipped", "fgsm", "pgd", "check", "iterations"]
    check_page(page, data["mnist"], [*tables, "margins", "targets", "run"])
    check_page(page, data["fashion-mnist"], ["overview", "run"])


def test_page_is_rewritten_from_the_json_alone(digits_run, paper_runs):
    for root, name, out in (
        (digits_run[0], "robustness.md", "figures"),
        (paper_runs[0], "paper.md", "paper"),
    ):
        page = root / name
        written = page.read_text()
        page.unlink()
        assert run_cli("--page-only", "--out", str(root / out), "--page", str(page))[0] == 0
        assert page.read_text() == written


def recomputed(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Accuracy and per-image ||J||_F^2 in plain torch, the Jacobian dense."""
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    jac = torch.autograd.functional.jacobian(lambda t: model(t).sum(0), x)  # [C, N, ...]
    return acc, jac.pow(2).flatten(2).sum((0, 2))


def trained(root: Path, dataset: str, variant: str) -> dict:
    """A run's final checkpoint of one model."""
    (path,) = root.glob(f"checkpoints/{dataset}-*/{variant}/state.pt")
    return torch.load(path, weights_only=False)


def test_digits_json_agrees_with_plain_torch(digits_run):
    root, _, _, data = digits_run
    _, test = load_digits(seed=1)
    x, y = (t[:200] for t in test.tensors)
    for name in ("none", "Jacobian"):
        model = MLP()
        model.load_state_dict(trained(root, "digits", name.lower())["net"])
        acc, norms = recomputed(model.eval(), x, y)
        m = data["models"][name]
        assert m["accuracy"] == pytest.approx(acc, abs=1e-6)
        assert m["jacobian_frobenius_sq"] == pytest.approx(norms.mean().item(), rel=1e-4)
        assert m["jacobian_frobenius"] == pytest.approx(norms.sqrt().mean().item(), rel=1e-4)


def test_mnist_json_agrees_with_plain_torch(paper_runs, idx_dir):
    root, _, data = paper_runs
    d = data["mnist"]
    _, test = load_mnist(idx_dir)
    x, y = test.tensors
    mean, std = d["normalization"]["mean"], d["normalization"]["std"]
    for name, dropout in (("none", 0.0), ("all-combined", 0.5)):
        net = LeNetPrime(10, dropout)
        net.load_state_dict(trained(root, "mnist", name)["net"])
        # The paper's J: of the logits with respect to the standardised image.
        _, norms = recomputed(net.eval(), (x - mean) / std, y)
        acc, _ = recomputed(nn.Sequential(Normalize(mean, std), net), x, y)
        m = d["models"][name.replace("-", " ")]
        assert m["accuracy"] == pytest.approx(acc, abs=1e-6)
        assert m["jacobian_frobenius_sq"] == pytest.approx(norms.mean().item(), rel=1e-4)


def test_a_page_shows_every_model(paper_runs, tmp_path):
    partial = json.loads((paper_runs[0] / "paper" / "mnist.json").read_text())
    del partial["models"]["dropout"]
    with pytest.raises(ValueError, match="dropout"):
        report.render("mnist", partial, "paper")
    with pytest.raises(SystemExit, match="no --page"):
        run_cli("--models", "none", "--page", str(tmp_path / "page.md"))


def test_files_of_unknown_data_need_a_dataset_name(idx_dir):
    with pytest.raises(SystemExit, match="--dataset"):
        run_cli("--data-dir", str(idx_dir))


# --------------------------------------------------------------------------------------------
# Resuming and locks
# --------------------------------------------------------------------------------------------


def run_two(idx_dir: Path, root: Path, *extra: str) -> tuple[int, str]:
    """A --quick MNIST run of two models on the synthetic files, its outputs under ``root``."""
    return run_cli(
        *("--quick", "--data-dir", str(idx_dir), "--dataset", "MNIST"),
        *("--models", "none,Jacobian", "--out", str(root / "out")),
        *("--checkpoints", str(root / "checkpoints"), *extra),
    )


def test_stopped_run_resumes_to_the_same_result(idx_dir, tmp_path):
    # A budget of zero minutes stops before the first epoch, with the "run again" status.
    assert run_two(idx_dir, tmp_path / "a", "--max-minutes", "0")[0] == pipeline.EXIT_UNFINISHED
    assert not (tmp_path / "a" / "out").exists()
    assert run_two(idx_dir, tmp_path / "a")[0] == run_two(idx_dir, tmp_path / "b")[0] == 0
    resumed, straight = (
        json.loads((tmp_path / run / "out" / "mnist.json").read_text()) for run in "ab"
    )
    for name in ("none", "Jacobian"):
        a, b = resumed["models"][name], straight["models"][name]
        for key in ("accuracy", "jacobian_frobenius_sq", "noise_accuracy", "pgd_accuracy"):
            assert a[key] == b[key]


class StopAfter(train.Budget):
    """A budget that allows ``units`` units of work, then stops."""

    def __init__(self, units: int) -> None:
        super().__init__(None)
        self.units = units

    def allows(self, seconds: float) -> bool:
        self.units -= 1
        self.stopped |= self.units < 0
        return self.units >= 0


def test_training_resumed_from_a_checkpoint_equals_an_uninterrupted_run(idx_dir, tmp_path):
    train_set, _ = load_mnist(idx_dir)
    mnist = EXPERIMENTS["MNIST"]
    experiment = replace(mnist, training=replace(mnist.training, epochs=3, batch_size=32))
    variant = mnist.variants[-1]  # all combined: dropout and the regularizer draw random numbers
    kwargs = {"mean": 0.5, "std": 0.3, "log": False}
    args = (experiment, variant, train_set)
    straight, state = train.train_variant(*args, tmp_path / "a", train.Budget(None), **kwargs)
    train.train_variant(*args, tmp_path / "b", StopAfter(1), **kwargs)
    torch.manual_seed(123)  # whatever happens to the global RNG in between
    train.train_variant(*args, tmp_path / "b", StopAfter(1), **kwargs)
    resumed, again = train.train_variant(*args, tmp_path / "b", train.Budget(None), **kwargs)
    assert again["epoch"] == state["epoch"] == 3 and again["losses"] == state["losses"]
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_evaluation_resumed_from_its_cache_equals_an_uninterrupted_one(idx_dir, tmp_path):
    _, test = load_mnist(idx_dir)
    experiment = quick(EXPERIMENTS["MNIST"])
    torch.manual_seed(0)
    model = train.build_model(experiment, experiment.variants[0], 0.5, 0.3, (1, 28, 28))
    config = experiment.evaluation
    budget = train.Budget(None)
    straight = measure.evaluate(model, test, config, tmp_path / "a.json", budget, log=False)
    cache = tmp_path / "b.json"
    assert measure.evaluate(model, test, config, cache, StopAfter(3), log=False) is None
    assert len(json.loads(cache.read_text())) == 3
    resumed = measure.evaluate(model, test, config, cache, budget, log=False)

    def strip(units):
        return {k: {kk: vv for kk, vv in v.items() if kk != "seconds"} for k, v in units.items()}

    assert strip(resumed) == strip(straight)


def test_a_locked_model_is_left_to_the_process_that_holds_it(idx_dir, tmp_path):
    with store.exclusive(tmp_path / "model") as first:
        with store.exclusive(tmp_path / "model") as second:
            assert first and not second
    with store.exclusive(tmp_path / "model") as again:
        assert again
    # A run that finds a model locked does the rest and says that work is left.
    training = quick(EXPERIMENTS["MNIST"]).training
    folder = tmp_path / "checkpoints" / f"mnist-{store.config_hash(training)}" / "jacobian"
    with store.exclusive(folder):
        status, printed = run_two(idx_dir, tmp_path)
    assert status == pipeline.EXIT_UNFINISHED and "Jacobian: another process has it" in printed
    assert (folder.parent / "none" / "state.pt").is_file()
    assert not (folder / "state.pt").exists()


# --------------------------------------------------------------------------------------------
# The published results
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "results", "figures"),
    [("robustness.md", "figures", "figures"), ("paper.md", "paper", "paper")],
)
def test_published_pages_are_their_templates_filled_from_the_json(page, results, figures):
    assert (ROOT / "docs" / page).read_text() == report.page(ROOT / "docs" / results, figures)


def numbers(value: object) -> list[float]:
    """Every number in a JSON value, recursively (booleans are not numbers here)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_published_digits_result_is_the_first_one_migrated():
    old = json.loads((ROOT / "tests" / "data" / "robustness-v1.json").read_text())
    new = json.loads((ROOT / "docs" / "figures" / "digits.json").read_text())
    assert migrate(old) == new
    # Whatever migrate does: every number of the old file is in the new one, but for what the
    # old layout held twice (jacobian_sq beside jacobian_frobenius_sq and its root; the
    # regularizers' weights in the config and in each model).
    missing = Counter(numbers(old)) - Counter(numbers(new))
    twice = [m[k] for m in old["models"] for k in ("jacobian_sq", "jacobian_frobenius_rms")]
    twice += [old["config"]["lambda_jr"], old["config"]["weight_decay"]]
    assert missing == Counter(twice)
    assert new["models"]["Jacobian"]["lambda_jr"] == old["config"]["lambda_jr"]
    assert new["models"]["L2"]["weight_decay"] == old["config"]["weight_decay"]
    for m in old["models"]:
        ours = next(n for n in new["models"].values() if n["label"] == m["name"])
        assert ours["accuracy"] == m["clean_accuracy"]
        assert ours["jacobian_frobenius_sq"] == m["jacobian_sq"]
        assert ours["pgd_accuracy"] == m["pgd_accuracy"]


# --------------------------------------------------------------------------------------------
# The import graph
# --------------------------------------------------------------------------------------------


def imports(folder: Path) -> dict[str, set[str]]:
    """The modules of a package and the ones of its own each imports (by parsing, not running)."""
    package = folder.name
    modules = {
        package if p.stem == "__init__" else f"{package}.{p.stem}": p for p in folder.glob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {m for m in found if m in modules and m not in (name, package)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself, with the path back to it."""
    found = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    found.append([*path, start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(c[0] for c in cycles(graph)) == ["a", "b", "c"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_experiments_import_no_circles():
    graph = imports(ROOT / "experiments")
    assert graph["experiments.report"] >= {"experiments.pipeline", "experiments.plots"}
    assert cycles(graph) == []
