"""The paper's MNIST experiment: LeNet' without and with each regularizer, trained and measured.

Trains the five models of the paper's MNIST table (Hoffman, Roberts and Yaida 2019, Table 1):
no regularization, L2 weight decay, dropout, Jacobian regularization and all three combined,
each LeNet' (:class:`experiments.models.LeNetPrime`) from the same initialisation on the same
batches, with the paper's recipe: SGD with momentum 0.9, batch 100, learning rate 0.1 divided by
10 at 1/3 and 2/3 of training, inputs standardised with the training set's mean and standard
deviation (0.1307 and 0.3081 on MNIST). The Jacobian regularizer differentiates the logits with
respect to the standardised input, as the paper's code does. Then it measures each model on the
whole test set: clean accuracy, the exact ‖J‖_F per test image, accuracy under white noise, FGSM
and PGD, and margins; attacks and noise act on images in [0, 1] (the standardisation is the
model's first layer), so sigma and epsilon are fractions of the pixel range.

Training checkpoints model, optimiser, schedule and random state after every epoch, and each
measurement is cached as soon as it is done, so the run can be stopped (``--max-minutes``) and
resumed by running the same command again; it picks up where it stopped and gives the same
result as an uninterrupted run. ``make paper`` runs it on MNIST (``data/mnist``, see ``make
mnist``) and writes ``docs/paper/mnist.json``, the figures and ``docs/paper.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from jacobian import JacobianReg
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.attacks import (
    DATA_RANGE,
    attack_accuracy,
    attack_survivors,
    fgsm,
    gradient_and_logits,
    loss_gradient,
    pgd_attack,
    white_noise,
)
from experiments.data import CANONICAL_MD5, check_md5, load_mnist, subset
from experiments.evaluation import accuracy, jacobian_norms
from experiments.margins import (
    MAX_DISTANCE,
    adversarial_directions,
    boundary_distances,
    random_directions,
)
from experiments.models import LeNetPrime, Normalize, predict
from experiments.report import _json_safe
from experiments.training import train_epoch

# The exit status of a run stopped by --max-minutes with work left: run it again to go on.
EXIT_UNFINISHED = 75


@dataclass(frozen=True)
class Variant:
    """One model of the paper's table: which regularizers it trains with.

    Attributes:
        name: The key of the model in the JSON (``none``, ``L2``, ...).
        label: The row of the paper's table it reproduces.
        weight_decay: SGD's L2 weight decay.
        dropout: The dropout probability after each hidden dense layer.
        lambda_jr: The weight of the Jacobian regularizer.
    """

    name: str
    label: str
    weight_decay: float = 0.0
    dropout: float = 0.0
    lambda_jr: float = 0.0

    @property
    def slug(self) -> str:
        """The name as a folder name."""
        return self.name.lower().replace(" ", "-")


# The paper's rows, with the settings its code and a reimplementation "as in the paper" use.
VARIANTS = (
    Variant("none", "No regularization"),
    Variant("L2", "L2", weight_decay=5e-4),
    Variant("dropout", "Dropout", dropout=0.5),
    Variant("Jacobian", "Jacobian", lambda_jr=0.01),
    Variant("all combined", "All combined", weight_decay=5e-4, dropout=0.5, lambda_jr=0.01),
)

# The paper's MNIST table (LeNet', the full training set): test accuracy and mean ‖J‖_F.
PAPER_TABLE = {
    "none": (0.989, 32.9),
    "L2": (0.992, 4.6),
    "dropout": (0.986, 21.5),
    "Jacobian": (0.990, 1.1),
    "all combined": (0.991, 1.2),
}


@dataclass
class TrainConfig:
    """The training recipe, the same for every model.

    Attributes:
        epochs: Passes over the training set (the paper: 250).
        lr: SGD's initial learning rate.
        momentum: SGD's momentum.
        batch_size: Examples per step.
        decay_at: Fractions of ``epochs`` after which the learning rate is multiplied by
            ``decay``.
        decay: The factor of each decay.
        n_proj: Random projections of the Jacobian regularizer.
        seed: Seeds the initialisation (the same for every model), the batch order, dropout and
            the regularizer's projections.
        train_size: Training images used (the first ones; None: all).
    """

    epochs: int = 60
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 100
    decay_at: tuple[float, ...] = (1 / 3, 2 / 3)
    decay: float = 0.1
    n_proj: int = 1
    seed: int = 0
    train_size: int | None = None

    def milestones(self) -> list[int]:
        """The epochs after which the learning rate decays."""
        return [max(1, round(f * self.epochs)) for f in self.decay_at]


@dataclass
class TrainState:
    """How far one model's training got, as checkpointed after each epoch.

    Attributes:
        epoch: Epochs done.
        losses: The mean training loss of each epoch.
        train_accuracy: The training accuracy of each epoch (dropout active).
        seconds: The wall time of each epoch.
    """

    epoch: int = 0
    losses: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class Budget:
    """A wall-time budget for one run, checked between units of work (epochs, measurements).

    Args:
        minutes: The budget; None: unlimited.
    """

    def __init__(self, minutes: float | None) -> None:
        self.start = time.perf_counter()
        self.limit = math.inf if minutes is None else 60.0 * minutes
        self.stopped = False

    def allows(self, seconds: float) -> bool:
        """Tells whether a unit expected to take ``seconds`` still fits; records a refusal."""
        fits = time.perf_counter() - self.start + seconds <= self.limit
        self.stopped |= not fits
        return fits


def config_hash(config: object) -> str:
    """A short stable hash of a dataclass configuration (names the checkpoint folders)."""
    text = json.dumps(asdict(config), sort_keys=True)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def save_atomic(obj: object, path: Path) -> None:
    """Writes ``torch.save(obj)`` to a temporary file, then renames it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_model(variant: Variant, mean: float, std: float, classes: int = 10) -> nn.Sequential:
    """LeNet' for a variant, behind its standardisation: it maps images in [0, 1] to logits.

    Args:
        variant: Which regularizers (the dropout probability is part of the model).
        mean: The standardisation's mean.
        std: The standardisation's standard deviation.
        classes: The number of classes.

    Returns:
        ``Sequential(Normalize(mean, std), LeNetPrime(classes, variant.dropout))``.
    """
    return nn.Sequential(Normalize(mean, std), LeNetPrime(classes, variant.dropout))


