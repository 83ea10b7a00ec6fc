"""Shared fixtures: the devices (the `cuda` marker), a batch, one thread, MNIST-format files."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.models import MLP

if torch.cuda.is_available():
    # CUDA's defaults trade precision for speed: TF32 convolutions (about 1e-3 relative) and
    # nondeterministic cuDNN algorithms would break comparisons at rtol 1e-5 or atol 0.
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch 2.9 and later
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:  # the flags those replace, which torch 2.9 deprecates
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
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
