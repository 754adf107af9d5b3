"""Write files whole or not at all: into a temporary file beside the target, then renamed onto it.

A crash, a full disk or a cancelled job then leaves the previous file (or none), never a half-written
checkpoint, volume or table that a later run would load.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; it replaces ``path`` when the block ends without error.

    ``suffix``: writers that pick the format from the extension (SimpleITK, MRML storage nodes) need
    the target's own suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def save_torch(payload: Any, path: str | Path) -> Path:
    """``torch.save`` atomically; returns the path written."""
    import torch

    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text atomically; returns the path written."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, payload: Any) -> Path:
    """JSON (indented) atomically; returns the path written.

    numpy scalars and arrays and paths are written as plain numbers, lists and strings: summaries
    gather them from numpy code, and one stray ``int64`` must not lose a finished run's record.
    """
    return write_text(path, json.dumps(payload, indent=1, default=_plain))


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
