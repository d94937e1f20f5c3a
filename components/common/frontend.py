"""The device's feature frontend (TFLite-Micro microfrontend via pymicro-features): 40 channels per 10 ms.

Features are stored as the frontend's raw uint16 values; float features are raw x 0.0390625 (raw / 25.6),
exactly what pymicro-features returns and what microWakeWord trains on.
"""
from __future__ import annotations

import numpy as np

FEATURE_CHANNELS = 40
FEATURE_STEP_MS = 10
FEATURE_WINDOW_MS = 30
FLOAT_SCALE = 0.0390625
_CHUNK_BYTES = 320  # 10 ms of 16 kHz int16


def features_uint16(samples: np.ndarray) -> np.ndarray:
    """`[frames, 40]` uint16 for 16 kHz int16 audio, from a fresh frontend (as ESPHome starts one)."""
    from pymicro_features import MicroFrontend

    frontend = MicroFrontend()
    data = np.ascontiguousarray(samples, dtype=np.int16).tobytes()
    frames = []
    pos = 0
    while pos + _CHUNK_BYTES <= len(data):
        out = frontend.process_samples(data[pos:pos + _CHUNK_BYTES])
        pos += out.samples_read * 2
        if out.features:
            frames.append(out.features)
    if not frames:
        return np.zeros((0, FEATURE_CHANNELS), np.uint16)
    return np.rint(np.asarray(frames, dtype=np.float64) / FLOAT_SCALE).astype(np.uint16)


def n_frames(n_samples: int) -> int:
    """Frames the frontend yields for `n_samples` (the first needs a full 30 ms window)."""
    step = 16 * FEATURE_STEP_MS
    return max(0, (n_samples // step) - (FEATURE_WINDOW_MS // FEATURE_STEP_MS - 1))


def to_float(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float32) * np.float32(FLOAT_SCALE)


class FeatureStream:
    """The device frontend (pymicro-features) over a stream: raw uint16 features `[frames, 40]` per chunk,
    exactly what `features_uint16` gives for the whole stream at once."""

    def __init__(self) -> None:
        from pymicro_features import MicroFrontend

        self._process = MicroFrontend().process_samples
        self._pending = b""
        self.frames = 0  # frames yielded so far

    def feed(self, samples: np.ndarray) -> np.ndarray:
        return self.feed_bytes(np.ascontiguousarray(samples, dtype=np.int16).tobytes())

    def feed_bytes(self, pcm: bytes) -> np.ndarray:
        """`feed` for 16 kHz int16 little-endian bytes (a whole number of samples)."""
        data = self._pending + pcm if self._pending else pcm
        frames, pos, end, process = [], 0, len(data) - _CHUNK_BYTES, self._process
        while pos <= end:
            out = process(data[pos:pos + _CHUNK_BYTES])
            pos += out.samples_read * 2
            if out.features:
                frames.append(out.features)
        self._pending = data[pos:]
        if not frames:
            return np.zeros((0, FEATURE_CHANNELS), np.uint16)
        self.frames += len(frames)
        return np.rint(np.asarray(frames, dtype=np.float64) / FLOAT_SCALE).astype(np.uint16)
