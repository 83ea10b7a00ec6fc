"""The timed closures: training steps without a regularizer, with the reference, and with ours."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch
from jacobian import JacobianReg
from torch import nn

# The pure-PyTorch reference of the upstream algorithm lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference import reference_reg

LAMBDA_JR = 0.01
VARIANTS = ("plain", "reference", "ours")


def regularizer(variant: str, n: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The regularizer a variant adds to the loss."""
    if variant == "reference":
        return lambda x, y: reference_reg(x, y, n=n)
    if variant == "ours":
        return JacobianReg(n=n)
    raise ValueError(f"unknown variant {variant!r}")


def training_step(
    variant: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, n: int
) -> Callable[[], None]:
    """Forward, loss (+ lambda * R), backward and an SGD step, as one closure."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    reg = None if variant == "plain" else regularizer(variant, n)

    def step() -> None:
        data = x.detach().requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        output = model(data)
        loss = criterion(output, target)
        if reg is not None:
            loss = loss + LAMBDA_JR * reg(data, output)
        loss.backward()
        optimizer.step()

    return step


def evaluation_step(variant: str, model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    """The exact norm for logging, after a forward pass with grad.

    Ours runs under ``torch.no_grad()``; the reference cannot (its reshape of y would lose the
    graph), so it runs as the upstream example's evaluation does, building the double-backward
    graph it then throws away.
    """
    reg = regularizer(variant, -1)

    def step() -> float:
        data = x.detach().requires_grad_(True)
        output = model(data)
        if variant == "reference":
            return reg(data, output).item()
        with torch.no_grad():
            return reg(data, output).item()

    return step


def bare_call(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The leanest pure-PyTorch version of one n=1 projection: the autograd work itself."""
    batch, size = y.shape
    v = torch.randn(batch, size, dtype=y.dtype, device=y.device)
    v = v / v.norm(dim=1, keepdim=True)
    (g,) = torch.autograd.grad(y, x, v, retain_graph=True, create_graph=True)
    return g.pow(2).sum() * (0.5 * size / batch)
