"""Scan recordings chunk by chunk into a session, in worker processes: each worker reads its chunk's audio,
runs the device frontend and, when the scorer can travel (the NumPy MixedNet, a .tflite), scores it too;
otherwise (a generic Keras model) the main process scores the features. Finished chunks are recorded one by one."""
from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from components.background_mining.scan import (ChunkPlan, ChunkResult, Geometry, Hit, ScanParams, chunk_result,
                                               merge_file, owned_scores, plan_chunks)
from components.background_mining.session import Session
from components.common.cpus import available_cpus
from components.common.frontend import features_uint16
from components.common.progress import progress


IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class Recording:
    """One long background recording: its dataset path, a local file, the sha256 of its samples."""

    path: str
    local: Path
    sha256: str
    n_samples: int

    @property
    def duration_s(self) -> float:
        return self.n_samples / 16_000


@dataclass
class ScanOutcome:
    complete: bool
    chunks_total: int
    chunks_reused: int  # found in the session
    chunks_scanned: int  # scanned by this call
    results: dict[str, dict[int, ChunkResult]] = field(default_factory=dict)  # sha256 -> chunk -> result
    wall_s: float = 0.0
    seconds_scanned_now: float = 0.0  # audio owned by the chunks this call scanned

    def hits(self, recordings: list[Recording], params: ScanParams, g: Geometry) -> list[Hit]:
        out = []
        for rec in recordings:
            for n, p in merge_file(self.results.get(rec.sha256, {}).values(), params.radius(g)):
                out.append(Hit(rec.path, rec.sha256, n, g.end_frame(n), p))
        return out


class ScanInterrupted(RuntimeError):
    """`stop_after_chunks` was reached (a stand-in for a killed run in tests)."""


def read_span(path: Path, start: int, stop: int) -> np.ndarray:
    import soundfile as sf

    data, _ = sf.read(str(path), start=start, stop=stop, dtype="int16", always_2d=False)
    return data if data.ndim == 1 else data[:, 0]


def chunk_features(path: Path, plan: ChunkPlan) -> np.ndarray:
    """Device features of the chunk's audio (warm-up included) from a fresh frontend."""
    audio = read_span(path, plan.sample_start, plan.sample_stop)
    feats = features_uint16(audio)
    expected = plan.frame_stop - plan.frame_start
    if len(feats) != expected:
        raise RuntimeError(f"{path}: chunk {plan.chunk}: {len(feats)} feature frames, expected {expected}")
    return feats


_WORKER_SCORER = None


def _init_worker(scorer) -> None:
    global _WORKER_SCORER
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per worker: the workers are the parallelism
    _WORKER_SCORER = scorer


def _job(args: tuple[str, str, ChunkPlan, ScanParams]) -> tuple[str, ChunkPlan, Any]:
    sha, local, plan, params = args
    feats = chunk_features(Path(local), plan)
    if _WORKER_SCORER is None:
        return sha, plan, feats
    return sha, plan, chunk_result(owned_scores(_WORKER_SCORER.score(feats), plan, _WORKER_SCORER.geometry),
                                   plan, params, _WORKER_SCORER.geometry)


def recording(path: str, local: Path, sha256: str) -> Recording:
    import soundfile as sf

    return Recording(path, Path(local), sha256, int(sf.info(str(local)).frames))


def scan(recordings: list[Recording], scorer, params: ScanParams, session: Session, *, workers: int | None = None,
         stop_after_chunks: int | None = None, show_progress: bool = True) -> ScanOutcome:
    """Scan every chunk the session has not finished; return all chunk results (old and new)."""
    t0 = time.monotonic()
    g = scorer.geometry
    results: dict[str, dict[int, ChunkResult]] = {}
    jobs = []
    total = 0
    recordings = list({r.sha256: r for r in reversed(recordings)}.values())[::-1]  # the same audio once
    for rec in recordings:
        done = session.load(rec.sha256)
        plans = plan_chunks(rec.n_samples, g, params)
        total += len(plans)
        results[rec.sha256] = {k: v for k, v in done.items() if k < len(plans)}
        jobs += [(rec.sha256, str(rec.local), p, params) for p in plans if p.chunk not in done]
    reused = total - len(jobs)
    outcome = ScanOutcome(False, total, reused, 0, results)

    def finished(sha: str, plan: ChunkPlan, payload) -> None:
        if not isinstance(payload, ChunkResult):  # features: score here
            payload = chunk_result(owned_scores(scorer.score(payload), plan, g), plan, params, g)
        session.record(sha, payload)
        results[sha][plan.chunk] = payload
        outcome.chunks_scanned += 1
        outcome.seconds_scanned_now += plan.owned * g.stride / 100

    n_workers = max(1, min(workers or available_cpus(), len(jobs)))
    portable = scorer.portable()
    try:
        stream = _run_jobs(jobs, portable, n_workers)
        bar = progress(stream, total=len(jobs), desc="mining", unit="chunk", disable=not show_progress or not jobs)
        for sha, plan, payload in bar:
            finished(sha, plan, payload)
            if stop_after_chunks is not None and stop_after_chunks <= outcome.chunks_scanned < len(jobs):
                stream.close()  # stops the workers, as a kill would
                session.write_state(_state(recordings, results, params, g))
                raise ScanInterrupted(f"stopped after {outcome.chunks_scanned} of {len(jobs)} chunks")
    finally:
        session.close()
    outcome.complete = True
    outcome.wall_s = time.monotonic() - t0
    session.write_state(_state(recordings, results, params, g))
    return outcome


def _run_jobs(jobs: list, portable, n_workers: int) -> Iterator:
    """Results in completion order: a spawned pool (safe beside TensorFlow), or this process for one worker."""
    if n_workers <= 1:
        from threadpoolctl import threadpool_limits

        global _WORKER_SCORER
        with threadpool_limits(1):
            _WORKER_SCORER = portable
            try:
                for job in jobs:
                    yield _job(job)
            finally:
                _WORKER_SCORER = None
        return
    pool = mp.get_context("spawn").Pool(n_workers, initializer=_init_worker, initargs=(portable,))
    try:
        # A bounded window of jobs in flight: features waiting for the main process (a scorer that cannot
        # travel) must not pile up in memory. Results come back in job order.
        todo = iter(jobs)
        pending = deque(pool.apply_async(_job, (job,)) for job in islice(todo, IN_FLIGHT_PER_WORKER * n_workers))
        while pending:
            result = pending.popleft().get()
            job = next(todo, None)
            if job is not None:
                pending.append(pool.apply_async(_job, (job,)))
            yield result
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _state(recordings, results, params: ScanParams, g: Geometry) -> dict[str, dict[str, Any]]:
    out = {}
    for rec in recordings:
        plans = plan_chunks(rec.n_samples, g, params)
        done = results.get(rec.sha256, {})
        out[rec.sha256] = {"path": rec.path, "duration_s": round(rec.duration_s, 3), "chunks_total": len(plans),
                           "chunks_done": sorted(done), "complete": len(done) >= len(plans),
                           "candidates": sum(len(c.candidates) for c in done.values())}
    return out

