"""Wyoming audio (`rate`, `width` bytes, `channels`, little-endian signed PCM) to the judge's input: 16 kHz
mono int16. Other rates and channel counts are converted with the project's resampler (soxr); sample widths
other than 16- and 32-bit signed PCM are refused."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.audio import resample, to_int16, to_mono

JUDGE_RATE, JUDGE_WIDTH, JUDGE_CHANNELS = 16_000, 2, 1
WIDTH_DTYPES = {2: "<i2", 4: "<i4"}
MIN_RATE_HZ, MAX_RATE_HZ = 8_000, 48_000
MAX_CHANNELS = 2  # with 32-bit samples at 48 kHz: at most 384 KB per second of audio buffered per request


class AudioFormatError(ValueError):
    """An audio format the judge cannot take (the request is refused with an error event)."""

    code = "unsupported-audio-format"


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    width: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.frame_bytes

    @property
    def is_native(self) -> bool:
        return (self.rate, self.width, self.channels) == (JUDGE_RATE, JUDGE_WIDTH, JUDGE_CHANNELS)

    def __str__(self) -> str:
        return f"{self.rate} Hz, {8 * self.width}-bit, {self.channels} channel(s)"


def check_format(rate, width, channels) -> PcmFormat:
    """The format, if the judge can take it (possibly after conversion); AudioFormatError otherwise."""
    for key, value in (("rate", rate), ("width", width), ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise AudioFormatError(f"audio {key} must be an integer, got {value!r}"[:200])
    if width not in WIDTH_DTYPES:
        raise AudioFormatError(f"sample width {width} bytes is not supported (16- or 32-bit signed PCM)")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise AudioFormatError(f"sample rate {rate} Hz is outside {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError(f"{channels} channels is outside 1-{MAX_CHANNELS}")
    return PcmFormat(rate, width, channels)


def to_judge_input(pcm: bytes, fmt: PcmFormat) -> np.ndarray:
    """16 kHz mono int16 samples for raw PCM in `fmt` (channels averaged, resampled with soxr)."""
    if len(pcm) % fmt.frame_bytes:
        raise AudioFormatError(f"{len(pcm)} bytes is not a whole number of {fmt.frame_bytes}-byte frames")
    x = np.frombuffer(pcm, dtype=WIDTH_DTYPES[fmt.width])
    if fmt.is_native:
        return x.astype(np.int16, copy=True)
    return to_int16(resample(_mono_float(pcm, fmt), fmt.rate, JUDGE_RATE))


def _mono_float(pcm: bytes, fmt: PcmFormat) -> np.ndarray:
    """float32 mono in [-1, 1] for whole frames of raw PCM in `fmt` (channels averaged)."""
    x = np.frombuffer(pcm, dtype=WIDTH_DTYPES[fmt.width])
    full_scale = float(2 ** (8 * fmt.width - 1))
    return to_mono(x.reshape(-1, fmt.channels).astype(np.float64) / full_scale).astype(np.float32)


class StreamConverter:
    """`to_judge_input` for audio that arrives in chunks without end (a streaming wake-word client): the same
    channel averaging, and soxr's streaming resampler (quality HQ, as `resample`) so that chunk edges add no
    artefacts. Native 16 kHz mono 16-bit audio passes through sample for sample. A partial frame at the end of
    a chunk is kept for the next one."""

    def __init__(self, fmt: PcmFormat) -> None:
        import soxr

        self.fmt = fmt
        self._pending = b""
        self._stream = None if fmt.rate == JUDGE_RATE else soxr.ResampleStream(fmt.rate, JUDGE_RATE, 1,
                                                                              dtype="float32", quality="HQ")

    def feed(self, pcm: bytes) -> np.ndarray:
        """16 kHz mono int16 samples for the next chunk (possibly none yet: the resampler has a delay)."""
        data = self._pending + pcm
        whole = len(data) - len(data) % self.fmt.frame_bytes
        self._pending, data = data[whole:], data[:whole]
        if self.fmt.is_native:
            return np.frombuffer(data, dtype="<i2").astype(np.int16)
        mono = _mono_float(data, self.fmt)
        return to_int16(mono if self._stream is None else self._stream.resample_chunk(mono))

    def feed_bytes(self, pcm: bytes) -> bytes:
        """`feed` as 16 kHz mono int16 little-endian bytes; native audio passes through without a copy when it
        comes in whole frames."""
        if self.fmt.is_native and not self._pending and not len(pcm) % 2:
            return pcm
        return self.feed(pcm).astype("<i2").tobytes()

    def flush(self) -> np.ndarray:
        """What the resampler still holds, at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, np.int16)
        return to_int16(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
