"""Margins: distances from inputs to the decision boundary, and 2-D slices of decision regions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from experiments.attacks import loss_gradient
from experiments.models import predict

# How far the search walks, its step and the precision of its bisection (the defaults below).
MAX_DISTANCE = 20.0
SCAN_STEP = 0.05
TOLERANCE = 1e-4


def unit(directions: Tensor) -> Tensor:
    """Normalises each direction [N, ...] to unit L2 norm (zero directions stay zero)."""
    norms = directions.flatten(1).norm(dim=1).clamp_min(1e-30)
    return directions / norms.view(-1, *([1] * (directions.dim() - 1)))


def random_directions(
    shape: Sequence[int], count: int, generator: torch.Generator | None = None
) -> Tensor:
    """[count, *shape] directions drawn uniformly on the unit sphere of input space."""
    return unit(torch.randn((count, *shape), generator=generator))


def adversarial_directions(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The input gradients [N, ...] of the cross-entropy, normalised to unit L2 norm."""
    return unit(loss_gradient(model, x, y))


@torch.no_grad()
def boundary_distances(
    model: nn.Module,
    x: Tensor,
    directions: Tensor,
    max_distance: float = MAX_DISTANCE,
    scan_step: float = SCAN_STEP,
    tol: float = TOLERANCE,
    batch_size: int = 8192,
) -> Tensor:
    """The distances [N] from inputs to the nearest decision boundary along given directions.

    Walks from each input along its unit direction in steps of ``scan_step`` until the predicted
    class differs from the one at the input, then bisects the last step down to ``tol``. The
    result is the distance to the first boundary on the ray, unless the ray crosses two
    boundaries within one scan step; ``inf`` where no boundary was found within
    ``max_distance``. The walk is not clipped to the data range: it measures the model's
    geometry. ``directions`` [N, ...] are normalised inside (any nonzero length).
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


@torch.no_grad()
def decision_slice(
    model: nn.Module,
    x: Tensor,
    u: Tensor,
    v: Tensor,
    extent: float,
    resolution: int = 201,
) -> Tensor:
    """The classes on the plane ``x + a*u + b*v``, ``a, b`` in ``[-extent, extent]`` (rows: b)."""
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
    max_distance: float = MAX_DISTANCE,
) -> tuple[float, float]:
    """The distance to the nearest boundary in the plane ``x + a*u + b*v``, and its angle."""
    theta = torch.linspace(0, 2 * math.pi, angles + 1, dtype=x.dtype)[:-1]
    pad = [1] * x.dim()
    dirs = theta.cos().view(-1, *pad) * u + theta.sin().view(-1, *pad) * v
    dist = boundary_distances(model, x.expand(angles, *x.shape), dirs, max_distance)
    best = int(dist.argmin())
    return float(dist[best]), float(theta[best])


@dataclass
class SliceResult:
    """A model's classes on a square around a test input (rows: the adversarial axis).

    With the distance to the nearest boundary in the plane, its angle from the random axis, and
    the distance to the boundary along the adversarial axis.
    """

    name: str
    classes: list[list[int]]
    extent: float
    nearest: float
    nearest_angle: float
    adversarial: float
    label: int


def decision_slices(
    models: Sequence[tuple[str, nn.Module]],
    x: Tensor,
    y: Tensor,
    *,
    seed: int,
    max_distance: float = MAX_DISTANCE,
    resolution: int = 201,
) -> list[SliceResult]:
    """The decision regions of each model on a plane through one test input.

    The input is the first that every model classifies correctly (else the first). The plane is
    spanned by a random direction (drawn with seed ``seed + 3``, the same for every model) and
    the model's own adversarial direction (its input gradient of the loss); the random
    direction is made orthogonal to the adversarial one. The square is the same size for every
    model: 1.5 times the largest nearest-boundary distance, at least 0.5, at most
    ``max_distance``.
    """
    ok = torch.ones(len(x), dtype=torch.bool)
    for _, model in models:
        ok &= predict(model, x) == y
    index = int(ok.nonzero()[0]) if ok.any() else 0
    x, label = x[index], int(y[index])
    gen = torch.Generator().manual_seed(seed + 3)
    rand = random_directions(x.shape, 1, gen)[0].to(x)
    planes = []
    for name, model in models:
        v = adversarial_directions(model, x[None], torch.tensor([label]))[0]
        u = rand - (rand * v).sum() * v
        u = u / u.norm()
        adv = float(boundary_distances(model, x[None], v[None], max_distance)[0])
        # The adversarial direction lies in the plane: no nearer boundary can be farther away.
        reach = min(max_distance, adv + 0.1) if math.isfinite(adv) else max_distance
        nearest, angle = nearest_in_plane(model, x, u, v, max_distance=reach)
        planes.append((name, model, u, v, nearest, angle, adv))
    finite = [p[4] for p in planes if math.isfinite(p[4])]
    extent = min(max_distance, max(0.5, 1.5 * max(finite, default=0.0)))
    return [
        SliceResult(
            name=name,
            classes=decision_slice(model, x, u, v, extent, resolution).tolist(),
            extent=extent,
            nearest=nearest,
            nearest_angle=angle,
            adversarial=adv,
            label=label,
        )
        for name, model, u, v, nearest, angle, adv in planes
    ]
