"""Audio I/O and conditioning shared by every stage: 16 kHz mono int16 is the only format past data_prep."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from components.common.errors import InputError
from components.common.artifacts import SAMPLE_RATE_HZ

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
FRAME_SAMPLES = SAMPLE_RATE_HZ // 100  # 10 ms analysis frames for silence detection


class AudioReadError(InputError):
    """The file could not be decoded as audio."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode any soundfile-supported file to float32 `[frames, channels]` and its sample rate."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise AudioReadError(str(e)) from None
    return data, int(sr)


def audio_samples(path: Path) -> tuple[int, int, int]:
    """(frames, channels, sample rate) from the file's header, without decoding it; AudioReadError when it
    has none that libsndfile can read."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise AudioReadError(str(e)) from None
    return int(info.frames), int(info.channels), int(info.samplerate)


def wav_is_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file declares more data than it holds (a cut-off upload or copy)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        size = Path(path).stat().st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_len = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                return pos + 8 + chunk_len > size
            pos += 8 + chunk_len + (chunk_len & 1)
    return False


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE_HZ) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ")


def clipped_fraction(x: np.ndarray, level: float = 0.999) -> float:
    return float(np.mean(np.abs(x) >= level)) if x.size else 0.0


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def frame_levels_dbfs(x: np.ndarray, frame: int = FRAME_SAMPLES) -> np.ndarray:
    """RMS level of consecutive frames in dBFS (a full-scale sine is -3 dBFS)."""
    n = len(x) // frame
    if n == 0:
        return np.full(1, 20 * np.log10(max(float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0, 1e-10)))
    frames = x[: n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def voiced_span(x: np.ndarray, threshold_dbfs: float, padding_samples: int,
                frame: int = FRAME_SAMPLES) -> tuple[int, int] | None:
    """[start, end) after trimming leading/trailing frames below the threshold; None if all silent."""
    active = np.flatnonzero(frame_levels_dbfs(x, frame) > threshold_dbfs)
    if active.size == 0:
        return None
    start = max(0, int(active[0]) * frame - padding_samples)
    end = min(len(x), (int(active[-1]) + 1) * frame + padding_samples)
    return start, end


def write_wav(path: Path, samples: np.ndarray, sr: int = SAMPLE_RATE_HZ) -> None:
    """int16 arrays are written as PCM_16, float arrays as FLOAT (RIRs keep their tails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if samples.dtype == np.int16 else "FLOAT"
    sf.write(str(path), samples, sr, subtype=subtype, format="WAV")


def read_wav_int16(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="int16")
    return data


def read_wav_float(path: Path) -> np.ndarray:
    """float32 samples (RIRs are stored as FLOAT WAV to keep their tails)."""
    data, _ = sf.read(str(path), dtype="float32")
    return data
