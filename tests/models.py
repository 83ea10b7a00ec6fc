"""Small models and batches the tests share: MLPs, conv nets, a Python autograd.Function."""

from __future__ import annotations

import torch
from torch import nn


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


# Small models with the input shape each is tried on: [B, ...] batches of 6, 5 and 3.
MODELS = {
    "mlp": (MLP, (6, 12)),
    "conv": (ConvNet, (5, 1, 8, 8)),
    "conv-map": (ConvMap, (3, 2, 5, 5)),
}


def make_batch(name: str, dtype: torch.dtype, device: torch.device | str, seed: int = 0):
    """A seeded model from MODELS and an input batch that requires grad, both on `device`."""
    torch.manual_seed(seed)
    cls, shape = MODELS[name]
    model = cls().to(device=device, dtype=dtype)
    # Drawn on the CPU and moved, so every device gets the inputs the CPU cases were tuned on
    # (CUDA's generator gives other numbers for the same seed).
    x = torch.randn(shape, dtype=dtype).to(device).requires_grad_()
    return model, x
