"""Real-world channels on 16 kHz float audio (NumPy/SciPy, host side): telephone, speed, far-field room.

Evaluation uses them to build conditions the model may never have trained on; they are deterministic
functions of their inputs (no randomness inside), so a condition set is a function of its seed upstream.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import soxr

from components.common.artifacts import SAMPLE_RATE_HZ

SR = SAMPLE_RATE_HZ
TELEPHONE_SR = 8_000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU = 255.0


@lru_cache(maxsize=4)
def _band_sos(sr: int, low: float, high: float, order: int = 4):
    from scipy.signal import butter

    return butter(order, [low, high], btype="bandpass", fs=sr, output="sos")


def mu_law(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """Encode to `bits`-bit µ-law (G.711 style) and decode again: the codec's quantisation noise."""
    y = np.sign(x) * np.log1p(MU * np.minimum(np.abs(x), 1.0)) / np.log1p(MU)
    levels = 2 ** (bits - 1) - 1
    y = np.round(y * levels) / levels
    return (np.sign(y) * ((1 + MU) ** np.abs(y) - 1) / MU).astype(np.float32)


def telephone(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """A narrowband call: down to 8 kHz, 300-3400 Hz band, 8-bit µ-law, back up to `sr`."""
    from scipy.signal import sosfilt

    narrow = soxr.resample(np.asarray(x, np.float32), sr, TELEPHONE_SR, quality="HQ")
    narrow = sosfilt(_band_sos(TELEPHONE_SR, *TELEPHONE_BAND_HZ), narrow).astype(np.float32)
    out = soxr.resample(mu_law(narrow), TELEPHONE_SR, sr, quality="HQ")
    n = len(x)
    return np.pad(out, (0, max(0, n - len(out))))[:n].astype(np.float32)


def change_speed(x: np.ndarray, factor: float, sr: int = SR) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, like a tape): the result has len(x)/factor samples."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    return soxr.resample(np.asarray(x, np.float32), int(round(sr * factor)), sr, quality="HQ").astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response, aligned on its direct path and kept at the input's RMS."""
    from scipy.signal import fftconvolve

    x = np.asarray(x, np.float32)
    rir = np.asarray(rir, np.float32)
    if not rir.size or not np.any(rir):
        return x.copy()
    delay = int(np.argmax(np.abs(rir)))
    y = fftconvolve(x, rir)[delay:delay + len(x)]
    rx, ry = float(np.sqrt(np.mean(x ** 2))), float(np.sqrt(np.mean(y ** 2)))
    return (y * (rx / ry) if ry > 0 else y).astype(np.float32)
