"""Offline datasets for the experiments: scikit-learn's bundled digits, or MNIST files on disk."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The MD5s of the four uncompressed IDX files as LeCun's site served them (and as torchvision,
# PyTorch's own CI scripts and many others check them), and of Zalando's Fashion-MNIST files.
CANONICAL_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "Fashion-MNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 1797 8x8 digits, split stratified: images [N, 1, 8, 8] in [0, 1], labels."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

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


def _read_bytes(path: Path) -> bytes:
    """The contents of a file, decompressed when its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read()


def _read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes, gzipped or not, into an array of its shape."""
    data = _read_bytes(path)
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """An array of integers in [0, 255] as an IDX file (MNIST's format); ValueError otherwise."""
    array = np.asarray(array)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("IDX files of unsigned bytes hold values in [0, 255] only")
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def check_md5(data_dir: str | Path, expected: dict[str, str]) -> None:
    """Checks a folder's IDX files against the MD5s of their contents, by name.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: A file differs; the message names each such file with both MD5s.
    """
    root = Path(data_dir)
    wrong = []
    for name, md5 in expected.items():
        path = _find(root, name)
        if path is None:
            raise FileNotFoundError(f"{name} (or {name}.gz) is missing under {root}")
        got = hashlib.md5(_read_bytes(path)).hexdigest()
        if got != md5:
            wrong.append(f"{path}: MD5 {got}, expected {md5}")
    if wrong:
        raise ValueError(
            "these files are not the canonical ones (MD5 of the uncompressed contents):\n  "
            + "\n  ".join(wrong)
        )


def mnist_available(data_dir: str | Path) -> bool:
    """Whether the four MNIST IDX files are in, or in ``raw/`` or ``MNIST/raw/`` of, a folder."""
    root = Path(data_dir)
    return all(_find(root, name) for pair in MNIST_FILES.values() for name in pair)


def load_mnist(data_dir: str | Path, download: bool = False) -> tuple[TensorDataset, TensorDataset]:
    """MNIST-format IDX files as train and test sets: images [N, 1, 28, 28] in [0, 1], labels.

    Raises FileNotFoundError when the files are missing, unless ``download`` (with torchvision).
    """
    root = Path(data_dir)
    if not mnist_available(root):
        if not download:
            raise FileNotFoundError(
                f"no MNIST-format IDX files under {root}: `make mnist` fetches MNIST into "
                "data/mnist (or pass download=True to fetch it with torchvision)"
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


def identify(data_dir: str | Path) -> str | None:
    """``MNIST`` or ``Fashion-MNIST`` if a folder's IDX files have its canonical MD5s, else None."""
    for name, md5s in CANONICAL_MD5.items():
        try:
            check_md5(data_dir, md5s)
        except (OSError, ValueError):
            continue
        return name
    return None
