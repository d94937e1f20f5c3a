"""Turn any input audio into a usable 16 kHz mono int16 clip, or say exactly why it cannot be used."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from components.common import audio
from components.common.artifacts import SAMPLE_RATE_HZ, Label, QuarantineReason
from components.common.config import Quality
from components.common.storage import SourceFile


class Quarantined(Exception):
    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Clip:
    """A conditioned clip, not yet assigned to a split."""

    samples: np.ndarray  # int16, 16 kHz, mono
    label: Label
    voice: str
    source: str
    origin: str
    text: str | None = None
    family: str = ""  # engine:voice group (synth.family_of); user recordings: user:<speaker>

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.samples.tobytes()).hexdigest()


def condition(data: np.ndarray, sr: int, quality: Quality, *, trim: bool, min_duration_s: float) -> np.ndarray:
    """Checks and conversion shared by user files and synthetic speech. Raises `Quarantined`."""
    if data.size == 0:
        raise Quarantined(QuarantineReason.EMPTY, "no audio samples")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise Quarantined(QuarantineReason.NON_FINITE, f"{bad} NaN or infinite samples")
    frac = audio.clipped_fraction(data)
    if frac > quality.max_clipped_fraction:
        raise Quarantined(QuarantineReason.CLIPPED,
                          f"{frac:.1%} of samples at full scale (limit {quality.max_clipped_fraction:.1%})")
    x = audio.resample(audio.to_mono(data), sr)
    span = audio.voiced_span(x, quality.silence_threshold_dbfs, quality.trim_padding_ms * SAMPLE_RATE_HZ // 1000)
    if span is None:
        raise Quarantined(QuarantineReason.SILENT, f"no 10 ms frame above {quality.silence_threshold_dbfs} dBFS")
    if trim:
        x = x[span[0]:span[1]]
    duration = len(x) / SAMPLE_RATE_HZ
    if duration < min_duration_s:
        raise Quarantined(QuarantineReason.TOO_SHORT,
                          f"{duration:.2f} s{' after trimming silence' if trim else ''} (minimum {min_duration_s} s)")
    return audio.to_int16(x)


def load_source_file(src: SourceFile, quality: Quality, *, trim: bool, min_duration_s: float) -> np.ndarray:
    """Read and condition one user file. Raises `Quarantined` with the reason it is unusable."""
    suffix = src.local_path.suffix.lower()
    if suffix not in audio.AUDIO_EXTENSIONS:
        raise Quarantined(QuarantineReason.UNSUPPORTED_FORMAT,
                          f"extension {suffix or '(none)'!r}; supported: {', '.join(audio.AUDIO_EXTENSIONS)}")
    if src.local_path.stat().st_size == 0:
        raise Quarantined(QuarantineReason.EMPTY, "zero-length file")
    if suffix == ".wav" and audio.wav_is_truncated(src.local_path):
        raise Quarantined(QuarantineReason.TRUNCATED, "the data chunk is shorter than its header declares")
    try:
        data, sr = audio.read_audio(src.local_path)
    except audio.AudioReadError as e:
        raise Quarantined(QuarantineReason.UNREADABLE, str(e)) from None
    return condition(data, sr, quality, trim=trim, min_duration_s=min_duration_s)


def user_voice(src: SourceFile) -> str:
    """Speaker id from the first sub-folder; otherwise the file is its own group."""
    return f"speaker:{src.group}" if src.group else f"file:{src.origin}"
