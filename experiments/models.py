"""The classifiers the experiments train, and their batched predictions."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """A fully connected classifier: inputs -> 200 -> 200 -> classes with ReLUs (as upstream)."""

    def __init__(self, inputs: int = 64, classes: int = 10, hidden: int = 200) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps images [B, ...] to logits [B, classes]."""
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 for 1x28x28 images: ``activation`` after hidden layers, dropout after dense ones."""

    def __init__(
        self, classes: int = 10, activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            activation(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            activation(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            activation(),
            nn.Dropout(dropout),
            nn.Linear(120, 84),
            activation(),
            nn.Dropout(dropout),
            nn.Linear(84, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Maps images [B, 1, 28, 28] to logits [B, classes]."""
        return self.head(self.features(x))


class LeNetPrime(LeNet5):
    """The paper's LeNet': LeNet-5 with tanh and Xavier weights, for standardised images."""

    def __init__(self, classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__(classes, nn.Tanh, dropout)
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)


class Normalize(nn.Module):
    """Standardises inputs: ``(x - mean) / std``, so a model can take images in [0, 1]."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: Tensor) -> Tensor:
        """Maps inputs to standardised ones of the same shape."""
        return (x - self.mean) / self.std


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """The predicted classes [N] of inputs [N, ...], computed in chunks."""
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])
