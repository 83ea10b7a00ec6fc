"""Offline datasets for the experiments: scikit-learn's bundled digits, or MNIST files on disk."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Loads the 1797 handwritten 8x8 digits that ship with scikit-learn, split for training.

    Args:
        test_fraction: The share of images held out for testing (stratified by class).
        seed: The seed of the split.

    Returns:
        The train and test sets: images [N, 1, 8, 8] as float32 in [0, 1], labels as int64.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the bundled digits need scikit-learn: pip install scikit-learn") from err
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    split = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    train_x, test_x, train_y, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in split)
    return TensorDataset(train_x, train_y.long()), TensorDataset(test_x, test_y.long())


def _find(data_dir: Path, name: str) -> Path | None:
    """The IDX file ``name`` (or ``name.gz``) in one of the layouts MNIST is kept in, if any."""
    for folder in (data_dir, data_dir / "raw", data_dir / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes, gzipped or not, into an array of its shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_available(data_dir: str | Path) -> bool:
    """Tells whether the four MNIST IDX files are under ``data_dir``.

    Args:
        data_dir: A folder holding the files directly, in ``raw/`` or in ``MNIST/raw/`` (the
            layout torchvision writes), optionally gzipped.

    Returns:
        True when all four files were found.
    """
    root = Path(data_dir)
    return all(_find(root, name) for pair in MNIST_FILES.values() for name in pair)


def load_mnist(data_dir: str | Path, download: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """Loads MNIST from IDX files on disk, downloading them only when asked.

    Args:
        data_dir: Where the files are (see :func:`mnist_available`) or are to be downloaded.
        download: Download the files with torchvision when they are missing.

    Returns:
        The train and test sets: images [N, 1, 28, 28] as float32 in [0, 1], labels as int64.

    Raises:
        FileNotFoundError: The files are missing and ``download`` is false.
        ImportError: A download was asked for but torchvision is not installed.
    """
    root = Path(data_dir)
    if not mnist_available(root):
        if not download:
            raise FileNotFoundError(
                f"no MNIST IDX files under {root}; pass download=True (--download) to fetch them"
            )
        try:
            from torchvision.datasets import MNIST
        except ImportError as err:
            raise ImportError(
                "downloading MNIST needs torchvision: pip install torchvision"
            ) from err
        MNIST(root=str(root), train=True, download=True)
        MNIST(root=str(root), train=False, download=True)
    sets = []
    for images_name, labels_name in MNIST_FILES.values():
        images, labels = (_read_idx(_find(root, name)) for name in (images_name, labels_name))  # type: ignore[arg-type]
        x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
        sets.append(TensorDataset(x, torch.from_numpy(labels.astype(np.int64))))
    return sets[0], sets[1]


def subset(data: TensorDataset, count: int | None) -> TensorDataset:
    """The first ``count`` examples of a dataset.

    Args:
        data: The dataset.
        count: How many examples to keep; None keeps them all.

    Returns:
        A dataset of the first ``count`` examples (``data`` itself when ``count`` is None).
    """
    if count is None:
        return data
    return TensorDataset(*(t[:count] for t in data.tensors))
