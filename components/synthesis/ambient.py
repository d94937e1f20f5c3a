"""Synthetic long-form ambient audio: speech babble, coloured noise and music-like tones.

It stands in for real household recordings when a user has none, so mining and false-accepts-per-hour
have something to scan. Every file is a function of its seed only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import Ambient, AmbientKind

SR = SAMPLE_RATE_HZ


def _db(x: float) -> float:
    return 10 ** (x / 20)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def _normalise(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    r = _rms(x)
    return x * (_db(level_dbfs) / r) if r > 0 else x


def _slow_envelope(n: int, rng: np.random.Generator, depth_db: float = 12.0, period_s: float = 4.0) -> np.ndarray:
    """A smooth random gain curve, so levels drift like a real room instead of staying flat."""
    knots = max(2, int(n / (period_s * SR)) + 2)
    pts = rng.uniform(-depth_db / 2, depth_db / 2, knots)
    curve = np.interp(np.arange(n), np.linspace(0, n - 1, knots), pts)
    return 10 ** (curve / 20)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise (spectral slope 0, -3 or -6 dB/octave) with a drifting level."""
    exponent = float(rng.choice([0.0, 1.0, 2.0]))
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    freqs[0] = freqs[1]
    spec /= freqs ** (exponent / 2)
    x = np.fft.irfft(spec, n)
    return _normalise(x, -20.0) * _slow_envelope(n, rng)


def music_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """Notes and chords from a random scale: harmonic tones with attack/decay envelopes at a random tempo."""
    x = np.zeros(n)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    beat = int(SR * 60 / rng.uniform(70, 150))
    harmonics = rng.uniform(0.2, 0.8, 6) ** np.arange(1, 7)
    pos = 0
    while pos < n:
        length = beat * int(rng.choice([1, 1, 2, 4]))
        notes = root * 2 ** (rng.choice(scale, size=int(rng.integers(1, 4))) / 12)
        m = min(length, n - pos)
        t = np.arange(m) / SR
        env = np.minimum(1.0, t / 0.02) * np.exp(-t / rng.uniform(0.15, 0.8))
        tone = sum(a * np.sin(2 * np.pi * f * (k + 1) * t) for f in notes for k, a in enumerate(harmonics))
        x[pos:pos + m] += env * tone
        pos += length
    return _normalise(x, -20.0)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Near-silence: 50 or 60 Hz mains hum with random harmonics over a faint pink floor (fridges, chargers)."""
    t = np.arange(n) / SR
    base = float(rng.choice([50.0, 60.0]))
    x = sum(rng.uniform(0, 1) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    freqs[0] = freqs[1]
    floor = np.fft.irfft(spec / np.sqrt(freqs), n)
    return _normalise(x, -20.0) + _normalise(floor, -20.0 - rng.uniform(6, 20))


def babble(n: int, speech: Sequence[np.ndarray], talkers: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Overlapping talkers: clips placed at random times so that 2-6 voices speak at once on average."""
    x = np.zeros(n)
    if not speech:
        return x
    mean_len = float(np.mean([len(s) for s in speech])) or 1.0
    density = rng.uniform(*talkers)
    for _ in range(max(1, int(density * n / mean_len))):
        clip = speech[int(rng.integers(len(speech)))].astype(np.float64) / 32768.0
        start = int(rng.integers(-len(clip) // 2, n))
        a, b = max(0, start), min(n, start + len(clip))
        if b > a:
            x[a:b] += clip[a - start:b - start] * _db(rng.uniform(-12, 0))
    return _normalise(x, -20.0) * _slow_envelope(n, rng, depth_db=8.0)


def channel_speech(n: int, speech: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Talkers one after another with short gaps, each utterance through a drawn channel (telephone, codec,
    AGC, clipping, microphone) or none, at its own level: speech as it reaches a device from radios, TVs,
    calls on speaker and people in the room. Long streams of it are what background mining scans."""
    from components.synthesis.channels import apply_channel, draw_channel
    from components.common.config import Channel

    x = np.zeros(n)
    if not speech:
        return x
    channels = list(Channel)
    pos = int(rng.integers(0, SR))
    while pos < n:
        clip = speech[int(rng.integers(len(speech)))].astype(np.float32) / 32768.0
        channel = channels[int(rng.integers(len(channels)))]
        settings = draw_channel(channel, rng)
        if rng.random() < 0.7:
            clip = apply_channel(clip, channel, settings)
        m = min(len(clip), n - pos)
        x[pos:pos + m] += clip[:m] * _db(rng.uniform(-10, 0))
        pos += m + int(rng.uniform(0.1, 1.5) * SR)
    return _normalise(x, -20.0)


def ambient_file(duration_s: float, primary: AmbientKind, cfg: Ambient, speech: Sequence[np.ndarray],
                 seed: int) -> np.ndarray:
    """One ambient stream as int16: the primary kind at full level, the other kinds well below it."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SR)
    makers = {
        AmbientKind.NOISE: lambda: coloured_noise(n, rng),
        AmbientKind.MUSIC: lambda: music_like(n, rng),
        AmbientKind.BABBLE: lambda: babble(n, speech, cfg.babble_talkers_range, rng),
        AmbientKind.HUM: lambda: hum(n, rng),
        AmbientKind.CHANNEL_SPEECH: lambda: channel_speech(n, speech, rng),
    }
    x = makers[primary]()
    for kind in cfg.kinds:
        if kind != primary and rng.random() < 0.5:
            x = x + makers[kind]() * _db(rng.uniform(-25, -10))
    x = _normalise(x, rng.uniform(*cfg.level_dbfs_range))
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