def train_variant(
    variant: Variant,
    train_set: TensorDataset,
    config: TrainConfig,
    folder: Path,
    budget: Budget,
    *,
    mean: float,
    std: float,
    classes: int = 10,
    log: bool = True,
) -> tuple[nn.Sequential, TrainState]:
    """Trains one model to ``config.epochs``, resuming from and writing per-epoch checkpoints.

    The checkpoint ``folder/state.pt`` holds the model, the optimiser (momentum buffers), the
    schedule, the batch order's and torch's random state and the per-epoch log, so a resumed run
    continues exactly as an uninterrupted one would (on the same machine and thread count).

    Args:
        variant: The model's regularizers.
        train_set: Training images in [0, 1] and labels.
        config: The recipe.
        folder: The model's checkpoint folder (created when missing).
        budget: Stops between epochs when the next one would not fit.
        mean: The standardisation's mean.
        std: The standardisation's standard deviation.
        classes: The number of classes.
        log: Print a line per epoch.

    Returns:
        The model (trained as far as the budget allowed, in eval mode) and its training state.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "state.pt"
    torch.manual_seed(config.seed)
    model = build_model(variant, mean, std, classes)
    net = model[1]
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=variant.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestones(), gamma=config.decay
    )
    order = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    state = TrainState()
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["order_rng"])
        torch.set_rng_state(saved["torch_rng"])
        state = TrainState(**saved["state"])
    # The paper standardises the data, so the regularizer sees standardised inputs.
    x, y = train_set.tensors
    loader = DataLoader(
        TensorDataset((x - mean) / std, y),
        batch_size=config.batch_size,
        shuffle=True,
        generator=order,
    )
    reg = JacobianReg(n=config.n_proj)
    while state.epoch < config.epochs:
        if not budget.allows(max(state.seconds[-3:], default=0.0)):
            break
        lr = optimizer.param_groups[0]["lr"]
        tic = time.perf_counter()
        loss, acc = train_epoch(net, loader, optimizer, reg, variant.lambda_jr)
        scheduler.step()
        state.epoch += 1
        state.losses.append(loss)
        state.train_accuracy.append(acc)
        state.seconds.append(time.perf_counter() - tic)
        save_atomic(
            {
                "net": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "order_rng": order.get_state(),
                "torch_rng": torch.get_rng_state(),
                "state": asdict(state),
                "variant": asdict(variant),
                "config": asdict(config),
            },
            path,
        )
        if log:
            left = (config.epochs - state.epoch) * sum(state.seconds[-3:]) / len(state.seconds[-3:])
            print(
                f"  {variant.name}: epoch {state.epoch}/{config.epochs}, lr {lr:g}, "
                f"loss {loss:.4f}, train acc. {100 * acc:.2f}%, {state.seconds[-1]:.1f} s "
                f"(about {left / 60:.0f} min left for this model)",
                flush=True,
            )
    model.eval()
    return model, state


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[bool]:
    """Holds an exclusive lock on ``folder/lock`` if no other process does, without waiting.

    Args:
        folder: The folder to lock (created when missing).

    Yields:
        True while this process holds the lock; False when another process held it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def identify(data_dir: str | Path) -> str | None:
    """The dataset a folder of IDX files holds, by the MD5s of its files, if a known one.

    Args:
        data_dir: A folder of MNIST-format IDX files.

    Returns:
        ``"MNIST"`` or ``"Fashion-MNIST"`` when the four files match that dataset's canonical
        MD5s, else None.
    """
    for name, md5s in CANONICAL_MD5.items():
        try:
            check_md5(data_dir, md5s)
        except (OSError, ValueError):
            continue
        return name
    return None


