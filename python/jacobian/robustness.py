"""Robustness of Jacobian-regularized models: white noise, FGSM/PGD attacks, margins, figures."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from jacobian.regularizer import JacobianReg

Attack = Callable[[nn.Module, Tensor, Tensor, float], Tensor]

DATA_RANGE = (0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """A fully connected classifier: inputs -> 200 -> 200 -> classes with ReLUs (as upstream)."""

    def __init__(self, inputs: int = 64, classes: int = 10, hidden: int = 200) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps images [B, ...] to logits [B, classes]."""
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 images: two 5x5 convolutions with max pooling, then 120-84-classes."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps images [B, 1, 28, 28] to logits [B, classes]."""
        return self.head(self.features(x))


def default_model(image_shape: Sequence[int], classes: int = 10) -> nn.Module:
    """Picks the model the evaluation trains for images of a given shape.

    Args:
        image_shape: The shape of one image, without the batch dimension.
        classes: The number of classes.

    Returns:
        LeNet-5 for 1x28x28 images (MNIST), otherwise an MLP with two hidden layers of 200.
    """
    if tuple(image_shape) == (1, 28, 28):
        return LeNet5(classes)
    return MLP(inputs=math.prod(image_shape), classes=classes)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_model(
    model: nn.Module,
    train_set: TensorDataset,
    *,
    epochs: int,
    lambda_jr: float = 0.0,
    weight_decay: float = 0.0,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 32,
    n_proj: int = 1,
    seed: int = 0,
    progress: bool = False,
    desc: str = "training",
) -> list[float]:
    """Trains a classifier with cross-entropy, optionally plus Jacobian regularization.

    The batch order depends on ``seed`` only, so models trained with the same seed see the same
    batches whatever their regularizer draws.

    Args:
        model: The classifier to train in place.
        train_set: Images and integer labels.
        epochs: Passes over the training set.
        lambda_jr: The weight of the Jacobian regularizer (0: none, and no extra cost).
        weight_decay: L2 weight decay of SGD (the paper's other baseline).
        lr: SGD's learning rate.
        momentum: SGD's momentum.
        batch_size: Examples per step.
        n_proj: Random projections of the regularizer.
        seed: Seeds the batch order and the regularizer's projections.
        progress: Show a tqdm bar over the epochs.
        desc: The bar's label.

    Returns:
        The mean training loss (supervised plus weighted regularizer) of each epoch.
    """
    batches = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=batches)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    reg = JacobianReg(n=n_proj)
    torch.manual_seed(seed)
    model.train()
    losses = []
    bar = _progress(range(epochs), progress, desc)
    for _ in bar:
        total, count = 0.0, 0
        for data, target in loader:
            data.requires_grad = lambda_jr > 0
            optimizer.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            if lambda_jr > 0:
                loss = loss + lambda_jr * reg(data, output)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(target)
            count += len(target)
        losses.append(total / count)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses


def _progress(iterable: Iterable, enabled: bool, desc: str) -> Iterable:
    """Wraps an iterable in a tqdm bar when enabled (tqdm is only imported then)."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False)


# --------------------------------------------------------------------------------------------
# Evaluation: accuracy, Jacobian norm, noise and attacks
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Predicted classes of a batch of inputs, computed in chunks.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        batch_size: Inputs per forward pass.

    Returns:
        The argmax of the logits, [N] int64.
    """
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


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


def jacobian_norm_sq(model: nn.Module, x: Tensor, batch_size: int = 256) -> float:
    """The mean exact squared Frobenius norm of the input-output Jacobian per input.

    Uses ``JacobianReg(n=-1)`` under ``torch.no_grad()`` after a forward pass with gradients:
    per batch, the mean of ``||J_b||_F^2`` is twice the regularizer's value.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        batch_size: Inputs per forward pass.

    Returns:
        The mean of ``||d model(x_b) / d x_b||_F^2`` over the N inputs.
    """
    reg = JacobianReg(n=-1)
    total = 0.0
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            output = model(chunk)
        with torch.no_grad():
            total += 2.0 * reg(chunk, output).item() * len(chunk)
    return total / len(x)


