"""Reproduces the paper's robustness claims: noise, FGSM/PGD accuracy and margins, with figures.

Trains the same model without regularization, with L2 weight decay and with Jacobian
regularization (the same initialisation, batches and recipe), then measures each on the test set:
clean accuracy, the exact mean ||J||_F^2, accuracy under white Gaussian noise and under FGSM and
PGD (L-infinity, clipped to [0, 1]), and distances to the decision boundary. Uses LeNet-5 on MNIST
when its files are under ``--data-dir``, else an MLP 64-200-200-10 on scikit-learn's 8x8 digits.
Inputs stay in [0, 1] (no normalisation), so sigma and epsilon are in units of the pixel range.
Writes ``robustness.json`` and three PNGs to ``--out`` and, with ``--page``, a Markdown page of
the results: ``python -m experiments --out docs/figures --page docs/robustness.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from experiments.data import load_digits, load_mnist, mnist_available, subset
from experiments.evaluation import RobustnessConfig, RobustnessResult, run
from experiments.report import JSON_NAME, print_table, save, write_page


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files (else: the digits)")
    parser.add_argument("--out", default="robustness-out", help="folder for the JSON and PNGs")
    parser.add_argument(
        "--page", help="also write a Markdown page of the results here (docs/robustness.md)"
    )
    parser.add_argument("--epochs", type=int, help="default: 30 on the digits, 10 on MNIST")
    parser.add_argument("--lambda-jr", type=float, default=0.01, help="Jacobian reg. weight")
    parser.add_argument(
        "--weight-decay", type=float, default=5e-4, help="L2 baseline's weight decay (0: skip it)"
    )
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the models are small, one thread is as fast, and the "
        "numbers do not depend on the core count)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 epoch, 200 training and 100 test examples, fewer noise draws",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> RobustnessResult:
    """Runs the evaluation, prints its tables and writes the JSON, figures and page.

    Args:
        argv: The command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The measurements.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # An unregularized model fits the training set so confidently that its gradients underflow
    # into denormal floats, which x86 CPUs process about ten times slower; flush them to zero.
    torch.set_flush_denormal(True)
    if args.data_dir and mnist_available(args.data_dir):
        name, (train, test) = "MNIST", load_mnist(args.data_dir)
        epochs, margin_samples = args.epochs or 10, 500
    else:
        if args.data_dir:
            print(f"No MNIST files under {args.data_dir}; using the bundled handwritten digits.")
        name, (train, test) = "digits", load_digits(seed=args.seed)
        epochs, margin_samples = args.epochs or 30, None
    config = RobustnessConfig(
        epochs=epochs,
        lambda_jr=args.lambda_jr,
        weight_decay=args.weight_decay,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        pgd_steps=args.pgd_steps,
        margin_samples=margin_samples,
    )
    if args.quick:
        train, test = subset(train, 200), subset(test, 100)
        config.epochs = args.epochs or 1
        config.noise_draws = 1
        config.margin_samples = 50
        config.margin_directions = 2
        config.slice_resolution = 61
    print(
        f"Data: {name} ({len(train)} training, {len(test)} test images); "
        f"{config.epochs} epochs, lambda_JR={config.lambda_jr:g}, seed {config.seed}."
    )
    tic = time.perf_counter()
    result = run(train, test, config, dataset=name, progress=sys.stderr.isatty())
    save(result, args.out)
    wrote = f"{Path(args.out) / JSON_NAME} and 3 PNGs"
    if args.page:
        command = shlex.join(["python", "-m", "experiments", *argv])
        wrote += f", and {write_page(result, args.page, args.out, command)}"
    print()
    print_table(result)
    seconds = time.perf_counter() - tic
    print(f"\nWrote {wrote} in {seconds:.0f} s.")
    return result


if __name__ == "__main__":
    main()
