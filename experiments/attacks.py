"""Perturbed inputs: white Gaussian noise, and the FGSM and PGD attacks in the L-infinity ball."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from experiments.models import predict

Attack = Callable[[nn.Module, Tensor, Tensor, float], Tensor]

DATA_RANGE = (0.0, 1.0)


def white_noise(
    x: Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    clip: tuple[float, float] | None = DATA_RANGE,
) -> Tensor:
    """``x + sigma * N(0, 1)``, drawn from a CPU ``generator``, clipped to ``clip`` unless None."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    noisy = x + sigma * noise
    return noisy.clamp(*clip) if clip is not None else noisy


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The summed logit margin of Carlini and Wagner: the best wrong logit minus the right one.

    Unlike the cross-entropy, its gradient does not vanish on confidently classified inputs
    (where the softmax rounds to one in float32), so gradient attacks can still move them.
    """
    right = logits.gather(1, y[:, None]).squeeze(1)
    wrong = logits.scatter(1, y[:, None], -math.inf).amax(1)
    return (wrong - right).sum()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": lambda logits, y: F.cross_entropy(logits, y, reduction="sum"),
    "margin": margin_loss,
}


def gradient_and_logits(
    model: nn.Module, x: Tensor, y: Tensor, loss: str = "ce"
) -> tuple[Tensor, Tensor]:
    """The input gradient of a summed loss (see :data:`LOSSES`), and the logits, detached."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = torch.autograd.grad(LOSSES[loss](logits, y), x)
    return grad, logits.detach()


def loss_gradient(model: nn.Module, x: Tensor, y: Tensor, loss: str = "ce") -> Tensor:
    """The input gradient of a summed loss (``"ce"`` or ``"margin"``), detached."""
    return gradient_and_logits(model, x, y, loss)[0]


def fgsm(
    model: nn.Module, x: Tensor, y: Tensor, epsilon: float, bounds: tuple = DATA_RANGE
) -> Tensor:
    """The fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad))``."""
    if epsilon == 0:
        return x.detach().clone()
    grad = loss_gradient(model, x, y)
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
    restarts: int = 1,
    loss: str | Sequence[str] = "ce",
) -> Tensor:
    """Projected gradient descent (Madry et al. 2018) in the L-infinity ball, with random starts.

    Each run starts at a uniform random point of the ball and takes ``steps`` signed-gradient
    steps of the loss, projected back onto the ball and the data range. An input counts as
    broken at the first iterate the model misclassifies: that iterate is returned and the input
    leaves the attack. Inputs that survive a run are attacked again from a new random start, up
    to ``restarts`` runs, which cycle through the losses in ``loss`` (see :data:`LOSSES`).
    Misclassified clean inputs are returned unchanged. Steps are ``step_size``, by default
    ``2.5 * epsilon / steps``; random starts are drawn from the CPU ``generator``.

    Returns:
        Adversarial inputs within ``epsilon`` of ``x`` and inside ``bounds``: the first
        misclassified iterate of each input, else the last iterate of its last run.
    """
    x = x.detach()
    if epsilon == 0:
        return x.clone()
    losses = [loss] if isinstance(loss, str) else list(loss)
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    lower, upper = (x - epsilon).clamp(*bounds), (x + epsilon).clamp(*bounds)
    result = x.clone()
    # The clean input itself is the first point tried: a misclassified one is already broken.
    broken = predict(model, x) != y
    for run in range(max(1, restarts)):
        todo = (~broken).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        start = (2 * torch.rand(x[todo].shape, generator=generator, dtype=x.dtype) - 1).to(x)
        current = (x[todo] + epsilon * start).clamp(*bounds)
        active = torch.arange(len(todo), device=x.device)  # positions in todo still unbroken
        for step in range(steps + 1):
            rows = todo[active]
            if step < steps:
                grad, logits = gradient_and_logits(
                    model, current[active], y[rows], losses[run % len(losses)]
                )
            else:
                with torch.no_grad():
                    logits = model(current[active])
            wrong = logits.argmax(1) != y[rows]
            result[rows[wrong]] = current[active[wrong]]
            broken[rows[wrong]] = True
            if step == steps:
                result[rows[~wrong]] = current[active[~wrong]]
                break
            moved = current[active[~wrong]] + alpha * grad[~wrong].sign()
            active = active[~wrong]
            if len(active) == 0:
                break
            current[active] = torch.minimum(
                torch.maximum(moved, lower[todo[active]]), upper[todo[active]]
            )
    return result


def pgd_attack(
    steps: int,
    restarts: int = 1,
    loss: str | Sequence[str] = "ce",
    generator: torch.Generator | None = None,
) -> Attack:
    """:func:`pgd` with fixed settings, as an ``attack(model, x, y, epsilon)``."""

    def attack(model: nn.Module, x: Tensor, y: Tensor, epsilon: float) -> Tensor:
        return pgd(
            model, x, y, epsilon, steps=steps, generator=generator, restarts=restarts, loss=loss
        )

    return attack


def attack_survivors(
    model: nn.Module, x: Tensor, y: Tensor, attack: Attack, epsilon: float, batch_size: int = 1024
) -> Tensor:
    """Which inputs [N] the model still classifies correctly once attacked (in chunks)."""
    survived = [
        predict(model, attack(model, xb, yb, epsilon)) == yb
        for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    ]
    return torch.cat(survived) if survived else torch.zeros(0, dtype=torch.bool)


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
    """The accuracy before and after each of ``iterations`` PGD steps (cross-entropy, one run)."""
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
