"""The timed closures: training steps without a regularizer, with the reference, and with ours."""

from __future__ import annotations

from typing import Callable

import torch
from jacobian import JacobianReg
from torch import nn

# The pure-PyTorch reference of the upstream algorithm lives with the tests (run from the
# repository root: `python -m benchmarks`).
from tests.reference import reference_reg

LAMBDA_JR = 0.01
# plain: no regularizer; reference: the upstream algorithm in pure PyTorch; floor: the bare
# autograd calls of the estimator with v drawn beforehand, the least any implementation does;
# ours; ours_params: ours with `loss.backward(inputs=params)`, which a user can choose.
VARIANTS = ("plain", "reference", "floor", "ours", "ours_params")


def floor_reg(n: int, y_shape: torch.Size) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The estimator's autograd work alone: directions drawn once, before any timing."""
    batch, size = y_shape
    count = size if n == -1 else n
    if n == -1:
        directions = list(torch.eye(size).expand(batch, size, size).unbind(2))
    else:
        directions = [torch.randn(batch, size) for _ in range(count)]
        directions = [v / v.norm(dim=1, keepdim=True) for v in directions]
    scale = 0.5 * size / (count * batch)

    def reg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum of the squared vector-Jacobian products."""
        total = 0
        for v in directions:
            (g,) = torch.autograd.grad(y, x, v, retain_graph=True, create_graph=True)
            total = total + g.pow(2).sum()
        return total * scale

    return reg


def regularizer(
    variant: str, n: int, y_shape: torch.Size
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The regularizer a variant adds to the loss."""
    if variant == "reference":
        return lambda x, y: reference_reg(x, y, n=n)
    if variant == "floor":
        return floor_reg(n, y_shape)
    if variant in ("ours", "ours_params"):
        return JacobianReg(n=n)
    raise ValueError(f"unknown variant {variant!r}")


def training_step(
    variant: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, n: int
) -> Callable[[], None]:
    """Forward, loss (+ lambda * R), backward and an SGD step, as one closure."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    with torch.no_grad():
        y_shape = model(x).shape
    reg = None if variant == "plain" else regularizer(variant, n, y_shape)
    # Without `inputs`, backward also accumulates the loss's gradient into data.grad.
    inputs = list(model.parameters()) if variant == "ours_params" else None

    def step() -> None:
        data = x.detach().requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        output = model(data)
        loss = criterion(output, target)
        if reg is not None:
            loss = loss + LAMBDA_JR * reg(data, output)
        loss.backward(inputs=inputs)
        optimizer.step()

    return step


def evaluation_step(variant: str, model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
    """The exact norm for logging, after a forward pass with grad.

    Ours runs under ``torch.no_grad()``; the reference cannot (its reshape of y would lose the
    graph), so it runs as the upstream example's evaluation does, building the double-backward
    graph it then throws away.
    """
    with torch.no_grad():
        y_shape = model(x).shape
    reg = regularizer(variant, -1, y_shape)

    def step() -> float:
        data = x.detach().requires_grad_(True)
        output = model(data)
        if variant == "reference":
            return reg(data, output).item()
        with torch.no_grad():
            return reg(data, output).item()

    return step


def failing_call(variant: str, model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A call that fails inside libtorch's engine (the graph was freed), caught."""
    data = x.detach().requires_grad_(True)
    output = model(data)
    output.sum().backward()
    reg = regularizer(variant, 1, output.shape)

    def call() -> None:
        try:
            reg(data, output)
        except RuntimeError:
            return
        raise AssertionError("the call was expected to fail")

    return call


def bare_call(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The leanest pure-PyTorch version of one n=1 projection: the autograd work itself."""
    batch, size = y.shape
    v = torch.randn(batch, size, dtype=y.dtype, device=y.device)
    v = v / v.norm(dim=1, keepdim=True)
    (g,) = torch.autograd.grad(y, x, v, retain_graph=True, create_graph=True)
    return g.pow(2).sum() * (0.5 * size / batch)
