"""Atomic file writes: a file that marks something complete (a manifest, a summary, metadata, a model, resumable
state) appears whole or not at all.

The content goes to a hidden temporary name in the same folder, then `os.replace` renames it over the target in one
step. A run killed mid-write leaves the previous file (or none) and a stray `.<name>.tmp-<pid>` that no reader
looks for, never a half-written file under the real name that a later run would take as finished.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def temporary_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: same folder (so the rename is atomic), same suffix
    (np.save, Keras and soundfile choose the format by it)."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:])  # Keras wants "x.weights.h5" to end in ".weights.h5"
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.tmp-{os.getpid()}{suffixes}")


@contextlib.contextmanager
def replaced(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write `path` through (any writer that takes a path); on success it replaces
    `path` at once, on an exception it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Path.write_text, atomically."""
    with replaced(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_bytes(path: Path | str, data: bytes) -> None:
    """Path.write_bytes, atomically."""
    with replaced(path) as tmp:
        tmp.write_bytes(data)
