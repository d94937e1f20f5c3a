"""Frontend features in parallel worker processes (the frontend is C, single-threaded per clip)."""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np

from components.common.frontend import features_uint16


def _featurise(clips: list[np.ndarray]) -> list[np.ndarray]:
    return [features_uint16(c) for c in clips]


class FeatureExtractor:
    """A pool of spawned workers (safe next to CUDA, which must not be forked). `submit` returns a handle
    whose `.get()` gives the features in order; the caller overlaps it with the next batch's augmentation."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = None

    def __enter__(self) -> "FeatureExtractor":
        self._pool = mp.get_context("spawn").Pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        self._pool.terminate() if exc[0] else self._pool.close()
        self._pool.join()

    def submit(self, clips: list[np.ndarray]):
        chunks = [clips[i::self.workers] for i in range(self.workers)]
        parts = self._pool.map_async(_featurise, chunks)
        return _Interleaved(parts, len(clips), self.workers)

    def map(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(clips).get()


class _Interleaved:
    def __init__(self, parts, n: int, k: int) -> None:
        self._parts, self._n, self._k = parts, n, k

    def get(self) -> list[np.ndarray]:
        chunks = self._parts.get()
        return [chunks[i % self._k][i // self._k] for i in range(self._n)]
