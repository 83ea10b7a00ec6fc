"""One experiment, end to end: train each variant, measure it unit by unit, summarise the results.

Training checkpoints model, optimiser, schedule and random state after every epoch, and each
measurement is cached as soon as it is done, so a run can be stopped (a time budget) and resumed
by running it again: it picks up where it stopped and gives the same result as an uninterrupted
run. Several processes may run the same experiment at once: each model's folder is locked while
one of them trains or measures it, the others skip it, and whichever finds every model done
summarises the results.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from jacobian import JacobianReg, jacobian_norm
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
from experiments.margins import (
    adversarial_directions,
    boundary_distances,
    random_directions,
    slices_through_first_correct,
)
from experiments.models import MLP, LeNetPrime, Normalize, predict
from experiments.spec import Evaluation, Experiment, Variant, slug

# The exit status of a run stopped with work left: run it again to go on.
EXIT_UNFINISHED = 75

Summary = dict  # what run() returns and the JSON holds; see summarise()


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


# --------------------------------------------------------------------------------------------
# Files: checkpoints, caches, locks
# --------------------------------------------------------------------------------------------


def config_hash(config: object) -> str:
    """A short stable hash of a dataclass configuration (names the checkpoint folders)."""
    text = json.dumps(asdict(config), sort_keys=True)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def json_safe(value: object) -> object:
    """Replaces infinite and NaN floats (which JSON cannot hold) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def restore_inf(value: object) -> object:
    """Turns the nulls JSON holds for infinite distances back into inf, recursively."""
    if value is None:
        return math.inf
    if isinstance(value, dict):
        return {k: restore_inf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_inf(v) for v in value]
    return value


def load_json(path: Path) -> dict:
    """A JSON file's object, or an empty dict when the file is missing."""
    return json.loads(path.read_text()) if path.is_file() else {}


def save_json(data: dict, path: Path, indent: int = 1) -> None:
    """Writes JSON to a temporary file, then renames it over ``path`` (inf and NaN as null)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n")
    os.replace(tmp, path)


def save_atomic(obj: object, path: Path) -> None:
    """Writes ``torch.save(obj)`` to a temporary file, then renames it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def build_model(
    experiment: Experiment, variant: Variant, mean: float, std: float, shape: Sequence[int]
) -> nn.Sequential:
    """A fresh model of a variant, behind its standardisation: images in [0, 1] -> logits.

    Args:
        experiment: Which network (``experiment.model``) and how many classes.
        variant: Its regularizers (the dropout probability is part of the model).
        mean: The standardisation's mean (0 with ``std`` 1: none).
        std: The standardisation's standard deviation.
        shape: The shape of one image.

    Returns:
        ``Sequential(Normalize(mean, std), network)``.

    Raises:
        ValueError: The network is unknown, or has no dropout to set.
    """
    classes = experiment.classes
    if experiment.model == "lenet-prime":
        net: nn.Module = LeNetPrime(classes, variant.dropout)
    elif experiment.model == "mlp" and variant.dropout == 0:
        net = MLP(inputs=math.prod(shape), classes=classes)
    else:
        raise ValueError(
            f"no model {experiment.model!r} with dropout {variant.dropout}: choose 'mlp' "
            "(without dropout) or 'lenet-prime'"
        )
    return nn.Sequential(Normalize(mean, std), net)


def train_epoch(
    net: nn.Module,
    batches: DataLoader,
    optimizer: torch.optim.Optimizer,
    reg: nn.Module,
    lambda_jr: float = 0.0,
) -> tuple[float, float]:
    """One pass over the training batches: cross-entropy, plus the weighted Jacobian regularizer.

    The regularizer differentiates the logits with respect to the inputs exactly as the batches
    hold them (standardised when the experiment standardises).

    Args:
        net: The classifier, trained in place (in training mode during the pass).
        batches: Inputs and integer labels.
        optimizer: Steps the model's parameters.
        reg: The Jacobian regularizer (a :class:`jacobian.JacobianReg`).
        lambda_jr: Its weight (0: not evaluated, no extra cost).

    Returns:
        The mean training loss (supervised plus weighted regularizer) and the training accuracy.
    """
    net.train()
    total, correct, count = 0.0, 0, 0
    for data, target in batches:
        data.requires_grad = lambda_jr > 0
        optimizer.zero_grad()
        output = net(data)
        loss = F.cross_entropy(output, target)
        if lambda_jr > 0:
            loss = loss + lambda_jr * reg(data, output)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        correct += (output.argmax(1) == target).sum().item()
        count += len(target)
    net.eval()
    return total / max(count, 1), correct / max(count, 1)