@dataclass
class EvalConfig:
    """What is measured on the test set, the same for every model.

    Attributes:
        test_size: Test images used (the first ones; None: all 10,000).
        sigmas: Standard deviations of the white Gaussian noise, in pixel units ([0, 1]).
        noise_draws: Noise draws per test image and sigma (accuracies are averaged over them).
        epsilons: L-infinity radii of FGSM and PGD, in pixel units.
        pgd_steps: Signed-gradient steps of each PGD run, of size 2.5 * epsilon / steps.
        pgd_restarts: PGD runs from independent random starts (for images not yet broken).
        pgd_losses: The losses PGD's runs ascend in turn.
        check_size: Test images (the first ones) attacked again by a stronger PGD, to check
            that the attack above has converged.
        check_steps: The stronger PGD's steps per run.
        check_restarts: The stronger PGD's runs.
        iteration_epsilon: The radius of the accuracy-versus-PGD-iterations curve.
        iteration_step: Its step size.
        iterations: Its number of iterations.
        margin_samples: Test images whose margins are measured (the first ones).
        margin_directions: Random directions per image (the same for every model).
        max_distance: How far the margin search walks (L2, pixel units).
        slice_resolution: Grid points per axis of the decision-region figure.
        seed: Seeds the noise, the attacks' random starts and the margins' directions.
    """

    test_size: int | None = None
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    noise_draws: int = 4
    epsilons: tuple[float, ...] = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3)
    pgd_steps: int = 40
    pgd_restarts: int = 2
    pgd_losses: tuple[str, ...] = ("ce", "margin")
    check_size: int = 1000
    check_steps: int = 100
    check_restarts: int = 4
    iteration_epsilon: float = 32 / 255
    iteration_step: float = 1 / 255
    iterations: int = 30
    margin_samples: int = 500
    margin_directions: int = 4
    max_distance: float = MAX_DISTANCE
    slice_resolution: int = 201
    seed: int = 0


def evaluation_units(config: EvalConfig) -> list[str]:
    """The cached units of one model's evaluation, in the order they run."""
    pgd = [f"pgd:{e:g}" for e in config.epsilons if e > 0]
    return ["clean", "noise", "fgsm", *pgd, "pgd-check", "iterations", "margins"]


