"""One model's evaluation in cached units: accuracy, ‖J‖, noise, attacks and margins."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from jacobian import jacobian_norm
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from experiments.attacks import (
    DATA_RANGE,
    attack_survivors,
    fgsm,
    loss_gradient,
    pgd_attack,
    pgd_iterations,
    white_noise,
)
from experiments.margins import adversarial_directions, boundary_distances, random_directions
from experiments.models import predict
from experiments.spec import Evaluation
from experiments.store import load_json, restore_inf, save_json
from experiments.train import Budget


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """The share of inputs ``x`` that ``model`` classifies as ``y``."""
    return (predict(model, x) == y).float().mean().item()


def jacobian_norms(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """The exact ``||d model(x_n) / d x_n||_F^2`` of each input, without double-backward graph."""
    norms = []
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            output = model(chunk)
        with torch.no_grad():
            norms.append(jacobian_norm(chunk, output).double())
    return torch.cat(norms) if norms else torch.zeros(0, dtype=torch.float64)


def pgd_survived(
    model: nn.Module, x: Tensor, y: Tensor, epsilon: float, config: Evaluation, gen: torch.Generator
) -> Tensor:
    """1.0 for each image PGD (``config``'s steps, restarts and losses) fails to break, else 0."""
    attack = pgd_attack(config.pgd_steps, config.pgd_restarts, config.pgd_losses, gen)
    return attack_survivors(model, x, y, attack, epsilon, batch_size=1000).double()


def units(config: Evaluation) -> list[str]:
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


def measure(
    unit: str, model: nn.Sequential, test_set: TensorDataset, config: Evaluation, dirs: Tensor
) -> dict[str, object]:
    """Runs one unit of a model's evaluation (see :func:`units`).

    Every unit seeds its own generator from ``config.seed`` and the unit's name, so it gives the
    same result whether it runs alone (after a resume) or after the others. ``model`` is a
    ``Sequential(Normalize, network)`` taking images in [0, 1]; ``dirs`` are the margins' random
    directions, [images, directions per image, ...]. Distances in the result may be inf.
    """
    x, y = test_set.tensors
    salt = int(hashlib.sha256(unit.encode()).hexdigest()[:8], 16)
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + salt)
    if unit == "clean":
        # The paper's J: the logits' Jacobian with respect to the standardised input.
        norms, std = jacobian_norms(model[1], model[0](x)), model[0].std
        grad = loss_gradient(model, x, y).flatten(1)
        return {
            "accuracy": accuracy(model, x, y),
            "jacobian_frobenius": norms.sqrt().mean().item(),
            "jacobian_frobenius_sq": norms.mean().item(),
            "jacobian_frobenius_pixels": (norms.sqrt() / std).mean().item(),
            "jacobian_frobenius_sq_pixels": (norms / std**2).mean().item(),
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
        survived = [attack_survivors(model, x, y, fgsm, e).double() for e in config.epsilons]
        return {"fgsm_accuracy": [s.mean().item() for s in survived]}
    if unit.startswith("pgd:"):
        survived = pgd_survived(model, x, y, float(unit[4:]), config, gen)
        out = {"accuracy": survived.mean().item()}
        if config.check_size:
            out["accuracy_check_images"] = survived[: config.check_size].mean().item()
        return out
    if unit == "pgd-check":
        strong = replace(config, pgd_steps=config.check_steps, pgd_restarts=config.check_restarts)
        xc, yc = x[: config.check_size], y[: config.check_size]
        return {
            "accuracy": [
                pgd_survived(model, xc, yc, e, strong, gen).mean().item()
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


def evaluate(
    model: nn.Sequential,
    test_set: TensorDataset,
    config: Evaluation,
    cache: Path,
    budget: Budget,
    *,
    log: bool = True,
    name: str = "",
) -> dict[str, dict] | None:
    """Measures one model unit by unit, caching each in ``cache``; None if the budget stops it."""
    done = load_json(cache)
    x = test_set.tensors[0]
    count = len(x) if config.margin_samples is None else min(len(x), config.margin_samples)
    dirs = margin_directions(x.shape[1:], config, count)
    for unit in units(config):
        key = unit_key(unit, config)
        if key in done:
            continue
        if not budget.allows(max((float(v["seconds"]) for v in done.values()), default=0.0)):
            return None
        tic = time.perf_counter()
        done[key] = measure(unit, model, test_set, config, dirs)
        done[key]["seconds"] = time.perf_counter() - tic
        save_json(done, cache)
        if log:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in done[key].items() if isinstance(v, float))
            print(f"  {name}: measured {unit}: {shown}", flush=True)
    return {unit: restore_inf(done[unit_key(unit, config)]) for unit in units(config)}  # type: ignore[misc]
