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


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """The summed logit margin of Carlini and Wagner: the best wrong logit minus the right one.

    Unlike the cross-entropy, its gradient does not vanish on confidently classified inputs
    (where the softmax rounds to one in float32), so gradient attacks can still move them.

    Args:
        logits: [N, classes].
        y: The labels [N].

    Returns:
        ``sum_n (max_{j != y_n} logits[n, j] - logits[n, y_n])``, positive where misclassified.
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
    """The gradient of a summed loss with respect to the inputs.

    Args:
        model: The classifier.
        x: Inputs [N, ...] (not modified).
        y: Their labels.
        loss: ``"ce"`` (the cross-entropy) or ``"margin"`` (:func:`margin_loss`).

    Returns:
        [N, ...] input gradients of the loss, detached.
    """
    return gradient_and_logits(model, x, y, loss)[0]


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
    to ``restarts`` runs, which cycle through the losses in ``loss``. Misclassified clean
    inputs are returned unchanged.

    Args:
        model: The classifier to attack.
        x: Clean inputs in ``bounds``.
        y: Their labels.
        epsilon: The L-infinity radius.
        steps: Signed-gradient steps per run.
        step_size: The size of each step; default ``2.5 * epsilon / steps``.
        generator: A CPU generator for the random starts.
        bounds: The data range the iterates are clipped to.
        restarts: Runs from independent random starts (at least 1).
        loss: The loss each run ascends, ``"ce"`` or ``"margin"`` (:data:`LOSSES`), or a
            sequence of them that the runs cycle through.

    Returns:
        Adversarial inputs within ``epsilon`` of ``x`` (L-infinity) and inside ``bounds``: the
        first misclassified iterate of each input, else the last iterate of its last run.
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
    """:func:`pgd` with fixed settings, as an attack for :func:`attack_accuracy`.

    Args:
        steps: Signed-gradient steps per run.
        restarts: Runs from independent random starts.
        loss: The loss (or losses, in turn) the runs ascend.
        generator: A CPU generator for the random starts.

    Returns:
        ``attack(model, x, y, epsilon)``.
    """

    def attack(model: nn.Module, x: Tensor, y: Tensor, epsilon: float) -> Tensor:
        return pgd(
            model, x, y, epsilon, steps=steps, generator=generator, restarts=restarts, loss=loss
        )

    return attack


def attack_survivors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    epsilon: float,
    batch_size: int = 1024,
) -> Tensor:
    """Which inputs the model still classifies correctly once attacked (in chunks).

    Args:
        model: The classifier.
        x: Clean inputs.
        y: Their labels.
        attack: ``attack(model, x, y, epsilon)`` returning adversarial inputs.
        epsilon: The attack's radius.
        batch_size: Inputs attacked at a time.

    Returns:
        [N] booleans.
    """
    survived = [
        predict(model, attack(model, xb, yb, epsilon)) == yb
        for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    ]
    return torch.cat(survived) if survived else torch.zeros(0, dtype=torch.bool)


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
    return attack_survivors(model, x, y, attack, epsilon, batch_size).sum().item() / len(x)