# The settings each unit's result depends on: a cached result is reused while they stay the same.
UNIT_SETTINGS = {
    "clean": ("test_size",),
    "noise": ("test_size", "sigmas", "noise_draws", "seed"),
    "fgsm": ("test_size", "epsilons"),
    "pgd": ("test_size", "pgd_steps", "pgd_restarts", "pgd_losses", "check_size", "seed"),
    "pgd-check": (
        "test_size",
        "epsilons",
        "check_size",
        "check_steps",
        "check_restarts",
        "pgd_losses",
        "seed",
    ),
    "iterations": ("test_size", "iteration_epsilon", "iteration_step", "iterations", "seed"),
    "margins": ("test_size", "margin_samples", "margin_directions", "max_distance", "seed"),
}


def unit_key(unit: str, config: EvalConfig) -> str:
    """The cache key of a unit: its name and a hash of the settings its result depends on."""
    settings = {k: getattr(config, k) for k in UNIT_SETTINGS[unit.split(":")[0]]}
    text = json.dumps(settings, sort_keys=True)
    return f"{unit}@{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _load_json(path: Path) -> dict[str, object]:
    """A JSON file's object, or an empty dict when the file is missing."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_json(data: dict[str, object], path: Path) -> None:
    """Writes JSON to a temporary file, then renames it over ``path`` (inf and NaN as null)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def pgd_iterations(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    step_size: float,
    iterations: int,
    generator: torch.Generator,
    batch_size: int = 1000,
) -> list[float]:
    """The accuracy after each PGD iteration (cross-entropy, one run from a random start).

    Args:
        model: The classifier.
        x: Test images in [0, 1].
        y: Their labels.
        epsilon: The L-infinity radius.
        step_size: The step of each iteration.
        iterations: How many iterations.
        generator: Draws the random starts.
        batch_size: Images attacked at a time.

    Returns:
        ``iterations + 1`` accuracies: on the clean images, then after each iteration (an image
        counts as broken from the first iterate the model misclassifies on).
    """
    broken = torch.zeros(iterations + 1, len(x), dtype=torch.bool)
    for first in range(0, len(x), batch_size):
        xb, yb = x[first : first + batch_size], y[first : first + batch_size]
        rows = slice(first, first + len(xb))
        broken[0, rows] = predict(model, xb) != yb
        lower, upper = (xb - epsilon).clamp(*DATA_RANGE), (xb + epsilon).clamp(*DATA_RANGE)
        start = 2 * torch.rand(xb.shape, generator=generator, dtype=xb.dtype) - 1
        current = (xb + epsilon * start).clamp(*DATA_RANGE)
        grad, _ = gradient_and_logits(model, current, yb)
        for k in range(1, iterations + 1):
            current = current + step_size * grad.sign()
            current = torch.minimum(torch.maximum(current, lower), upper)
            # The logits of this iterate come with the gradient of the next step.
            if k < iterations:
                grad, logits = gradient_and_logits(model, current, yb)
            else:
                with torch.no_grad():
                    logits = model(current)
            broken[k, rows] = broken[k - 1, rows] | (logits.argmax(1) != yb)
    return (1 - broken.double().mean(1)).tolist()


def pgd_survivors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    config: EvalConfig,
    generator: torch.Generator,
    batch_size: int = 1000,
) -> Tensor:
    """Which images PGD fails to break (:func:`experiments.attacks.pgd`, ``config``'s settings).

    Args:
        model: The classifier (inputs in [0, 1]).
        x: Test images.
        y: Their labels.
        epsilon: The L-infinity radius.
        config: Steps, restarts and losses of the attack.
        generator: Draws the random starts.
        batch_size: Images attacked at a time.

    Returns:
        [N] booleans: True where the model still classifies the adversarial image correctly.
    """
    attack = pgd_attack(config.pgd_steps, config.pgd_restarts, config.pgd_losses, generator)
    return attack_survivors(model, x, y, attack, epsilon, batch_size)