def white_noise(
    x: Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    clip: tuple[float, float] | None = DATA_RANGE,
) -> Tensor:
    """Adds white Gaussian noise to inputs.

    Args:
        x: Inputs.
        sigma: The standard deviation of the noise, per input element.
        generator: A CPU generator for reproducible draws.
        clip: The data range to clip the result to, or None to leave it unclipped.

    Returns:
        ``x + sigma * N(0, 1)``, clipped to ``clip``.
    """
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    noisy = x + sigma * noise
    return noisy.clamp(*clip) if clip is not None else noisy


def _loss_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The gradient of the summed cross-entropy with respect to the inputs."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    bounds: tuple[float, float] = DATA_RANGE,
) -> Tensor:
    """The fast gradient sign method (Goodfellow et al. 2015), an L-infinity attack.

    Args:
        model: The classifier to attack.
        x: Clean inputs in ``bounds``.
        y: Their labels.
        epsilon: The L-infinity radius.
        bounds: The data range the adversarial inputs are clipped to.

    Returns:
        ``clip(x + epsilon * sign(grad_x loss))``, detached.
    """
    if epsilon == 0:
        return x.detach().clone()
    grad = _loss_gradient(model, x, y)
    return (x.detach() + epsilon * grad.sign()).clamp(*bounds)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    epsilon: float,
    steps: int = 20,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = DATA_RANGE,
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018) in the L-infinity ball, with random start.

    Args:
        model: The classifier to attack.
        x: Clean inputs in ``bounds``.
        y: Their labels.
        epsilon: The L-infinity radius.
        steps: Signed-gradient steps.
        step_size: The size of each step; default ``2.5 * epsilon / steps``.
        generator: A CPU generator for the random start.
        bounds: The data range the iterates are clipped to.

    Returns:
        Adversarial inputs within ``epsilon`` of ``x`` (L-infinity) and inside ``bounds``.
    """
    x = x.detach()
    if epsilon == 0:
        return x.clone()
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    start = (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1).to(x.device)
    lower, upper = (x - epsilon).clamp(*bounds), (x + epsilon).clamp(*bounds)
    x_adv = (x + epsilon * start).clamp(*bounds)
    for _ in range(steps):
        grad = _loss_gradient(model, x_adv, y)
        x_adv = torch.minimum(torch.maximum(x_adv + alpha * grad.sign(), lower), upper)
    return x_adv


def attack_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    epsilon: float,
    batch_size: int = 1024,
) -> float:
    """The accuracy on adversarial inputs, attacked in chunks.

    Args:
        model: The classifier.
        x: Clean inputs.
        y: Their labels.
        attack: ``attack(model, x, y, epsilon)`` returning adversarial inputs.
        epsilon: The attack's radius.
        batch_size: Inputs attacked at a time.

    Returns:
        The accuracy in [0, 1].
    """
    correct = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        correct += (predict(model, attack(model, xb, yb, epsilon)) == yb).sum().item()
    return correct / len(x)


# --------------------------------------------------------------------------------------------
# Margins and decision regions
# --------------------------------------------------------------------------------------------


def unit(directions: Tensor) -> Tensor:
    """Normalises each direction [N, ...] to unit L2 norm (zero directions stay zero)."""
    norms = directions.flatten(1).norm(dim=1).clamp_min(1e-30)
    return directions / norms.view(-1, *([1] * (directions.dim() - 1)))


def random_directions(
    shape: Sequence[int], count: int, generator: torch.Generator | None = None
) -> Tensor:
    """Directions drawn uniformly on the unit sphere of input space.

    Args:
        shape: The shape of one input.
        count: How many directions.
        generator: A CPU generator for reproducible draws.

    Returns:
        [count, *shape] unit vectors.
    """
    return unit(torch.randn((count, *shape), generator=generator))


def adversarial_directions(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The input gradients of the cross-entropy, normalised to unit L2 norm.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        y: Their labels.

    Returns:
        [N, ...] unit directions of steepest ascent of the loss.
    """
    return unit(_loss_gradient(model, x, y))


