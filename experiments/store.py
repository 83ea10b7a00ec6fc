"""What a run keeps on disk: JSON without infinities, atomic writes, and folder locks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch


def config_hash(config: object) -> str:
    """A short stable hash of a dataclass configuration (names the checkpoint folders)."""
    text = json.dumps(asdict(config), sort_keys=True)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def json_safe(value: object) -> object:
    """Replaces infinite and NaN floats (which JSON cannot hold) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def restore_inf(value: object) -> object:
    """Turns the nulls JSON holds for infinite distances back into inf, recursively."""
    if value is None:
        return math.inf
    if isinstance(value, dict):
        return {k: restore_inf(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_inf(v) for v in value]
    return value


def load_json(path: Path) -> dict:
    """A JSON file's object, or an empty dict when the file is missing."""
    return json.loads(path.read_text()) if path.is_file() else {}


def save_json(data: dict, path: Path, indent: int = 1) -> None:
    """Writes JSON to a temporary file, then renames it over ``path`` (inf and NaN as null)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n")
    os.replace(tmp, path)


def save_atomic(obj: object, path: Path) -> None:
    """Writes ``torch.save(obj)`` to a temporary file, then renames it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[bool]:
    """Yields whether this process got an exclusive lock on ``folder/lock`` (never waits)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