def evaluate_unit(
    unit: str,
    model: nn.Sequential,
    test_set: TensorDataset,
    config: EvalConfig,
    directions: Tensor,
) -> dict[str, object]:
    """Runs one unit of a model's evaluation (see :func:`evaluation_units`).

    Every unit seeds its own generators from ``config.seed`` and the unit's name, so each unit
    gives the same result whether it runs alone (after a resume) or after the others.

    Args:
        unit: ``clean``, ``noise``, ``fgsm``, ``pgd:<epsilon>``, ``pgd-check``, ``iterations`` or
            ``margins``.
        model: ``Sequential(Normalize, LeNetPrime)``, in eval mode; inputs in [0, 1].
        test_set: The test images (in [0, 1]) and labels.
        config: The evaluation settings.
        directions: [margin_samples, margin_directions, ...] unit directions for the margins.

    Returns:
        The unit's measurements, JSON-ready (distances may be inf).
    """
    x, y = test_set.tensors
    salt = int(hashlib.sha256(unit.encode()).hexdigest()[:8], 16)
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + salt)
    if unit == "clean":
        # The paper's J: the logits' Jacobian with respect to the standardised input.
        norms = jacobian_norms(model[1], model[0](x))
        grad = loss_gradient(model, x, y).flatten(1)
        return {
            "accuracy": accuracy(model, x, y),
            "jacobian_frobenius": norms.sqrt().mean().item(),
            "jacobian_frobenius_sq": norms.mean().item(),
            "jacobian_frobenius_pixels": (norms.sqrt() / model[0].std).mean().item(),
            "jacobian_frobenius_sq_pixels": (norms / model[0].std ** 2).mean().item(),
            "zero_gradient": (grad == 0).all(1).double().mean().item(),
        }
    if unit == "noise":
        out: dict[str, object] = {}
        for key, clip in (("noise_accuracy", DATA_RANGE), ("noise_accuracy_unclipped", None)):
            out[key] = [
                sum(
                    accuracy(model, white_noise(x, s, gen, clip), y)
                    for _ in range(config.noise_draws)
                )
                / config.noise_draws
                for s in config.sigmas
            ]
        return out
    if unit == "fgsm":
        return {"fgsm_accuracy": [attack_accuracy(model, x, y, fgsm, e) for e in config.epsilons]}
    if unit.startswith("pgd:"):
        survived = pgd_survivors(model, x, y, float(unit[4:]), config, gen)
        return {
            "accuracy": survived.double().mean().item(),
            "accuracy_check_images": survived[: config.check_size].double().mean().item(),
        }
    if unit == "pgd-check":
        strong = replace(config, pgd_steps=config.check_steps, pgd_restarts=config.check_restarts)
        xc, yc = x[: config.check_size], y[: config.check_size]
        return {
            "accuracy": [
                pgd_survivors(model, xc, yc, e, strong, gen).double().mean().item()
                if e
                else accuracy(model, xc, yc)
                for e in config.epsilons
            ]
        }
    if unit == "iterations":
        curve = pgd_iterations(
            model, x, y, config.iteration_epsilon, config.iteration_step, config.iterations, gen
        )
        return {"pgd_iterations_accuracy": curve}
    if unit == "margins":
        xm, ym = x[: len(directions)], y[: len(directions)]
        k = directions.shape[1]
        rays = xm.repeat_interleave(k, 0), directions.flatten(0, 1)
        return {
            "margin_random": boundary_distances(model, *rays, config.max_distance).tolist(),
            "margin_adversarial": boundary_distances(
                model, xm, adversarial_directions(model, xm, ym), config.max_distance
            ).tolist(),
        }
    raise ValueError(f"unknown evaluation unit {unit!r}")


def margin_directions(shape: tuple[int, ...], config: EvalConfig, count: int) -> Tensor:
    """The random directions of the margins, the same for every model.

    Args:
        shape: The shape of one image.
        config: The evaluation settings (seed, directions per image).
        count: Images whose margins are measured.

    Returns:
        [count, margin_directions, *shape] unit directions.
    """
    gen = torch.Generator().manual_seed(config.seed + 4)
    k = config.margin_directions
    return random_directions(shape, count * k, gen).view(count, k, *shape)


