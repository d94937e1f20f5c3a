"""Real audio files made by the tests: speech-like signals and deliberately broken files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def speechlike(duration_s: float, sr: int = 16_000, seed: int = 0, lead_silence_s: float = 0.0,
               level: float = 0.3) -> np.ndarray:
    """Amplitude-modulated harmonic tone with noise: loud enough to pass the silence check."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    f0 = rng.uniform(100, 220)
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    x = level * (voice / 2.3 * envelope + 0.05 * rng.standard_normal(t.size))
    pad = np.zeros(int(lead_silence_s * sr))
    return np.concatenate([pad, x, pad]).astype(np.float32)


def write(path: Path, samples: np.ndarray, sr: int = 16_000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sr, **kw)
    return path


def broken_files(root: Path) -> dict[str, tuple[Path, str]]:
    """Each broken input and the quarantine reason it must get."""
    root.mkdir(parents=True, exist_ok=True)
    good = write(root / "_tmp_ok.wav", speechlike(1.0, seed=1), subtype="PCM_16")
    data = good.read_bytes()
    good.unlink()
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, reason: str, content: bytes | None = None) -> Path:
        p = root / name
        if content is not None:
            p.write_bytes(content)
        cases[name] = (p, reason)
        return p

    case("truncated.wav", "truncated", data[: len(data) // 2])
    case("header_only.wav", "unreadable", data[:30])
    case("zero.wav", "empty", b"")
    case("text.wav", "unreadable", b"this is not audio at all\n" * 200)
    case("notes.txt", "unsupported_format", b"a note someone left in the folder\n")
    nan = speechlike(1.0, seed=2)
    nan[100:110] = np.nan
    write(case("nan_float.wav", "non_finite"), nan, subtype="FLOAT")
    write(case("silent.wav", "silent"), np.zeros(16_000, np.float32), subtype="PCM_16")
    clipped = np.clip(speechlike(1.0, seed=3, level=3.0), -1, 1)
    write(case("clipped.wav", "clipped"), clipped, subtype="PCM_16")
    write(case("short.wav", "too_short"), speechlike(0.1, seed=4), subtype="PCM_16")
    return cases
