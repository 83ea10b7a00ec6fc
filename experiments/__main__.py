"""Trains and measures one dataset's models, then writes its JSON, figures and page.

Without ``--data-dir``: the paper's robustness claims on scikit-learn's 8x8 digits (an MLP
without regularization, with L2 weight decay and with Jacobian regularization; a minute). With
``--data-dir``: the paper's MNIST table on a folder of MNIST-format IDX files, MNIST or
Fashion-MNIST (told apart by their MD5s, or named by ``--dataset``): LeNet' without
regularization, with L2, dropout, Jacobian regularization and all three (hours; stop it with
``--max-minutes`` and run the same command again to go on). The experiments are defined in
``experiments/spec.py``, each dataset's page section in ``experiments/pages/<dataset>.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch

from experiments import report
from experiments.data import identify, load_digits, load_mnist
from experiments.pipeline import EXIT_UNFINISHED, Summary, run
from experiments.spec import EXPERIMENTS, Experiment, quick
from experiments.train import Budget


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--data-dir", help="folder of MNIST-format IDX files (default: the bundled digits)")
    add("--dataset", choices=sorted(EXPERIMENTS), help="default: told by the files' MD5s")
    add("--out", default="experiments-out", help="folder of the JSON and figures")
    add("--page", help="also write the page of every JSON in --out here")
    add("--page-only", action="store_true", help="only rewrite --page from the JSON in --out")
    add("--checkpoints", default="data/checkpoints", help="folder of checkpoints and caches")
    add("--epochs", type=int, help="default: the experiment's")
    add("--seed", type=int, default=0)
    add("--models", help="comma-separated names of the models to run (default: all)")
    add("--max-minutes", type=float, help=f"stop in time, with exit status {EXIT_UNFINISHED}")
    add("--train-only", action="store_true", help="stop once every model is trained")
    # One thread: the models are small, and the numbers then do not depend on the core count.
    add("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    add("--quick", action="store_true", help="smoke run: 1 epoch on 500 images, light tests")
    return parser.parse_args(argv)


def experiment_for(args: argparse.Namespace) -> Experiment:
    """The experiment the command line asks for; SystemExit when it cannot be told."""
    name = args.dataset or (identify(args.data_dir) if args.data_dir else "digits")
    if name is None:
        raise SystemExit(
            f"{args.data_dir} holds neither MNIST's nor Fashion-MNIST's canonical files: "
            "name the experiment to run on them with --dataset"
        )
    experiment = quick(EXPERIMENTS[name]) if args.quick else EXPERIMENTS[name]
    training = replace(experiment.training, seed=args.seed)
    training = replace(training, epochs=args.epochs) if args.epochs else training
    variants = experiment.variants
    if args.models:
        names = [v.name for v in variants]
        if args.page or set(args.models.split(",")) - set(names):
            raise SystemExit(f"--models takes some of {names}, and no --page (which shows all)")
        variants = tuple(v for v in variants if v.name in args.models.split(","))
    evaluation = replace(experiment.evaluation, seed=args.seed)
    return replace(experiment, training=training, evaluation=evaluation, variants=variants)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns 0 when done, :data:`EXIT_UNFINISHED` with work left."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out = Path(args.out)
    if args.page_only:
        if not args.page:
            raise SystemExit("--page-only rewrites the page named by --page: name one")
        print(f"Wrote {report.write_page(out, Path(args.page))}.")
        return 0
    experiment = experiment_for(args)
    if experiment.dataset == "digits":
        train_set, test_set = load_digits(seed=args.seed)
    else:
        train_set, test_set = load_mnist(args.data_dir)
    torch.set_num_threads(args.threads)
    # Confident networks push gradients into denormal floats, which x86 CPUs process about ten
    # times slower; flush them to zero.
    torch.set_flush_denormal(True)

    def finish(summary: Summary) -> None:
        written = report.write(summary, out)
        if args.page:
            written.append(report.write_page(out, Path(args.page)))
        print(f"\n{report.console(summary)}\n\nWrote {', '.join(map(str, written))}.")

    command = shlex.join(["python", "-m", "experiments", *argv])
    budget, checkpoints = Budget(args.max_minutes), Path(args.checkpoints)
    return run(
        experiment,
        train_set,
        test_set,
        checkpoints=checkpoints,
        budget=budget,
        train_only=args.train_only,
        command=command,
        finish=finish,
    )[0]


if __name__ == "__main__":
    sys.exit(main())
