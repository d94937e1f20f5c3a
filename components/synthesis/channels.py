"""Real-world channels on 16 kHz float audio (host side): telephone, codecs, AGC, clipping, microphones, speed,
far-field room.

Evaluation uses some of them to build conditions; augmentation applies `apply_channel` to training clips of
every label. They are deterministic functions of their inputs and drawn settings (`draw_channel`), so a set
is a function of its seed upstream. Codecs, the compressor and the filters are pedalboard's (GPL-3.0; LAME for
MP3, libgsm for GSM), run offline.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import soxr

from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import Channel

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


def draw_channel(channel: Channel, rng: np.random.Generator) -> dict[str, float]:
    """The random settings of one channel instance (drawn on the host, in a fixed order)."""
    if channel is Channel.MP3:
        return {"vbr_quality": float(rng.uniform(4.0, 9.5))}
    if channel is Channel.AGC:
        return {"threshold_db": float(rng.uniform(-40, -15)), "ratio": float(rng.uniform(3, 12)),
                "attack_ms": float(rng.uniform(1, 10)), "release_ms": float(rng.uniform(50, 300))}
    if channel is Channel.CLIPPING:
        return {"drive_db": float(rng.uniform(6, 24)), "soft": float(rng.random() < 0.5)}
    if channel is Channel.MICROPHONE:
        return {"highpass_hz": float(rng.uniform(80, 400)), "lowpass_hz": float(rng.uniform(3500, 7500)),
                "peak_hz": float(rng.uniform(1500, 5000)), "peak_db": float(rng.uniform(2, 10))}
    return {}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def apply_channel(x: np.ndarray, channel: Channel, settings: dict[str, float], sr: int = SR) -> np.ndarray:
    """`x` through one channel, same length; level-changing channels give back the input's RMS."""
    import pedalboard as pb

    x = np.asarray(x, np.float32)
    if channel is Channel.TELEPHONE:
        return telephone(x, sr)
    if channel is Channel.MP3:
        y = pb.MP3Compressor(vbr_quality=settings["vbr_quality"])(x, sr)
    elif channel is Channel.GSM:
        y = pb.GSMFullRateCompressor()(x, sr)
    elif channel is Channel.AGC:
        y = pb.Compressor(threshold_db=settings["threshold_db"], ratio=settings["ratio"],
                          attack_ms=settings["attack_ms"], release_ms=settings["release_ms"])(x, sr)
    elif channel is Channel.CLIPPING:
        peak = float(np.max(np.abs(x))) or 1.0
        drive = 10 ** (settings["drive_db"] / 20) / peak
        y = np.tanh(x * drive) if settings["soft"] else np.clip(x * drive, -1.0, 1.0)
    elif channel is Channel.MICROPHONE:
        y = pb.Pedalboard([pb.HighpassFilter(settings["highpass_hz"]), pb.LowpassFilter(settings["lowpass_hz"]),
                           pb.PeakFilter(settings["peak_hz"], settings["peak_db"], 1.0)])(x, sr)
    else:  # pragma: no cover - the enum is exhaustive
        raise ValueError(f"unknown channel {channel}")
    y = np.asarray(y, np.float32).reshape(-1)[: len(x)]
    y = np.pad(y, (0, len(x) - len(y)))
    rx, ry = _rms(x), _rms(y)
    return (y * (rx / ry) if ry > 0 and channel in (Channel.AGC, Channel.CLIPPING) else y).astype(np.float32)