def evaluate_variant(
    model: nn.Sequential,
    test_set: TensorDataset,
    config: EvalConfig,
    cache: Path,
    budget: Budget,
    *,
    log: bool = True,
    name: str = "",
) -> dict[str, object] | None:
    """Measures one trained model, unit by unit, caching each unit's result as it is done.

    Args:
        model: The trained model (inputs in [0, 1]).
        test_set: The test images and labels.
        config: The evaluation settings.
        cache: The JSON file of the cached units (created when missing), keyed by
            :func:`unit_key`.
        budget: Stops between units when the next one would not fit.
        log: Print a line per unit.
        name: The model's name, for the log.

    Returns:
        Every unit's measurements with the seconds each took (``seconds``), or None when the
        budget stopped it before the last unit.
    """
    done = _load_json(cache)
    x = test_set.tensors[0]
    count = min(len(x), config.margin_samples)
    directions = margin_directions(tuple(x.shape[1:]), config, count)
    units = evaluation_units(config)
    for unit in units:
        key = unit_key(unit, config)
        if key in done:
            continue
        seconds = [float(v["seconds"]) for v in done.values()]  # type: ignore[index]
        if not budget.allows(max(seconds, default=0.0)):
            return None
        tic = time.perf_counter()
        result = evaluate_unit(unit, model, test_set, config, directions)
        result["seconds"] = time.perf_counter() - tic
        done[key] = result
        _save_json(done, cache)
        if log:
            shown = {k: v for k, v in result.items() if isinstance(v, float)}
            summary = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
            print(f"  {name}: measured {unit}: {summary}", flush=True)
    return {unit: _restore_inf(done[unit_key(unit, config)]) for unit in units}


def _restore_inf(value: object) -> object:
    """Turns the nulls JSON holds for infinite distances back into inf, recursively."""
    if value is None:
        return math.inf
    if isinstance(value, dict):
        return {k: _restore_inf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_inf(v) for v in value]
    return value


