"""The whole evaluation: train each model, then measure accuracy, ‖J‖, robustness and margins."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from jacobian import jacobian_norm
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from experiments.attacks import (
    DATA_RANGE,
    attack_accuracy,
    fgsm,
    loss_gradient,
    pgd_attack,
    white_noise,
)
from experiments.margins import (
    MAX_DISTANCE,
    SliceResult,
    adversarial_directions,
    boundary_distances,
    random_directions,
    slices_through_first_correct,
)
from experiments.models import default_model, predict
from experiments.training import progress_bar, train_model


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """The share of inputs classified correctly.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        y: Labels [N].
        batch_size: Inputs per forward pass.

    Returns:
        The accuracy in [0, 1].
    """
    return (predict(model, x, batch_size) == y).float().mean().item()


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


def jacobian_norm_sq(model: nn.Module, x: Tensor, batch_size: int = 256) -> float:
    """The mean exact squared Frobenius norm of the input-output Jacobian per input.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        batch_size: Inputs per forward pass.

    Returns:
        The mean of ``||d model(x_b) / d x_b||_F^2`` over the N inputs (see
        :func:`jacobian_norms`).
    """
    return jacobian_norms(model, x, batch_size).mean().item()


@dataclass
class RobustnessConfig:
    """What to train and how to evaluate it.

    Attributes:
        epochs: Training epochs (the same for every model).
        lambda_jr: The weight of the Jacobian regularizer of the regularized model.
        weight_decay: L2 weight decay of a third, weight-decayed model; 0 leaves it out.
        lr: SGD's learning rate.
        momentum: SGD's momentum.
        batch_size: Training batch size.
        n_proj: Random projections of the regularizer in training.
        seed: Seeds the initialisation (the same for every model), batches, noise and attacks.
        sigmas: Standard deviations of the white noise.
        noise_draws: Noise draws per test input and sigma (accuracies are averaged over them).
        clip_noise: Clip noisy inputs to the data range [0, 1], as the attacks are.
        epsilons: L-infinity radii of FGSM and PGD.
        pgd_steps: PGD's steps per run (random start, step size 2.5 * epsilon / steps).
        pgd_restarts: PGD's runs from independent random starts, for inputs not yet broken.
        pgd_losses: The losses PGD's runs ascend in turn (``"ce"``, ``"margin"``).
        margin_samples: Test inputs whose margins are measured (the first ones; None: all).
        margin_directions: Random directions per test input.
        max_distance: How far the margin search walks.
        slice_resolution: Grid points per axis of the decision-region figure.
    """

    epochs: int = 30
    lambda_jr: float = 0.01
    weight_decay: float = 5e-4
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32
    n_proj: int = 1
    seed: int = 0
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    noise_draws: int = 5
    clip_noise: bool = True
    epsilons: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
    pgd_steps: int = 20
    pgd_restarts: int = 1
    pgd_losses: tuple[str, ...] = ("ce",)
    margin_samples: int | None = None
    margin_directions: int = 8
    max_distance: float = MAX_DISTANCE
    slice_resolution: int = 201


@dataclass
class ModelResult:
    """The measurements of one trained model on the test set.

    Attributes:
        name: The model's label.
        lambda_jr: The weight of its Jacobian regularizer.
        weight_decay: Its L2 weight decay.
        train_seconds: Wall time of its training.
        eval_seconds: Wall time of its evaluation.
        final_train_loss: Its mean training loss in the last epoch.
        clean_accuracy: Test accuracy.
        jacobian_sq: The mean exact ``||J||_F^2`` per test input.
        jacobian_frobenius: The mean exact ``||J||_F`` per test input.
        zero_gradient: The share of test inputs whose input gradient of the loss is exactly zero
            (float32 underflow on confident predictions), which gradient attacks cannot move.
        noise_accuracy: Accuracy under white noise, one per ``config.sigmas``.
        fgsm_accuracy: Accuracy under FGSM, one per ``config.epsilons``.
        pgd_accuracy: Accuracy under PGD, one per ``config.epsilons``.
        margin_random: Distances to the boundary along random directions, per (input, direction).
        margin_adversarial: Distances along each input's adversarial direction.
    """

    name: str
    lambda_jr: float
    weight_decay: float
    train_seconds: float
    eval_seconds: float
    final_train_loss: float
    clean_accuracy: float
    jacobian_sq: float
    jacobian_frobenius: float
    zero_gradient: float
    noise_accuracy: list[float]
    fgsm_accuracy: list[float]
    pgd_accuracy: list[float]
    margin_random: list[float] = field(repr=False)
    margin_adversarial: list[float] = field(repr=False)


@dataclass
class RobustnessResult:
    """Everything the evaluation measured.

    Attributes:
        dataset: The data's name.
        config: The configuration it ran with.
        models: One result per trained model.
        slices: The decision-region slices around one test input.
        test_size: Test inputs evaluated.
        seconds: Wall time of the whole evaluation.
        machine: Where it ran.
    """

    dataset: str
    config: RobustnessConfig
    models: list[ModelResult]
    slices: list[SliceResult]
    test_size: int
    seconds: float
    machine: dict[str, object]


def evaluate_model(
    model: nn.Module,
    test_set: TensorDataset,
    config: RobustnessConfig,
    random_dirs: Tensor,
    progress: bool = False,
    desc: str = "evaluating",
) -> dict[str, object]:
    """Measures one trained model: clean accuracy, Jacobian norm, noise, attacks and margins.

    Args:
        model: The trained classifier.
        test_set: The test images (in [0, 1]) and labels.
        config: The noise levels, radii and margin settings; its seed fixes every draw.
        random_dirs: [margin_samples, margin_directions, ...] unit directions for the margins
            (shared by the models so that they are compared on the same rays).
        progress: Show a tqdm bar over the steps.
        desc: The bar's label.

    Returns:
        The fields of :class:`ModelResult` that the evaluation measures.
    """
    model.eval()
    x, y = test_set.tensors
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    attack_gen = torch.Generator().manual_seed(config.seed + 2)
    clip = DATA_RANGE if config.clip_noise else None

    attack = pgd_attack(config.pgd_steps, config.pgd_restarts, config.pgd_losses, attack_gen)

    steps = ["clean", "noise", "fgsm", "pgd", "margins"]
    out: dict[str, object] = {}
    for step in progress_bar(steps, progress, desc):
        if step == "clean":
            out["clean_accuracy"] = accuracy(model, x, y)
            norms = jacobian_norms(model, x)
            out["jacobian_sq"] = norms.mean().item()
            out["jacobian_frobenius"] = norms.sqrt().mean().item()
            grad = loss_gradient(model, x, y).flatten(1)
            out["zero_gradient"] = (grad == 0).all(1).float().mean().item()
        elif step == "noise":
            out["noise_accuracy"] = [
                sum(
                    accuracy(model, white_noise(x, s, noise_gen, clip), y)
                    for _ in range(config.noise_draws)
                )
                / config.noise_draws
                for s in config.sigmas
            ]
        elif step == "fgsm":
            out["fgsm_accuracy"] = [attack_accuracy(model, x, y, fgsm, e) for e in config.epsilons]
        elif step == "pgd":
            out["pgd_accuracy"] = [attack_accuracy(model, x, y, attack, e) for e in config.epsilons]
        else:
            xm, ym = x[: len(random_dirs)], y[: len(random_dirs)]
            k = random_dirs.shape[1]
            dist = boundary_distances(
                model,
                xm.repeat_interleave(k, 0),
                random_dirs.flatten(0, 1),
                max_distance=config.max_distance,
            )
            out["margin_random"] = dist.tolist()
            adv = boundary_distances(
                model, xm, adversarial_directions(model, xm, ym), config.max_distance
            )
            out["margin_adversarial"] = adv.tolist()
    return out


def machine_info() -> dict[str, object]:
    """Where the evaluation ran: platform, CPU count, torch threads and version."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run(
    train_set: TensorDataset,
    test_set: TensorDataset,
    config: RobustnessConfig | None = None,
    *,
    dataset: str = "data",
    model_factory: Callable[[], nn.Module] | None = None,
    progress: bool = False,
) -> RobustnessResult:
    """Trains the same model without and with Jacobian regularization, and evaluates both.

    Every model starts from the same initialisation and sees the same batches; a third model
    with L2 weight decay is trained when ``config.weight_decay`` is positive.

    Args:
        train_set: Training images in [0, 1] and labels.
        test_set: Test images in [0, 1] and labels.
        config: The recipe and evaluation settings (default :class:`RobustnessConfig`).
        dataset: The data's name, for the table and JSON.
        model_factory: Builds a fresh untrained model; default :func:`default_model`.
        progress: Show tqdm bars.

    Returns:
        The measurements.
    """
    config = config or RobustnessConfig()
    start = time.perf_counter()
    x, y = test_set.tensors
    if model_factory is None:
        classes = int(max(train_set.tensors[1].max(), y.max())) + 1

        def model_factory() -> nn.Module:
            return default_model(x.shape[1:], classes)

    variants = [("no regularization", 0.0, 0.0)]
    if config.weight_decay > 0:
        variants.append((f"L2 (wd={config.weight_decay:g})", 0.0, config.weight_decay))
    variants.append((f"Jacobian (λ={config.lambda_jr:g})", config.lambda_jr, 0.0))

    count = len(x) if config.margin_samples is None else min(len(x), config.margin_samples)
    dir_gen = torch.Generator().manual_seed(config.seed + 4)
    k = config.margin_directions
    dirs = random_directions(x.shape[1:], count * k, dir_gen).view(count, k, *x.shape[1:])

    results, trained = [], []
    for name, lambda_jr, weight_decay in variants:
        torch.manual_seed(config.seed)
        model = model_factory()
        tic = time.perf_counter()
        losses = train_model(
            model,
            train_set,
            epochs=config.epochs,
            lambda_jr=lambda_jr,
            weight_decay=weight_decay,
            lr=config.lr,
            momentum=config.momentum,
            batch_size=config.batch_size,
            n_proj=config.n_proj,
            seed=config.seed,
            progress=progress,
            desc=f"training: {name}",
        )
        seconds = time.perf_counter() - tic
        measured = evaluate_model(model, test_set, config, dirs, progress, f"evaluating: {name}")
        eval_seconds = time.perf_counter() - tic - seconds
        results.append(
            ModelResult(
                name=name,
                lambda_jr=lambda_jr,
                weight_decay=weight_decay,
                train_seconds=seconds,
                eval_seconds=eval_seconds,
                final_train_loss=losses[-1] if losses else math.nan,
                **measured,  # type: ignore[arg-type]
            )
        )
        trained.append((name, model))

    slices = slices_through_first_correct(
        trained,
        x,
        y,
        seed=config.seed,
        max_distance=config.max_distance,
        resolution=config.slice_resolution,
    )
    return RobustnessResult(
        dataset=dataset,
        config=config,
        models=results,
        slices=slices,
        test_size=len(x),
        seconds=time.perf_counter() - start,
        machine=machine_info(),
    )