def train_variant(
    experiment: Experiment,
    variant: Variant,
    train_set: TensorDataset,
    folder: Path,
    budget: Budget,
    *,
    mean: float,
    std: float,
    log: bool = True,
) -> tuple[nn.Sequential, dict]:
    """Trains one model to the recipe's epochs, resuming from and writing per-epoch checkpoints.

    The checkpoint ``folder/state.pt`` holds the model, the optimiser (momentum buffers), the
    schedule, the batch order's and torch's random state and the per-epoch log, so a resumed run
    continues exactly as an uninterrupted one would (on the same machine and thread count). Every
    variant starts from the same initialisation and sees the same batches.

    Args:
        experiment: The network and the recipe.
        variant: The model's regularizers.
        train_set: Training images in [0, 1] and labels.
        folder: The model's checkpoint folder (created when missing).
        budget: Stops between epochs when the next one would not fit.
        mean: The standardisation's mean.
        std: The standardisation's standard deviation.
        log: Print a line per epoch.

    Returns:
        The model (trained as far as the budget allowed, in eval mode) and its training log:
        ``epoch`` (epochs done), and per epoch ``losses``, ``train_accuracy`` (dropout active)
        and ``seconds``.
    """
    config = experiment.training
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "state.pt"
    x, y = train_set.tensors
    torch.manual_seed(config.seed)
    model = build_model(experiment, variant, mean, std, x.shape[1:])
    net = model[1]
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=variant.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestones(), gamma=config.decay
    )
    order = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    state: dict = {"epoch": 0, "losses": [], "train_accuracy": [], "seconds": []}
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["order_rng"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
    inputs = TensorDataset((x - mean) / std, y)
    loader = DataLoader(inputs, batch_size=config.batch_size, shuffle=True, generator=order)
    reg = JacobianReg(n=config.n_proj)
    while state["epoch"] < config.epochs:
        if not budget.allows(max(state["seconds"][-3:], default=0.0)):
            break
        lr = optimizer.param_groups[0]["lr"]
        tic = time.perf_counter()
        loss, acc = train_epoch(net, loader, optimizer, reg, variant.lambda_jr)
        scheduler.step()
        state["epoch"] += 1
        state["losses"].append(loss)
        state["train_accuracy"].append(acc)
        state["seconds"].append(time.perf_counter() - tic)
        checkpoint = {
            "net": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "order_rng": order.get_state(),
            "torch_rng": torch.get_rng_state(),
            "state": state,
            "variant": asdict(variant),
            "config": asdict(config),
        }
        save_atomic(checkpoint, path)
        if log:
            print(
                f"  {variant.name}: epoch {state['epoch']}/{config.epochs}, lr {lr:g}, "
                f"loss {loss:.4f}, train acc. {100 * acc:.2f}%, {state['seconds'][-1]:.1f} s",
                flush=True,
            )
    model.eval()
    return model, state


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """The share of inputs ``x`` that ``model`` classifies as ``y``."""
    return (predict(model, x) == y).float().mean().item()


def jacobian_norms(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The exact squared Frobenius norm of the input-output Jacobian of each input.

    Uses :func:`jacobian.jacobian_norm` under ``torch.no_grad()`` after a forward pass with
    gradients (one backward pass per output element, no double-backward graph).

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        batch_size: Inputs per forward pass.

    Returns:
        [N] values ``||d model(x_n) / d x_n||_F^2`` (float64).
    """
    norms = []
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            output = model(chunk)
        with torch.no_grad():
            norms.append(jacobian_norm(chunk, output).double())
    return torch.cat(norms) if norms else torch.zeros(0, dtype=torch.float64)


def pgd_iterations(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: Evaluation,
    generator: torch.Generator,
    batch_size: int = 1000,
) -> list[float]:
    """The accuracy after each PGD iteration (cross-entropy, one run from a random start).

    Args:
        model: The classifier.
        x: Test images in [0, 1].
        y: Their labels.
        config: The radius (``iteration_epsilon``), step and number of iterations.
        generator: Draws the random starts.
        batch_size: Images attacked at a time.

    Returns:
        ``iterations + 1`` accuracies: on the clean images, then after each iteration (an image
        counts as broken from the first iterate the model misclassifies on).
    """
    epsilon, iterations = config.iteration_epsilon, config.iterations
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
            current = current + config.iteration_step * grad.sign()
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
    model: nn.Module, x: Tensor, y: Tensor, epsilon: float, config: Evaluation, gen: torch.Generator
) -> Tensor:
    """Which images PGD with ``config``'s steps, restarts and losses fails to break ([N] bool)."""
    attack = pgd_attack(config.pgd_steps, config.pgd_restarts, config.pgd_losses, gen)
    return attack_survivors(model, x, y, attack, epsilon, batch_size=1000)


def evaluation_units(config: Evaluation) -> list[str]:
    """The cached units of one model's evaluation, in the order they run."""
    pgd = [f"pgd:{e:g}" for e in config.epsilons if e > 0]
    check = ["pgd-check"] if config.check_size else []
    curve = ["iterations"] if config.iterations else []
    return ["clean", "noise", "fgsm", *pgd, *check, *curve, "margins"]


# The settings each unit's result depends on: a cached result is reused while they stay the same.
UNIT_SETTINGS = {
    "clean": ("test_size",),
    "noise": ("test_size", "sigmas", "noise_draws", "seed"),
    "fgsm": ("test_size", "epsilons"),
    "pgd": ("test_size", "pgd_steps", "pgd_restarts", "pgd_losses", "check_size", "seed"),
    "pgd-check": (
        *("test_size", "epsilons", "check_size", "check_steps", "check_restarts"),
        *("pgd_losses", "seed"),
    ),
    "iterations": ("test_size", "iteration_epsilon", "iteration_step", "iterations", "seed"),
    "margins": ("test_size", "margin_samples", "margin_directions", "max_distance", "seed"),
}


def unit_key(unit: str, config: Evaluation) -> str:
    """The cache key of a unit: its name and a hash of the settings its result depends on."""
    settings = {k: getattr(config, k) for k in UNIT_SETTINGS[unit.split(":")[0]]}
    text = json.dumps(settings, sort_keys=True)
    return f"{unit}@{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def evaluate_unit(
    unit: str, model: nn.Sequential, test_set: TensorDataset, config: Evaluation, dirs: Tensor
) -> dict[str, object]:
    """Runs one unit of a model's evaluation (see :func:`evaluation_units`).

    Every unit seeds its own generator from ``config.seed`` and the unit's name, so each unit
    gives the same result whether it runs alone (after a resume) or after the others.

    Args:
        unit: ``clean``, ``noise``, ``fgsm``, ``pgd:<epsilon>``, ``pgd-check``, ``iterations`` or
            ``margins``.
        model: ``Sequential(Normalize, network)``, in eval mode; inputs in [0, 1].
        test_set: The test images (in [0, 1]) and labels.
        config: The evaluation settings.
        dirs: [margin images, margin_directions, ...] unit directions for the margins.

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
        draws = config.noise_draws
        return {
            key: [
                sum(accuracy(model, white_noise(x, s, gen, clip), y) for _ in range(draws)) / draws
                for s in config.sigmas
            ]
            for key, clip in (("noise_accuracy", DATA_RANGE), ("noise_accuracy_unclipped", None))
        }
    if unit == "fgsm":
        return {"fgsm_accuracy": [attack_accuracy(model, x, y, fgsm, e) for e in config.epsilons]}
    if unit.startswith("pgd:"):
        survived = pgd_survivors(model, x, y, float(unit[4:]), config, gen)
        out = {"accuracy": survived.double().mean().item()}
        if config.check_size:
            out["accuracy_check_images"] = survived[: config.check_size].double().mean().item()
        return out
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
        return {"pgd_iterations_accuracy": pgd_iterations(model, x, y, config, gen)}
    if unit == "margins":
        xm, ym = x[: len(dirs)], y[: len(dirs)]
        rays = xm.repeat_interleave(dirs.shape[1], 0), dirs.flatten(0, 1)
        return {
            "margin_random": boundary_distances(model, *rays, config.max_distance).tolist(),
            "margin_adversarial": boundary_distances(
                model, xm, adversarial_directions(model, xm, ym), config.max_distance
            ).tolist(),
        }
    raise ValueError(f"unknown evaluation unit {unit!r}")


def margin_directions(shape: Sequence[int], config: Evaluation, count: int) -> Tensor:
    """The random directions of the margins, the same for every model: [count, k, *shape]."""
    gen = torch.Generator().manual_seed(config.seed + 4)
    k = config.margin_directions
    return random_directions(shape, count * k, gen).view(count, k, *shape)


def evaluate_variant(
    model: nn.Sequential,
    test_set: TensorDataset,
    config: Evaluation,
    cache: Path,
    budget: Budget,
    *,
    log: bool = True,
    name: str = "",
) -> dict[str, dict] | None:
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
    done = load_json(cache)
    x = test_set.tensors[0]
    count = len(x) if config.margin_samples is None else min(len(x), config.margin_samples)
    dirs = margin_directions(x.shape[1:], config, count)
    units = evaluation_units(config)
    for unit in units:
        key = unit_key(unit, config)
        if key in done:
            continue
        if not budget.allows(max((float(v["seconds"]) for v in done.values()), default=0.0)):
            return None
        tic = time.perf_counter()
        result = evaluate_unit(unit, model, test_set, config, dirs)
        result["seconds"] = time.perf_counter() - tic
        done[key] = result
        save_json(done, cache)
        if log:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float))
            print(f"  {name}: measured {unit}: {shown}", flush=True)
    return {unit: restore_inf(done[unit_key(unit, config)]) for unit in units}  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------


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


def model_summary(variant: Variant, state: dict, units: dict[str, dict], ev: Evaluation) -> dict:
    """One model's training log and measurements, as the JSON holds them.

    The per-sample margins (``margin_random_all``, ``margin_adversarial_all``) are for the
    figures; the JSON keeps their quantiles.
    """
    clean, margins = units["clean"], units["margins"]
    out: dict = {
        "label": variant.label,
        "weight_decay": variant.weight_decay,
        "dropout": variant.dropout,
        "lambda_jr": variant.lambda_jr,
        **{k: v for k, v in clean.items() if k != "seconds"},
        "noise_accuracy": units["noise"]["noise_accuracy"],
        "noise_accuracy_unclipped": units["noise"]["noise_accuracy_unclipped"],
        "fgsm_accuracy": units["fgsm"]["fgsm_accuracy"],
        "pgd_accuracy": [
            units[f"pgd:{e:g}"]["accuracy"] if e > 0 else clean["accuracy"] for e in ev.epsilons
        ],
    }
    if ev.check_size:
        out["pgd_check_images_accuracy"] = [
            units[f"pgd:{e:g}"]["accuracy_check_images"] if e > 0 else None for e in ev.epsilons
        ]
        out["pgd_check_strong_accuracy"] = units["pgd-check"]["accuracy"]
    if ev.iterations:
        out["pgd_iterations_accuracy"] = units["iterations"]["pgd_iterations_accuracy"]
    for key in ("margin_random", "margin_adversarial"):
        out[key] = quantiles(margins[key])
        out[f"{key}_all"] = margins[key]
    losses = state["losses"]
    out |= {
        "train_loss": losses,
        "train_accuracy": state["train_accuracy"],
        "final_train_loss": losses[-1] if losses else math.nan,
        "train_seconds": sum(state["seconds"]),
        "eval_seconds": sum(float(u["seconds"]) for u in units.values()),
    }
    return out


def summarise(
    experiment: Experiment,
    trained: dict[str, tuple[nn.Sequential, dict]],
    measured: dict[str, dict],
    test_set: TensorDataset,
    *,
    train_size: int,
    normalization: tuple[float, float],
    command: str,
    first_start: float,
) -> Summary:
    """Draws the decision-region slices and gathers every result of a finished run.

    Args:
        experiment: What ran (with only the variants that ran).
        trained: Each model and its training log, by variant name.
        measured: Each model's evaluation units, by variant name.
        test_set: The test images and labels.
        train_size: Training images used.
        normalization: The standardisation's mean and standard deviation.
        command: The command line that ran it.
        first_start: When the first piece of this run started (seconds since the epoch).

    Returns:
        What the JSON holds, plus the per-sample margins and the slices' grids (``*_all``,
        ``classes``) that only the figures use.
    """
    tic = time.perf_counter()
    ev, variants = experiment.evaluation, experiment.variants
    x, y = test_set.tensors
    slices = slices_through_first_correct(
        [(v.label, trained[v.name][0]) for v in variants],
        x,
        y,
        seed=ev.seed,
        max_distance=ev.max_distance,
        resolution=ev.slice_resolution,
    )
    models = {v.name: model_summary(v, trained[v.name][1], measured[v.name], ev) for v in variants}
    train_seconds = sum(m["train_seconds"] for m in models.values())
    eval_seconds = sum(m["eval_seconds"] for m in models.values())
    report_seconds = time.perf_counter() - tic
    paper = experiment.paper or {}
    return {
        "dataset": experiment.dataset,
        "command": command,
        "train_size": train_size,
        "test_size": len(x),
        "normalization": {"mean": normalization[0], "std": normalization[1]},
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
        "paper": {k: {"accuracy": a, "jacobian_frobenius": j} for k, (a, j) in paper.items()}
        or None,
        "models": models,
        "slices": [asdict(s) for s in slices],
        "machine": machine_info(),
        "wall": {
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "report_seconds": report_seconds,
            "compute_seconds": train_seconds + eval_seconds + report_seconds,
            "elapsed_seconds": time.time() - first_start,
        },
    }


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


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

    Args:
        experiment: What to train and measure.
        train_set: Training images in [0, 1] and labels (the first ``train_size`` are used).
        test_set: Test images in [0, 1] and labels (the first ``test_size`` are used).
        checkpoints: The folder of the checkpoints and cached measurements.
        budget: Stops between epochs or measurements when the next would not fit.
        train_only: Stop once every model is trained.
        command: The command line, for the summary.
        finish: Called with the summary once every model is measured, under the run's lock
            (only one process writes the results).
        log: Print what is done.

    Returns:
        The exit status (0: done, :data:`EXIT_UNFINISHED`: stopped with work left) and the
        summary (None unless done, and None in the process that left the results to another).
    """
    train_set = TensorDataset(*(t[: experiment.training.train_size] for t in train_set.tensors))
    test_set = TensorDataset(*(t[: experiment.evaluation.test_size] for t in test_set.tensors))
    images = train_set.tensors[0].double()
    mean, std = (
        (images.mean().item(), images.std().item()) if experiment.standardize else (0.0, 1.0)
    )
    root = checkpoints / f"{slug(experiment.dataset)}-{config_hash(experiment.training)}"
    root.mkdir(parents=True, exist_ok=True)
    first_start = load_json(root / "run.json").get("first_start") or time.time()
    save_json({"first_start": first_start, "train": asdict(experiment.training)}, root / "run.json")
    if log:
        print(
            f"{experiment.dataset}: {len(train_set)} training and {len(test_set)} test images, "
            f"{experiment.classes} classes, standardised with mean {mean:.4f} and std "
            f"{std:.4f}; {experiment.training.epochs} epochs (learning rate decays after epochs "
            f"{experiment.training.milestones()}); checkpoints in {root}.",
            flush=True,
        )
    epochs = experiment.training.epochs
    pending, trained, measured = False, {}, {}
    for variant in experiment.variants:
        with exclusive(root / variant.slug) as mine:
            if mine:
                trained[variant.name] = train_variant(
                    experiment, variant, train_set, root / variant.slug, budget, mean=mean, std=std
                )
        if not mine and log:
            print(f"  {variant.name}: another process has it; skipped.", flush=True)
        pending |= not mine or trained[variant.name][1]["epoch"] < epochs
    if train_only:
        return (EXIT_UNFINISHED if pending else 0), None
    for variant in experiment.variants:
        if variant.name not in trained or trained[variant.name][1]["epoch"] < epochs:
            continue
        with exclusive(root / variant.slug) as mine:
            cache = root / variant.slug / "measurements.json"
            model = trained[variant.name][0]
            ev = experiment.evaluation
            result = (
                evaluate_variant(model, test_set, ev, cache, budget, name=variant.name)
                if mine
                else None
            )
        if result is None:
            pending = True
        else:
            measured[variant.name] = result
    if pending:
        if log:
            print("Stopped with work left (or left to another process): run it again.", flush=True)
        return EXIT_UNFINISHED, None
    with exclusive(root) as mine:
        if not mine:
            return 0, None
        summary = summarise(
            experiment,
            trained,
            measured,
            test_set,
            train_size=len(train_set),
            normalization=(mean, std),
            command=command,
            first_start=float(first_start),
        )
        if finish is not None:
            finish(summary)
    return 0, summary
