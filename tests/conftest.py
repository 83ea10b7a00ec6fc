"""Shared fixtures: the devices to run on (the `cuda` marker), and small models and batches."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

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


def cuda_devices_needed(marker: pytest.Mark) -> int:
    """The number of CUDA devices a `cuda` marker asks for: `devices=`, else 1."""
    return int(marker.kwargs.get("devices", 1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips (rather than fails) each `cuda` item that asks for more devices than are present."""
    found = torch.cuda.device_count()
    for item in items:
        marker = item.get_closest_marker("cuda")
        if marker is None:
            continue
        needed = cuda_devices_needed(marker)
        if needed > found:
            reason = f"needs {needed} CUDA device{'s' if needed > 1 else ''}, found {found}"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch CPU thread for a module's tests (`pytestmark = usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every device a test runs on: the CPU, and CUDA (marked `cuda`, so skipped without one)."""
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


@pytest.fixture
def mlp_batch(device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """A float64 MLP with 10 outputs and a batch of 6 inputs that require grad, on `device`."""
    torch.manual_seed(0)
    model = MLP(inputs=12, hidden=16, classes=10).double().to(device)
    # Drawn on the CPU and moved, so every device gets the inputs the CPU cases were tuned on.
    x = torch.randn(6, 12, dtype=torch.float64).to(device).requires_grad_()
    return model, x


def write_idx(path: Path, array) -> None:
    """Writes an array of unsigned bytes as a gzipped IDX file, the format MNIST ships in."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype("uint8").tobytes())


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    """A folder with random MNIST-format files (128 training, 64 test images) in MNIST/raw/."""
    import numpy as np  # here only: the rest of the suite does not need numpy

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 128), ("t10k", 64)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, count))
    return tmp_path
