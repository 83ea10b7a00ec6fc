"""The models and batches the benchmarks time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from experiments.models import MLP, LeNet5


def mnist_mlp() -> nn.Module:
    """The upstream example's MLP on 28x28 images."""
    return MLP(inputs=784)


def convnet() -> nn.Module:
    """A small all-convolutional classifier on 1x28x28 images."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def tiny() -> nn.Module:
    """8 -> 16 -> 4: so little work that the per-call overhead shows."""
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration."""

    name: str
    make_model: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    n: int

    def batch(self, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        """A seeded model, inputs and integer targets on ``device``."""
        torch.manual_seed(0)
        model = self.make_model().to(device)
        x = torch.rand(self.input_shape, device=device)
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        target = torch.randint(0, classes, (self.input_shape[0],), device=device)
        return model, x, target


CONFIGS = [
    Config("MLP 784-200-200-10, B=64, n=1", mnist_mlp, (64, 1, 28, 28), 1),
    Config("MLP 784-200-200-10, B=64, n=3", mnist_mlp, (64, 1, 28, 28), 3),
    Config("MLP 784-200-200-10, B=64, n=-1", mnist_mlp, (64, 1, 28, 28), -1),
    Config("LeNet-5 1x28x28, B=64, n=1", LeNet5, (64, 1, 28, 28), 1),
    Config("ConvNet 1x28x28, B=256, n=1", convnet, (256, 1, 28, 28), 1),
    Config("tiny 8-16-4, B=8, n=1", tiny, (8, 8), 1),
]
