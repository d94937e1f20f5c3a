"""Verification benchmark: how fast ambient audio is evaluated on the device runtime (TFLite-Micro, the ESPHome
integer feature mapping, stride 3, uint8 sliding window with refractory), one process per core.

  ambient_eval_realtime_factor   seconds of ambient audio evaluated per second of wall time on all cores
                                 (target >= 100), with the official okay_nabu v2 model on frontend features
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import comparison, log, result

MODEL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "esphome-models" / "v2" / "okay_nabu.tflite"
MINUTES_PER_WORKER = 4


def _ambient_features(minutes: float, seed: int) -> np.ndarray:
    """Real frontend features of synthetic ambient audio (noise + music-like tones)."""
    from components.common.config import Ambient, AmbientKind
    from components.common.frontend import features_uint16
    from components.synthesis.ambient import ambient_file

    audio = ambient_file(minutes * 60, AmbientKind.NOISE, Ambient(kinds=[AmbientKind.NOISE, AmbientKind.MUSIC]), [],
                         seed=seed)
    return features_uint16(audio)


def _evaluate(args) -> tuple[float, float]:
    """Evaluate one stream; returns (audio seconds, wall seconds) for the TFLite-Micro + metrics part."""
    raw, = args
    from components.common.metrics import ESPHOME_DETECTOR, activations
    from components.runtime.tflm import TflmStreamer

    streamer = TflmStreamer(MODEL, 26080)
    t0 = time.perf_counter()
    out = streamer(raw)
    for cutoff in (0.5, 0.9, 0.97):
        activations(out, cutoff, ESPHOME_DETECTOR, quantized=True)
    return len(raw) / 100.0, time.perf_counter() - t0


def run() -> list[dict]:
    workers = os.cpu_count() or 1
    log(f"[bench] verification: building {workers} x {MINUTES_PER_WORKER} min of ambient features")
    streams = [_ambient_features(MINUTES_PER_WORKER, seed) for seed in range(workers)]
    one = _evaluate((streams[0],))
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_evaluate, [(streams[0][:300],)] * workers)  # warm the workers (imports)
        t0 = time.perf_counter()
        parts = pool.map(_evaluate, [(s,) for s in streams])
        wall = time.perf_counter() - t0
    audio_s = sum(a for a, _ in parts)
    rtf_all, rtf_one = audio_s / wall, one[0] / one[1]
    return [result("ambient_eval_realtime_factor", rtf_all, "x", workers=workers, audio_s=audio_s, wall_s=wall,
                   target=100, model="okay_nabu v2 (official)", one_process=rtf_one),
            comparison("ambient_eval_parallel_efficiency", rtf_all, rtf_one * workers,
                       baseline_name=f"{workers} x one process's real-time factor (perfect scaling)", unit="x")]
