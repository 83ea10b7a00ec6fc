"""Shared fixtures: devices to run on, and small models with known structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

if torch.cuda.is_available():
    # CUDA's defaults trade precision for speed: TF32 convolutions (about 1e-3 relative) and
    # nondeterministic cuDNN algorithms would break comparisons at rtol 1e-5 or atol 0.
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def available_devices() -> list[str]:
    """CPU always; CUDA when present (its tests are skipped, not failed, without a GPU)."""
    return ["cpu", "cuda"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.name and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(params=available_devices())
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


class MLP(nn.Module):
    """The upstream example's MLP, smaller."""

    def __init__(self, inputs: int = 12, hidden: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """A small LeNet-like conv net on 1x8x8 images."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 2), nn.Tanh()
        )
        self.head = nn.Linear(4 * 2 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvMap(nn.Module):
    """An image-to-image model: 4-D outputs, as in segmentation or denoising."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Cube(torch.autograd.Function):
    """t^3 with a backward written in Python: the autograd engine must take the GIL to run it."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return t**3

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return 3 * t**2 * grad
