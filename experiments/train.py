"""The trainer: every variant from the same initialisation on the same batches, resumable."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from jacobian import JacobianReg
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.models import MLP, LeNetPrime, Normalize
from experiments.spec import Experiment, Variant
from experiments.store import save_atomic


class Budget:
    """A wall-time budget of ``minutes`` (None: unlimited), checked between units of work."""

    def __init__(self, minutes: float | None) -> None:
        self.start = time.perf_counter()
        self.limit = math.inf if minutes is None else 60.0 * minutes
        self.stopped = False

    def allows(self, seconds: float) -> bool:
        """Tells whether a unit expected to take ``seconds`` still fits; records a refusal."""
        fits = time.perf_counter() - self.start + seconds <= self.limit
        self.stopped |= not fits
        return fits


def build_model(
    experiment: Experiment, variant: Variant, mean: float, std: float, shape: Sequence[int]
) -> nn.Sequential:
    """A fresh ``Sequential(Normalize(mean, std), network)``; ValueError for an unknown one."""
    if experiment.model == "lenet-prime":
        net: nn.Module = LeNetPrime(experiment.classes, variant.dropout)
    elif experiment.model == "mlp" and variant.dropout == 0:
        net = MLP(inputs=math.prod(shape), classes=experiment.classes)
    else:
        raise ValueError(
            f"no model {experiment.model!r} with dropout {variant.dropout}: choose 'mlp' "
            "(without dropout) or 'lenet-prime'"
        )
    return nn.Sequential(Normalize(mean, std), net)


def train_epoch(
    net: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    reg: nn.Module,
    lambda_jr: float = 0.0,
) -> tuple[float, float]:
    """One pass of cross-entropy plus ``lambda_jr * reg``; the mean loss and the accuracy."""
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

    ``folder/state.pt`` holds the model, the optimiser (momentum buffers), the schedule, the
    batch order's and torch's random state and the per-epoch log, so a resumed run continues
    exactly as an uninterrupted one would (on the same machine and thread count). The images
    (in [0, 1]) are standardised with ``mean`` and ``std`` (0 and 1: not at all); ``budget``
    stops between epochs when the next would not fit.

    Returns:
        The model (trained as far as the budget allowed, in eval mode) and its log: ``epoch``
        (epochs done), and per epoch ``losses``, ``train_accuracy`` and ``seconds``.
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
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones(), config.decay)
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
    while state["epoch"] < config.epochs and budget.allows(max(state["seconds"][-3:], default=0)):
        lr, tic = optimizer.param_groups[0]["lr"], time.perf_counter()
        loss, acc = train_epoch(net, loader, optimizer, reg, variant.lambda_jr)
        scheduler.step()
        state["epoch"] += 1
        state["losses"].append(loss)
        state["train_accuracy"].append(acc)
        state["seconds"].append(time.perf_counter() - tic)
        checkpoint = {"net": net.state_dict(), "optimizer": optimizer.state_dict()}
        checkpoint |= {"scheduler": scheduler.state_dict(), "order_rng": order.get_state()}
        checkpoint |= {"torch_rng": torch.get_rng_state(), "state": state}
        save_atomic({**checkpoint, "variant": asdict(variant), "config": asdict(config)}, path)
        if log:
            print(
                f"  {variant.name}: epoch {state['epoch']}/{config.epochs}, lr {lr:g}, "
                f"loss {loss:.4f}, train acc. {100 * acc:.2f}%, {state['seconds'][-1]:.1f} s",
                flush=True,
            )
    model.eval()
    return model, state