def slug(name: str) -> str:
    """A dataset's name as a file name: ``MNIST`` -> ``mnist``."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Reads the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.paper", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", default="data/mnist", help="folder of MNIST-format IDX files")
    parser.add_argument(
        "--download", action="store_true", help="download MNIST with torchvision when missing"
    )
    parser.add_argument(
        "--dataset", help="the data's name (default: MNIST or Fashion-MNIST by MD5, else folder)"
    )
    parser.add_argument("--out", default="docs/paper", help="folder for the JSON and figures")
    parser.add_argument("--page", help="also write the Markdown page here (docs/paper.md)")
    parser.add_argument(
        "--checkpoints", default="data/paper-checkpoints", help="checkpoints and cached results"
    )
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="(the paper: 250)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models",
        help="comma-separated names of the models to run (default: all): "
        + ", ".join(v.name for v in VARIANTS),
    )
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
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 epoch on 500 training images, 200 test images, light evaluation",
    )
    return parser.parse_args(argv)


def configs(args: argparse.Namespace) -> tuple[TrainConfig, EvalConfig]:
    """The training and evaluation settings the command line asks for."""
    train = TrainConfig(epochs=args.epochs, seed=args.seed, train_size=args.train_size)
    evaluation = EvalConfig(test_size=args.test_size, seed=args.seed)
    if args.quick:
        train.epochs = 1 if args.epochs == TrainConfig.epochs else args.epochs
        train.train_size = args.train_size or 500
        evaluation.test_size = args.test_size or 200
        evaluation.sigmas = (0.0, 0.5, 1.0)
        evaluation.noise_draws = 1
        evaluation.epsilons = (0.0, 0.1, 0.3)
        evaluation.pgd_steps = 5
        evaluation.pgd_restarts = 2
        evaluation.check_size = 100
        evaluation.check_steps = 10
        evaluation.check_restarts = 2
        evaluation.iterations = 3
        evaluation.margin_samples = 20
        evaluation.margin_directions = 2
        evaluation.max_distance = 5.0
        evaluation.slice_resolution = 31
    return train, evaluation


def run(argv: list[str] | None = None) -> tuple[int, dict[str, object] | None]:
    """Trains, measures and reports, as far as ``--max-minutes`` allows.

    Several processes may run the same command at once: each model's folder is locked while one
    of them trains or measures it, the others skip it, and whichever finds every model done
    writes the results.

    Args:
        argv: The command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0: done, :data:`EXIT_UNFINISHED`: stopped with work left) and the
        summary written to the JSON (None unless done).
    """
    from experiments import paper_report

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # Confident tanh networks push gradients into denormal floats, which x86 CPUs process about
    # ten times slower; flush them to zero.
    torch.set_flush_denormal(True)
    budget = Budget(args.max_minutes)
    train_cfg, eval_cfg = configs(args)
    train_set, test_set = load_mnist(args.data_dir, download=args.download)
    name = args.dataset or identify(args.data_dir) or Path(args.data_dir).resolve().name
    train_set, test_set = (
        subset(train_set, train_cfg.train_size),
        subset(test_set, eval_cfg.test_size),
    )
    images = train_set.tensors[0].double()
    mean, std = images.mean().item(), images.std().item()
    classes = int(max(train_set.tensors[1].max(), test_set.tensors[1].max())) + 1
    wanted = args.models.split(",") if args.models else [v.name for v in VARIANTS]
    unknown = set(wanted) - {v.name for v in VARIANTS}
    if unknown:
        raise SystemExit(
            f"unknown models {sorted(unknown)}: choose among {[v.name for v in VARIANTS]}"
        )
    variants = [v for v in VARIANTS if v.name in wanted]
    root = Path(args.checkpoints) / f"{slug(name)}-{config_hash(train_cfg)}"
    root.mkdir(parents=True, exist_ok=True)
    first_start = _load_json(root / "run.json").get("first_start") or time.time()
    _save_json({"first_start": first_start, "train": asdict(train_cfg)}, root / "run.json")
    print(
        f"{name}: {len(train_set)} training and {len(test_set)} test images, {classes} classes, "
        f"standardised with mean {mean:.4f} and std {std:.4f}; {train_cfg.epochs} epochs "
        f"(learning rate decays after epochs {train_cfg.milestones()}); checkpoints in {root}.",
        flush=True,
    )
    # Each model's folder is locked while a process trains or measures it, so that several
    # processes running the same command share the work instead of repeating it.
    pending = False
    trained = {}
    for variant in variants:
        with exclusive(root / variant.slug) as mine:
            if not mine:
                print(f"  {variant.name}: another process has it; skipped.", flush=True)
                pending = True
                continue
            model, state = train_variant(
                variant,
                train_set,
                train_cfg,
                root / variant.slug,
                budget,
                mean=mean,
                std=std,
                classes=classes,
            )
        trained[variant.name] = (model, state)
        pending |= state.epoch < train_cfg.epochs
    if pending or args.train_only:
        done = sum(s.epoch for _, s in trained.values())
        print(f"Trained {done} of {len(variants) * train_cfg.epochs} epochs here.", flush=True)
        if args.train_only:
            return (EXIT_UNFINISHED if pending else 0), None
    measured = {}
    for variant in variants:
        if variant.name not in trained or trained[variant.name][1].epoch < train_cfg.epochs:
            continue
        cache = root / variant.slug / "measurements.json"
        with exclusive(root / variant.slug) as mine:
            if not mine:
                print(f"  {variant.name}: another process has it; skipped.", flush=True)
                pending = True
                continue
            model = trained[variant.name][0]
            result = evaluate_variant(model, test_set, eval_cfg, cache, budget, name=variant.name)
        if result is None:
            pending = True
        else:
            measured[variant.name] = result
    if pending:
        print("Stopped with work left: run the same command again.", flush=True)
        return EXIT_UNFINISHED, None
    with exclusive(root) as mine:
        if not mine:
            print("Another process is writing the results.", flush=True)
            return 0, None
        summary = paper_report.finish(
            name=name,
            variants=variants,
            trained=trained,
            measured=measured,
            test_set=test_set,
            train_cfg=train_cfg,
            eval_cfg=eval_cfg,
            normalization=(mean, std),
            train_size=len(train_set),
            first_start=float(first_start),  # type: ignore[arg-type]
            command=shlex.join(["python", "-m", "experiments.paper", *argv]),
            out=Path(args.out),
            page=Path(args.page) if args.page else None,
        )
    return 0, summary


def main(argv: list[str] | None = None) -> int:
    """The command line; see :func:`run`.

    Args:
        argv: The command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    return run(argv)[0]


if __name__ == "__main__":
    sys.exit(main())
