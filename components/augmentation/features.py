"""Frontend features in parallel worker processes (the frontend is C, single-threaded per clip), and, for the
embedding teacher, the frozen speech embeddings of the same augmented audio."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np

from components.common.cpus import available_cpus
from components.common.frontend import features_uint16


def _featurise(clips: list[np.ndarray]) -> list[np.ndarray]:
    return [features_uint16(c) for c in clips]


def _featurise_and_embed(clips: list[np.ndarray], embed_samples: int | None = None
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Features of each whole clip; the embedding of its first `embed_samples` (all when None)."""
    from components.training import speech_embedding

    # one front end per worker, loaded once
    embeddings = speech_embedding.default().for_clips([c[:embed_samples] for c in clips])
    return [(features_uint16(c), e.astype(np.float16)) for c, e in zip(clips, embeddings)]


class FeatureExtractor:
    """A pool of spawned workers (safe next to CUDA, which must not be forked). `submit` returns a handle
    whose `.get()` gives the features in order; the caller overlaps it with the next batch's augmentation."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or available_cpus())
        self._pool = None

    def __enter__(self) -> "FeatureExtractor":
        self._pool = mp.get_context("spawn").Pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        self._pool.terminate() if exc[0] else self._pool.close()
        self._pool.join()

    def submit(self, clips: list[np.ndarray], embed: bool = False, embed_samples: int | None = None):
        """About four chunks per worker: few enough to keep IPC cheap, enough that a worker slowed down
        by a neighbour process does not hold up the rest. With `embed`, each result is (features, embedding
        of the clip's first `embed_samples`)."""
        chunk = max(1, -(-len(clips) // (4 * self.workers)))
        chunks = [clips[i:i + chunk] for i in range(0, len(clips), chunk)]
        if embed:
            return _Flattened(self._pool.starmap_async(_featurise_and_embed, [(c, embed_samples) for c in chunks]))
        return _Flattened(self._pool.map_async(_featurise, chunks))

    def map(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return self.submit(clips).get()


class _Flattened:
    def __init__(self, parts) -> None:
        self._parts = parts

    def get(self) -> list:
        return [f for part in self._parts.get() for f in part]
