"""A client for the judge (or any Wyoming wake-word service), built on the `wyoming` package's own client.

    verdict = JudgeClient("tcp://127.0.0.1:10400").check(samples)   # 16 kHz mono int16
    verdict.detected, verdict.score

`check` opens one connection per call and sends detect -> audio-start -> audio-chunk* -> audio-stop, then
waits for `detection`, `not-detected` or `error` (an error raises `JudgeError` with the server's code).
`acheck` is the same as a coroutine, for callers with their own event loop.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.wake import Detect, Detection, NotDetected

from components.runtime.judge import SAMPLE_RATE_HZ, as_int16

DEFAULT_URI = "tcp://127.0.0.1:10400"
CHUNK_SAMPLES = 1024  # 64 ms per audio-chunk


class JudgeError(RuntimeError):
    """The judge answered with an error event, closed the connection, or could not be reached."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(f"{text} ({code})" if code else text)
        self.text, self.code = text, code


@dataclass(frozen=True)
class JudgeAnswer:
    detected: bool
    score: float | None  # the judge's score (None from a service that does not report one)
    cutoff: float | None
    name: str | None = None  # the wake word that was detected
    timestamp: int | None = None  # ms: where the detection ends, on the request's timeline
    context: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0  # audio-stop sent -> verdict received


class JudgeClient:
    def __init__(self, uri: str = DEFAULT_URI, *, timeout_s: float = 30.0, connect_timeout_s: float = 5.0,
                 chunk_samples: int = CHUNK_SAMPLES) -> None:
        self.uri, self.timeout_s, self.connect_timeout_s = uri, timeout_s, connect_timeout_s
        self.chunk_samples = chunk_samples
        AsyncClient.from_uri(uri)  # fail early on a malformed URI

    def _client(self) -> AsyncClient:
        return AsyncClient.from_uri(self.uri, connect_timeout=self.connect_timeout_s, read_timeout=self.timeout_s)

    async def adescribe(self) -> Info:
        try:
            async with self._client() as client:
                await client.write_event(Describe().event())
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise JudgeError("the server closed the connection before answering describe")
                    if Info.is_type(event.type):
                        return Info.from_event(event)
                    if Error.is_type(event.type):
                        err = Error.from_event(event)
                        raise JudgeError(err.text, err.code)
        except (OSError, asyncio.TimeoutError) as e:
            raise JudgeError(f"{self.uri}: {type(e).__name__}: {e}") from None

    async def acheck(self, samples: np.ndarray, names: list[str] | None = None) -> JudgeAnswer:
        """The judge's verdict on 16 kHz mono audio (int16, or float in [-1, 1])."""
        pcm = as_int16(samples).astype("<i2").tobytes()
        step = self.chunk_samples * 2
        try:
            async with self._client() as client:
                try:
                    await client.write_event(Detect(names=names).event())
                    await client.write_event(AudioStart(rate=SAMPLE_RATE_HZ, width=2, channels=1,
                                                        timestamp=0).event())
                    for i, pos in enumerate(range(0, len(pcm), step)):
                        await client.write_event(AudioChunk(rate=SAMPLE_RATE_HZ, width=2, channels=1,
                                                            audio=pcm[pos:pos + step],
                                                            timestamp=i * self.chunk_samples * 1000 // SAMPLE_RATE_HZ
                                                            ).event())
                    await client.write_event(AudioStop(timestamp=len(pcm) // 2 * 1000 // SAMPLE_RATE_HZ).event())
                except ConnectionError:  # the server hung up on us (e.g. busy): say why, if it did
                    await _raise_server_error(client)
                    raise
                t0 = asyncio.get_running_loop().time()
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise JudgeError("the server closed the connection without a verdict")
                    latency = (asyncio.get_running_loop().time() - t0) * 1000
                    if Detection.is_type(event.type):
                        d = Detection.from_event(event)
                        return _verdict(True, d.context, d.name, d.timestamp, latency)
                    if NotDetected.is_type(event.type):
                        return _verdict(False, NotDetected.from_event(event).context, None, None, latency)
                    if Error.is_type(event.type):
                        err = Error.from_event(event)
                        raise JudgeError(err.text, err.code)
        except (OSError, asyncio.TimeoutError) as e:
            raise JudgeError(f"{self.uri}: {type(e).__name__}: {e}") from None

    async def acheck_many(self, clips: list[np.ndarray], concurrency: int = 8) -> list[JudgeAnswer]:
        """Verdicts for many clips, in order, with at most `concurrency` requests in flight."""
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(samples: np.ndarray) -> JudgeAnswer:
            async with gate:
                return await self.acheck(samples)

        return list(await asyncio.gather(*(one(c) for c in clips)))

    def describe(self) -> Info:
        return asyncio.run(self.adescribe())

    def check_many(self, clips: list[np.ndarray], concurrency: int = 8) -> list[JudgeAnswer]:
        return asyncio.run(self.acheck_many(clips, concurrency))

    def check(self, samples: np.ndarray, names: list[str] | None = None) -> JudgeAnswer:
        """Blocking `acheck` (runs its own event loop: call `acheck` from inside a running loop)."""
        return asyncio.run(self.acheck(samples, names))


async def _raise_server_error(client: AsyncClient) -> None:
    """If the server sent an error event before closing, raise it as a JudgeError."""
    try:
        event = await asyncio.wait_for(client.read_event(), 2.0)
    except (OSError, asyncio.TimeoutError):
        return
    if event is not None and Error.is_type(event.type):
        err = Error.from_event(event)
        raise JudgeError(err.text, err.code)


def _verdict(detected: bool, context: dict[str, Any] | None, name: str | None, timestamp: int | None,
             latency_ms: float) -> JudgeAnswer:
    ctx = context if isinstance(context, dict) else {}
    score, cutoff = ctx.get("score"), ctx.get("cutoff")
    return JudgeAnswer(detected, float(score) if isinstance(score, (int, float)) else None,
                   float(cutoff) if isinstance(cutoff, (int, float)) else None, name, timestamp, ctx, latency_ms)


def read_clip(path) -> np.ndarray:
    """An audio file as 16 kHz mono int16 (any rate / channel count soundfile reads; resampled with soxr).
    A 16 kHz mono 16-bit file comes back sample for sample."""
    from components.common.audio import read_audio, resample, to_int16, to_mono

    data, sr = read_audio(path)
    if sr == SAMPLE_RATE_HZ and data.shape[1] == 1:  # soundfile reads PCM_16 as int16 / 32768: invert exactly
        return np.clip(np.round(data[:, 0].astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    return to_int16(resample(to_mono(data), sr))