@torch.no_grad()
def boundary_distances(
    model: nn.Module,
    x: Tensor,
    directions: Tensor,
    max_distance: float = 20.0,
    scan_step: float = 0.05,
    tol: float = 1e-4,
    batch_size: int = 8192,
) -> Tensor:
    """The distances from inputs to the nearest decision boundary along given directions.

    Walks from each input along its unit direction in steps of ``scan_step`` until the predicted
    class differs from the one at the input, then bisects the last step down to ``tol``. The
    result is the distance to the first boundary on the ray, unless the ray crosses two
    boundaries within one scan step. The walk is not clipped to the data range: it measures the
    model's geometry.

    Args:
        model: The classifier.
        x: Inputs [N, ...].
        directions: Directions [N, ...], normalised inside (any nonzero length).
        max_distance: How far to walk; rays that do not change class by then give ``inf``.
        scan_step: The step of the walk.
        tol: The precision of the bisection.
        batch_size: Inputs per forward pass.

    Returns:
        [N] distances, ``inf`` where no boundary was found within ``max_distance``.
    """
    if directions.shape != x.shape:
        raise ValueError(f"directions {tuple(directions.shape)} differ from x {tuple(x.shape)}")
    x, u = x.detach(), unit(directions.detach().to(x.dtype))
    count = len(x)
    base = predict(model, x, batch_size)
    pad = [1] * (x.dim() - 1)
    steps = max(1, math.ceil(max_distance / scan_step))
    hi = torch.full((count,), math.inf, dtype=x.dtype, device=x.device)
    todo = torch.arange(count, device=x.device)
    chunk = max(1, min(steps, batch_size // max(1, count)))
    for first in range(1, steps + 1, chunk):
        if len(todo) == 0:
            break
        ks = torch.arange(first, min(first + chunk, steps + 1), device=x.device)
        ts = (ks * scan_step).clamp(max=max_distance).to(x.dtype)
        points = x[todo, None] + ts.view(1, -1, *pad) * u[todo, None]
        preds = predict(model, points.flatten(0, 1), batch_size).view(len(todo), len(ts))
        changed = preds != base[todo, None]
        hit = changed.any(1)
        first_change = changed.float().argmax(1)
        hi[todo[hit]] = ts[first_change[hit]]
        todo = todo[~hit]
    idx = torch.isfinite(hi).nonzero().squeeze(1)
    top = hi[idx]
    bottom = (top - scan_step).clamp(min=0)
    while len(idx) and (top - bottom).max() > tol:
        mid = (top + bottom) / 2
        other = predict(model, x[idx] + mid.view(-1, *pad) * u[idx], batch_size) != base[idx]
        top = torch.where(other, mid, top)
        bottom = torch.where(other, bottom, mid)
    hi[idx] = (top + bottom) / 2
    return hi


def boundary_distance(
    model: nn.Module,
    x: Tensor,
    direction: Tensor,
    max_distance: float = 20.0,
    scan_step: float = 0.05,
    tol: float = 1e-4,
) -> float:
    """The distance from one input to the nearest decision boundary along a direction.

    See :func:`boundary_distances`, which this calls with a batch of one.

    Args:
        model: The classifier.
        x: One input (no batch dimension).
        direction: A direction of the same shape, normalised inside.
        max_distance: How far to walk.
        scan_step: The step of the walk before the bisection.
        tol: The precision of the bisection.

    Returns:
        The L2 distance to where the predicted class first changes, or ``inf``.
    """
    return float(
        boundary_distances(model, x[None], direction[None], max_distance, scan_step, tol)[0]
    )


@torch.no_grad()
def decision_slice(
    model: nn.Module,
    x: Tensor,
    u: Tensor,
    v: Tensor,
    extent: float,
    resolution: int = 201,
) -> Tensor:
    """The predicted classes on the plane ``x + a*u + b*v`` for ``a, b`` in ``[-extent, extent]``.

    Args:
        model: The classifier.
        x: One input (no batch dimension).
        u: The first direction (horizontal axis), same shape as ``x``.
        v: The second direction (vertical axis), same shape as ``x``.
        extent: The half-width of the square.
        resolution: Grid points per axis.

    Returns:
        [resolution, resolution] classes, rows indexed by ``b`` (ascending), columns by ``a``.
    """
    coords = torch.linspace(-extent, extent, resolution, dtype=x.dtype)
    b, a = torch.meshgrid(coords, coords, indexing="ij")
    pad = [1] * x.dim()
    points = x + a.reshape(-1, *pad) * u + b.reshape(-1, *pad) * v
    return predict(model, points).view(resolution, resolution)


def nearest_in_plane(
    model: nn.Module,
    x: Tensor,
    u: Tensor,
    v: Tensor,
    angles: int = 360,
    max_distance: float = 20.0,
) -> tuple[float, float]:
    """The distance to the nearest decision boundary within the plane ``x + a*u + b*v``.

    Args:
        model: The classifier.
        x: One input (no batch dimension).
        u: An in-plane unit direction.
        v: An in-plane unit direction orthogonal to ``u``.
        angles: Rays cast from ``x`` in the plane.
        max_distance: How far each ray goes.

    Returns:
        The smallest distance over the rays, and the angle (radians, from ``u`` towards ``v``)
        of the ray that attains it.
    """
    theta = torch.linspace(0, 2 * math.pi, angles + 1, dtype=x.dtype)[:-1]
    pad = [1] * x.dim()
    dirs = theta.cos().view(-1, *pad) * u + theta.sin().view(-1, *pad) * v
    dist = boundary_distances(model, x.expand(angles, *x.shape), dirs, max_distance)
    best = int(dist.argmin())
    return float(dist[best]), float(theta[best])


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------


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
        pgd_steps: PGD's steps (random start, step size 2.5 * epsilon / steps).
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
    margin_samples: int | None = None
    margin_directions: int = 8
    max_distance: float = 20.0
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
    zero_gradient: float
    noise_accuracy: list[float]
    fgsm_accuracy: list[float]
    pgd_accuracy: list[float]
    margin_random: list[float] = field(repr=False)
    margin_adversarial: list[float] = field(repr=False)

    def summary(self) -> dict[str, object]:
        """The result without per-sample margins, with their quantiles instead (for JSON)."""
        out = {k: v for k, v in asdict(self).items() if not k.startswith("margin_")}
        out["jacobian_frobenius"] = math.sqrt(self.jacobian_sq)
        for key in ("margin_random", "margin_adversarial"):
            out[key] = _quantiles(getattr(self, key))
        return out


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    """Quantiles of distances (inf counts as larger than any) and the share of inf ones."""
    data = torch.tensor(list(values), dtype=torch.float64)
    out: dict[str, float | None] = {}
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        value = data.quantile(q).item() if len(data) else math.nan
        out[f"q{round(q * 100):02d}"] = value if math.isfinite(value) else None
    out["not_found"] = (~torch.isfinite(data)).double().mean().item() if len(data) else 0.0
    return out


@dataclass
class SliceResult:
    """A 2-D slice of input space around one test input, for one model.

    Attributes:
        name: The model's label.
        classes: [resolution, resolution] predicted classes (rows: adversarial axis).
        extent: The half-width of the square.
        nearest: The distance to the nearest boundary in the plane.
        nearest_angle: The direction of that boundary (radians, from the random axis).
        adversarial: The distance to the boundary along the adversarial direction.
        label: The input's true class.
    """

    name: str
    classes: list[list[int]]
    extent: float
    nearest: float
    nearest_angle: float
    adversarial: float
    label: int


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

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (per-sample margins and slice grids are left out)."""
        return {
            "dataset": self.dataset,
            "test_size": self.test_size,
            "seconds": self.seconds,
            "machine": self.machine,
            "config": asdict(self.config),
            "models": [m.summary() for m in self.models],
            "slices": [{k: v for k, v in asdict(s).items() if k != "classes"} for s in self.slices],
        }

    def write_json(self, path: str | Path) -> None:
        """Writes :meth:`to_dict` as indented JSON (infinite or NaN numbers become null)."""
        text = json.dumps(_json_safe(self.to_dict()), indent=2, allow_nan=False)
        Path(path).write_text(text + "\n")


def _json_safe(value: object) -> object:
    """Replaces infinite and NaN floats (which JSON cannot hold) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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

    def pgd_attack(m: nn.Module, xb: Tensor, yb: Tensor, eps: float) -> Tensor:
        return pgd(m, xb, yb, eps, steps=config.pgd_steps, generator=attack_gen)

    steps = ["clean", "noise", "fgsm", "pgd", "margins"]
    out: dict[str, object] = {}
    for step in _progress(steps, progress, desc):
        if step == "clean":
            out["clean_accuracy"] = accuracy(model, x, y)
            out["jacobian_sq"] = jacobian_norm_sq(model, x)
            grad = _loss_gradient(model, x, y).flatten(1)
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
            out["pgd_accuracy"] = [
                attack_accuracy(model, x, y, pgd_attack, e) for e in config.epsilons
            ]
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


def _pick_slice_input(models: Sequence[nn.Module], x: Tensor, y: Tensor) -> int:
    """The first test input that every model classifies correctly (else the first one)."""
    ok = torch.ones(len(x), dtype=torch.bool)
    for model in models:
        ok &= predict(model, x) == y
    hits = ok.nonzero()
    return int(hits[0]) if len(hits) else 0


def decision_slices(
    models: Sequence[tuple[str, nn.Module]],
    x: Tensor,
    label: int,
    config: RobustnessConfig,
) -> list[SliceResult]:
    """The decision regions of each model on a plane through one input.

    The plane is spanned by a random direction (the same draw for every model) and the model's
    own adversarial direction (its input gradient of the loss); the random direction is made
    orthogonal to the adversarial one. The square is the same size for every model: 1.5 times
    the largest nearest-boundary distance, at least 0.5 and at most ``config.max_distance``.

    Args:
        models: Labels and trained classifiers.
        x: One input (no batch dimension).
        label: Its true class.
        config: Its seed draws the random direction.

    Returns:
        One slice per model.
    """
    gen = torch.Generator().manual_seed(config.seed + 3)
    rand = random_directions(x.shape, 1, gen)[0].to(x)
    planes = []
    for name, model in models:
        v = adversarial_directions(model, x[None], torch.tensor([label]))[0]
        u = rand - (rand * v).sum() * v
        u = u / u.norm()
        adv = boundary_distance(model, x, v, config.max_distance)
        # The adversarial direction lies in the plane: no nearer boundary can be farther away.
        reach = min(config.max_distance, adv + 0.1) if math.isfinite(adv) else config.max_distance
        nearest, angle = nearest_in_plane(model, x, u, v, max_distance=reach)
        planes.append((name, model, u, v, nearest, angle, adv))
    finite = [p[4] for p in planes if math.isfinite(p[4])]
    extent = min(config.max_distance, max(0.5, 1.5 * max(finite, default=0.0)))
    return [
        SliceResult(
            name=name,
            classes=decision_slice(model, x, u, v, extent, config.slice_resolution).tolist(),
            extent=extent,
            nearest=nearest,
            nearest_angle=angle,
            adversarial=adv,
            label=label,
        )
        for name, model, u, v, nearest, angle, adv in planes
    ]


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
    out_dir: str | Path | None = None,
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
        out_dir: When given, writes ``robustness.json`` and the figures there.
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

    index = _pick_slice_input([m for _, m in trained], x, y)
    slices = decision_slices(trained, x[index], int(y[index]), config)
    result = RobustnessResult(
        dataset=dataset,
        config=config,
        models=results,
        slices=slices,
        test_size=len(x),
        seconds=time.perf_counter() - start,
        machine=machine_info(),
    )
    if out_dir is not None:
        save(result, out_dir)
    return result


def save(result: RobustnessResult, out_dir: str | Path) -> list[Path]:
    """Writes the JSON and the three figures of a result into a folder.

    Args:
        result: What :func:`run` returned.
        out_dir: The folder (created when missing).

    Returns:
        The paths written: ``robustness.json``, ``accuracy.png``, ``margins.png`` and
        ``margin_histogram.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / "robustness.json",
        out / "accuracy.png",
        out / "margins.png",
        out / "margin_histogram.png",
    ]
    result.write_json(paths[0])
    plot_accuracy(result, paths[1])
    plot_slices(result, paths[2])
    plot_margin_histogram(result, paths[3])
    return paths


# --------------------------------------------------------------------------------------------
# Tables and figures
# --------------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    """The median of distances, inf included (inf when more than half are inf)."""
    return torch.tensor(list(values), dtype=torch.float64).median().item() if values else math.nan


def format_table(result: RobustnessResult) -> str:
    """Markdown tables of a result: a summary, then accuracies under noise, FGSM and PGD.

    Args:
        result: What :func:`run` returned.

    Returns:
        The tables, separated by blank lines.
    """
    cfg = result.config
    lines = [
        "| model | clean acc. | mean ‖J‖²_F | ‖J‖_F (rms) | median margin, random dir. "
        "| median margin, adversarial dir. |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in result.models:
        lines.append(
            f"| {m.name} | {100 * m.clean_accuracy:.1f}% | {m.jacobian_sq:.4g} | "
            f"{math.sqrt(m.jacobian_sq):.3g} | {_median(m.margin_random):.3g} | "
            f"{_median(m.margin_adversarial):.3g} |"
        )
    blocks = ["\n".join(lines)]
    for title, key, values, symbol in (
        ("white noise", "noise_accuracy", cfg.sigmas, "\u03c3"),
        ("FGSM", "fgsm_accuracy", cfg.epsilons, "\u03b5"),
        (f"PGD-{cfg.pgd_steps}", "pgd_accuracy", cfg.epsilons, "\u03b5"),
    ):
        head = f"| {title} | " + " | ".join(f"{symbol}={v:g}" for v in values) + " |"
        rows = [head, "|---|" + "---:|" * len(values)]
        for m in result.models:
            accs = getattr(m, key)
            rows.append(f"| {m.name} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + " |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def _pyplot():  # noqa: ANN202 - matplotlib is optional, so its types are not imported eagerly
    """Imports pyplot with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(result: RobustnessResult, path: str | Path) -> None:
    """Plots accuracy versus noise sigma and versus FGSM and PGD epsilon for every model.

    Args:
        result: What :func:`run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    cfg = result.config
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    panels = (
        ("white Gaussian noise", r"noise $\sigma$", cfg.sigmas, "noise_accuracy"),
        (r"FGSM ($L_\infty$)", r"attack $\epsilon$", cfg.epsilons, "fgsm_accuracy"),
        (
            rf"PGD-{cfg.pgd_steps} ($L_\infty$, random start)",
            r"attack $\epsilon$",
            cfg.epsilons,
            "pgd_accuracy",
        ),
    )
    for ax, (title, xlabel, xs, key) in zip(axes, panels):
        for m in result.models:
            ax.plot(xs, [100 * a for a in getattr(m, key)], marker="o", ms=3, label=m.name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Robustness on {result.dataset} (inputs in [0, 1])", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_slices(result: RobustnessResult, path: str | Path) -> None:
    """Plots each model's decision regions on a 2-D slice through one test input.

    Args:
        result: What :func:`run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    colors = plt.get_cmap("tab10").colors
    classes = max(10, *(max(max(row) for row in s.classes) + 1 for s in result.slices))
    cmap = ListedColormap([colors[i % len(colors)] for i in range(classes)])
    norm = BoundaryNorm(torch.arange(classes + 1).sub(0.5).tolist(), classes)
    fig, axes = plt.subplots(1, len(result.slices), figsize=(4 * len(result.slices), 4.4))
    axes = [axes] if len(result.slices) == 1 else list(axes)
    seen: set[int] = set()
    for ax, s in zip(axes, result.slices):
        e = s.extent
        ax.imshow(
            s.classes,
            origin="lower",
            extent=(-e, e, -e, e),
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
        )
        seen.update(c for row in s.classes for c in row)
        ax.plot([0], [0], marker="*", color="black", ms=12)
        if math.isfinite(s.nearest):
            ring = plt.Circle((0, 0), s.nearest, fill=False, ls="--", color="black", lw=1.2)
            ax.add_patch(ring)
            dx, dy = s.nearest * math.cos(s.nearest_angle), s.nearest * math.sin(s.nearest_angle)
            ax.annotate("", (dx, dy), (0, 0), arrowprops={"arrowstyle": "->", "lw": 1.2})
        ax.set_title(f"{s.name}\nnearest boundary d = {s.nearest:.3g}", fontsize=9)
        ax.set_xlabel("random direction")
        ax.set_xlim(-e, e)
        ax.set_ylim(-e, e)
    axes[0].set_ylabel("adversarial direction (∇ₓ loss)")
    handles = [Patch(color=cmap(c), label=str(c)) for c in sorted(seen)]
    fig.legend(handles=handles, title="class", loc="center right", fontsize=8)
    label = result.slices[0].label if result.slices else "?"
    fig.suptitle(
        f"Decision regions around a test input of class {label} ({result.dataset}); "
        "dashed: nearest boundary in the plane",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_margin_histogram(result: RobustnessResult, path: str | Path) -> None:
    """Plots histograms of distances to the boundary along random and adversarial directions.

    Args:
        result: What :func:`run` returned.
        path: The PNG to write.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "margin_random", "along random directions"),
        (axes[1], "margin_adversarial", "along the adversarial direction"),
    ):
        finite_all = [d for m in result.models for d in getattr(m, key) if math.isfinite(d)]
        # The axis ends at the 99th percentile; the few larger distances go into the last bin.
        top = torch.tensor(finite_all or [1.0], dtype=torch.float64).quantile(0.99).item()
        bins = torch.linspace(0, top, 41).tolist()
        for m in result.models:
            values = getattr(m, key)
            finite = [min(d, top) for d in values if math.isfinite(d)]
            missing = len(values) - len(finite)
            label = f"{m.name}: median {_median(values):.3g}"
            if missing:
                label += f" ({missing} > {result.config.max_distance:g})"
            ax.hist(finite, bins=bins, histtype="step", lw=1.5, label=label)
        ax.set_title(f"distance to the nearest boundary {title}", fontsize=9)
        ax.set_xlabel(f"L2 distance in input space (last bin: \u2265 {top:.3g})")
        ax.set_ylabel("count")
        ax.legend(fontsize=7)
    fig.suptitle(f"Margins on {result.dataset} test inputs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_table(result: RobustnessResult, file: TextIO | None = None) -> None:
    """Prints the tables of a result (to stdout by default).

    Args:
        result: What :func:`run` returned.
        file: A text stream; default ``sys.stdout``.
    """
    print(format_table(result), file=file or sys.stdout)
