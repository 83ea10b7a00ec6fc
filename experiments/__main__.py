"""Trains and measures one dataset's models, then writes its JSON, figures and page.

Without ``--data-dir``: the paper's robustness claims on scikit-learn's 8x8 digits (an MLP
without regularization, with L2 weight decay and with Jacobian regularization; about a minute).
With ``--data-dir``: the paper's MNIST table on a folder of MNIST-format IDX files, MNIST or
Fashion-MNIST (told apart by their MD5s, or named by ``--dataset``): LeNet' without
regularization, with L2, dropout, Jacobian regularization and all three (hours; stop it with
``--max-minutes`` and run the same command again to go on). Every model starts from the same
initialisation, sees the same batches and is measured the same way: clean accuracy, exact
||J||_F, accuracy under white noise, FGSM and PGD (inputs in [0, 1]), and margins. The
experiments themselves are defined in ``experiments/spec.py``; each dataset's page section is
``experiments/pages/<dataset>.md``.
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
from experiments.pipeline import EXIT_UNFINISHED, Budget, Summary, run
from experiments.spec import EXPERIMENTS, Experiment, quick


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", help="folder of MNIST-format IDX files (else the digits)")
    parser.add_argument("--dataset", choices=sorted(EXPERIMENTS), help="default: by the MD5s")
    parser.add_argument("--out", default="experiments-out", help="folder of the JSON and figures")
    parser.add_argument("--page", help="also write the page of every JSON in --out here")
    parser.add_argument(
        "--page-only", action="store_true", help="only rewrite --page from the JSON in --out"
    )
    parser.add_argument("--checkpoints", default="data/checkpoints", help="checkpoints and caches")
    parser.add_argument("--epochs", type=int, help="default: the experiment's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", help="comma-separated names of the models (default: all)")
    parser.add_argument("--train-size", type=int, help="use the first N training images")
    parser.add_argument("--test-size", type=int, help="use the first N test images")
    parser.add_argument(
        "--max-minutes",
        type=float,
        help=f"stop between epochs or measurements before this much wall time (exit status "
        f"{EXIT_UNFINISHED}: run the same command again to go on)",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="stop once every model is trained"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the models are small, and the numbers then do not "
        "depend on the core count)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 epoch on 500 images, light measurements"
    )
    return parser.parse_args(argv)


def experiment_for(args: argparse.Namespace) -> Experiment:
    """The experiment the command line asks for: a dataset's, with the options applied.

    Raises:
        SystemExit: The dataset cannot be told, or ``--models`` names an unknown model.
    """
    name = args.dataset or (identify(args.data_dir) if args.data_dir else "digits")
    if name is None:
        raise SystemExit(
            f"{args.data_dir} holds neither MNIST's nor Fashion-MNIST's canonical files: "
            "name the experiment to run on them with --dataset"
        )
    experiment = EXPERIMENTS[name]
    experiment = quick(experiment) if args.quick else experiment
    training = replace(experiment.training, seed=args.seed)
    evaluation = replace(experiment.evaluation, seed=args.seed)
    for key in ("epochs", "train_size"):
        if getattr(args, key) is not None:
            training = replace(training, **{key: getattr(args, key)})
    if args.test_size is not None:
        evaluation = replace(evaluation, test_size=args.test_size)
    variants = experiment.variants
    if args.models and args.page:
        raise SystemExit("a page shows every model: leave out --models or --page")
    if args.models:
        wanted = args.models.split(",")
        unknown = set(wanted) - {v.name for v in variants}
        if unknown:
            names = [v.name for v in variants]
            raise SystemExit(f"unknown models {sorted(unknown)}: choose among {names}")
        variants = tuple(v for v in variants if v.name in wanted)
    return replace(experiment, training=training, evaluation=evaluation, variants=variants)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: The command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when done, :data:`EXIT_UNFINISHED` when stopped with work left.
    """
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
        print(f"\n{report.tables(summary)}\n\nWrote {', '.join(map(str, written))}.")

    status, _ = run(
        experiment,
        train_set,
        test_set,
        checkpoints=Path(args.checkpoints),
        budget=Budget(args.max_minutes),
        train_only=args.train_only,
        command=shlex.join(["python", "-m", "experiments", *argv]),
        finish=finish,
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
