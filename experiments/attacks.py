"""Perturbed inputs: white Gaussian noise, and the FGSM and PGD attacks in the L-infinity ball."""

from __future__ import annotations

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


def loss_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The gradient of the summed cross-entropy with respect to the inputs.

    Args:
        model: The classifier.
        x: Inputs [N, ...] (not modified).
        y: Their labels.

    Returns:
        [N, ...] input gradients of the loss, detached.
    """
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
        grad = loss_gradient(model, x_adv, y)
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
