"""Training a classifier with cross-entropy, optionally plus Jacobian regularization."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from jacobian import JacobianReg
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset


def progress_bar(iterable: Iterable, enabled: bool, desc: str) -> Iterable:
    """Wraps an iterable in a tqdm bar when enabled (tqdm is only imported then).

    Args:
        iterable: What to iterate over.
        enabled: Show the bar; otherwise ``iterable`` comes back unchanged.
        desc: The bar's label.

    Returns:
        The bar, or ``iterable`` itself.
    """
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    reg: nn.Module,
    lambda_jr: float = 0.0,
) -> tuple[float, float]:
    """One pass over the training batches: cross-entropy, plus the weighted Jacobian regularizer.

    The regularizer differentiates the logits with respect to the inputs exactly as the batches
    hold them (normalise them beforehand to regularize in normalised units).

    Args:
        model: The classifier, trained in place (put in training mode here).
        batches: Inputs and integer labels.
        optimizer: Steps the model's parameters.
        reg: The Jacobian regularizer (a :class:`jacobian.JacobianReg`).
        lambda_jr: Its weight (0: not evaluated, no extra cost).

    Returns:
        The mean training loss (supervised plus weighted regularizer) and the training accuracy
        over the pass.
    """
    model.train()
    total, correct, count = 0.0, 0, 0
    for data, target in batches:
        data.requires_grad = lambda_jr > 0
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        if lambda_jr > 0:
            loss = loss + lambda_jr * reg(data, output)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        correct += (output.argmax(1) == target).sum().item()
        count += len(target)
    model.eval()
    return total / max(count, 1), correct / max(count, 1)


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
    losses = []
    bar = progress_bar(range(epochs), progress, desc)
    for _ in bar:
        losses.append(train_epoch(model, loader, optimizer, reg, lambda_jr)[0])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses
