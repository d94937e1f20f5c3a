"""`wakeline serve`: published models as a streaming Wyoming wake-word service, and their manifests over HTTP.

Wyoming (what Home Assistant's wake-word platform sends, on one connection per pipeline run):

    client: describe                       -> server: info (one wake program, one wake model per served model)
    client: detect {names}? audio-start, audio-chunk, audio-chunk, ... (without end)
    server:   detection {name, timestamp, context} as soon as the device logic fires (several per stream)
    client: audio-stop                     -> server: not-detected, if nothing was detected in that stream

Each stream runs every selected model as the device does (`components.serving.stream`): the device frontend,
the model in TFLite-Micro with its state kept across chunks, the manifest's cutoff and sliding window, ESPHome's
refractory period. `timestamp` is where the firing inference's audio ends, in ms on the stream's timeline (the
audio-start's `timestamp`, else the first chunk's, else 0, plus the audio received since). Audio in any format
the judge takes (8-48 kHz, mono or stereo, 16- or 32-bit) is converted to 16 kHz mono 16-bit; the connection
handling, limits and defences are the judge's (`components.judge.server.JudgeHandler`: bounded frames, read and
write timeouts, a connection cap, an `error` event before closing); every complete event in one read of a
connection is parsed and handled with no await per event (`protocol.FrameParser`).

The audio runs on the event loop, in the connection's own read loop, which also paces a client that sends
faster than the models run. A chunk's audio waits only until it completes a model's next stride of features
(`stream.DeviceStream`: a detection can happen only there), so answers are as early as with per-chunk
processing and 10 ms chunks cost a third of the model calls. A `ping` is answered after everything before it
has been processed, so its `pong` tells a client how far behind the server is. The frontend and TFLite-Micro
hold the GIL (two threads run them no faster than one), so worker threads would not add a core: one process
uses one core.

Judge-confirmed models (`--confirm-with-judge` and a published cascade, `catalog.ServedCascade`): the sentry
fires at the cascade's sentry cutoff, and its detection is held until `judge_after_s` of audio after the firing
point has arrived; the judge then scores the stream's features around it (`confirm.Confirmations`), and the
`detection` (the sentry's timestamp, the judge's score in its context) is sent only if the judge confirms. The
judge runs in a thread pool (`judge_workers`), awaited by the connection's read loop: that stream waits for its
verdict, the others go on. At audio-stop a pending detection is judged on what has arrived.

HTTP (`http_port`): `GET /<name>.json` is the model's manifest with `model` set to `<name>.tflite`, which
`GET /<name>.tflite` serves, so ESPHome's `micro_wake_word: models: - model: http://HOST:PORT/<name>.json`
downloads both; `GET /` lists the models as JSON.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe, Info, WakeModel, WakeProgram
from wyoming.ping import Ping, Pong
from wyoming.wake import Detect, Detection, NotDetected

from components.common.artifacts import code_version
from components.common.frontend import FEATURE_CHANNELS
from components.common.jsonio import dumps
from components.common.names import slug
from components.judge.audio import JUDGE_RATE, AudioFormatError, PcmFormat, StreamConverter, check_format
from components.judge.protocol import FrameLimits
from components.judge.server import ATTRIBUTION, JudgeHandler, LoopThread
from components.serving.catalog import ServedModel
from components.serving.confirm import Confirmation, Confirmations, judge_segment
from components.serving.stream import DeviceStream, Firing, ModelStream

log = logging.getLogger(__name__)

PROGRAM = "wakeline"
AUDIO_CHUNK = AudioChunk(rate=JUDGE_RATE, width=2, channels=1, audio=b"").event().type
MAX_HTTP_HEADER_BYTES = 8 * 1024


class ServeSettings(BaseModel):
    """`wakeline serve`'s settings (unknown keys rejected). Port 0 binds a free port (tests, benchmarks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(10400, ge=0, le=65535)
    http_port: int | None = Field(10401, ge=0, le=65535)  # None: no HTTP model server
    read_timeout_s: float = Field(5.0, gt=0)  # a stream that sends no event for this long is closed
    write_timeout_s: float = Field(5.0, gt=0)  # a client that does not read our events for this long is closed
    max_connections: int = Field(200, ge=1)
    max_chunk_bytes: int = Field(256 * 1024, ge=1024)  # one audio-chunk's payload (HA sends ~2 KiB)
    judge_workers: int = Field(2, ge=1)  # threads scoring judge-confirmed detections (models with a cascade)

    @property
    def limits(self) -> FrameLimits:
        return FrameLimits(max_payload_bytes=self.max_chunk_bytes)


def describe_model(m: ServedModel) -> str:
    """One line per served model, for `info` and the startup log: its cutoff, and whether a judge confirms it."""
    if m.cascade is None:
        return f"{m.phrase} (cutoff {m.cutoff:g})"
    return f"{m.phrase} ({m.cascade.describe()})"


def wake_info(models: list[ServedModel]) -> Info:
    """What `describe` answers: one wake program with one wake model per served model."""
    wake_models = [WakeModel(name=m.name, description=describe_model(m), phrase=m.phrase,
                             attribution=ATTRIBUTION, installed=True, languages=list(m.languages), version=m.version)
                   for m in models]
    return Info(wake=[WakeProgram(name=PROGRAM, description="wakeline: published micro_wake_word models on the "
                                  "device runtime (TFLite-Micro), streaming", attribution=ATTRIBUTION,
                                  installed=True, version=code_version(), models=wake_models)])


@dataclass
class WakeService:
    """What every connection shares: the models, the settings, the connection count and counters."""

    models: list[ServedModel]
    settings: ServeSettings
    active: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"connections": 0, "streams": 0, "detections": 0,
                                                              "errors": 0, "rejected": 0, "judged": 0,
                                                              "judge_rejected": 0})
    on_detection: Callable[[str, int], None] | None = None  # (name, timestamp ms): benchmarks measure latency

    def __post_init__(self) -> None:
        self.info_event = wake_info(self.models).event()
        self.by_name = {m.name: m for m in self.models}
        self.by_phrase = {slug(m.phrase): m for m in self.models}
        self.judge_pool = ThreadPoolExecutor(self.settings.judge_workers, thread_name_prefix="serve-judge") \
            if any(m.cascade is not None for m in self.models) else None

    async def judge(self, confirm: Confirmations, final: bool = False) -> list[Confirmation]:
        """The verdicts on a stream's pending detections that are due, in the judge pool, in order."""
        loop = asyncio.get_running_loop()
        verdicts = []
        for pending, frames in confirm.due(final):
            cascade = confirm.cascades[pending.index]
            verdicts.append(await loop.run_in_executor(self.judge_pool, judge_segment, cascade, pending, frames))
        return verdicts

    async def warm_up(self) -> None:
        """Run every judge once in each pool thread (a TFLite-Micro judge opens an interpreter per thread)."""
        if self.judge_pool is None:
            return
        loop = asyncio.get_running_loop()
        for m in self.models:
            if m.cascade is not None:
                frames = np.zeros((m.cascade.context_frames + m.cascade.after_frames, FEATURE_CHANNELS), np.uint16)
                await asyncio.gather(*(loop.run_in_executor(self.judge_pool, m.cascade.judge.judge_features, frames)
                                       for _ in range(self.settings.judge_workers)))

    def close(self) -> None:
        if self.judge_pool is not None:
            self.judge_pool.shutdown(wait=False, cancel_futures=True)

    def select(self, names: list[str] | None) -> list[ServedModel]:
        """The models a `detect` asks for (all of them without names); by id or by phrase."""
        wanted = [slug(n) for n in names or [] if n.strip()]
        if not wanted:
            return list(self.models)
        chosen = {m.name: m for w in wanted for m in (self.by_name.get(w), self.by_phrase.get(w)) if m is not None}
        return list(chosen.values())

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "StreamHandler":
        return StreamHandler(self, reader, writer)


class StreamHandler(JudgeHandler):
    """One Wyoming connection, streaming: the judge's connection handling (read loop, limits, timeouts,
    errors, lingering close) with events answered as they arrive instead of at audio-stop."""

    service: WakeService  # type: ignore[assignment]

    def _new_request(self) -> None:
        self.names: list[str] | None = None
        self.fmt: PcmFormat | None = None
        self.converter: StreamConverter | None = None
        self.device: DeviceStream | None = None
        self.streams: list[tuple[ServedModel, ModelStream]] = []
        self.confirm: Confirmations | None = None  # the detections waiting for a judge
        self.base_ms = 0
        self.base_known = False
        self.samples = 0
        self.detections = 0
        self.dropped = False

    async def handle_event(self, event: Event) -> bool:
        kind, data = event.type, event.data
        if kind == AUDIO_CHUNK:  # first: a hundred of these a second per stream
            await self._chunk(data, event.payload or b"")
        elif Describe.is_type(kind):
            await self._send(self.service.info_event)
        elif Ping.is_type(kind):
            if self.device is not None and not self.dropped:  # the pong says: everything before it is answered
                await self._run(self.device.flush())
            text = data.get("text")
            await self._send(Pong(text=text if isinstance(text, str) else None).event())
        elif Detect.is_type(kind):
            names = data.get("names")
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                await self._drop("bad-request", "detect: names must be a list of strings")
                return True
            self._new_request()
            self.names = names or None
        elif AudioStart.is_type(kind):
            await self._start(data)
        elif AudioStop.is_type(kind):
            await self._stop()
        else:
            log.debug("%s: ignoring a %r event", self.peer, kind)
        return True

    async def _start(self, data: dict[str, Any]) -> None:
        names = self.names  # a detect before audio-start belongs to this stream
        self._new_request()
        self.names = names
        try:
            fmt = check_format(data.get("rate"), data.get("width"), data.get("channels"))
        except AudioFormatError as e:
            await self._drop(e.code, str(e))
            return
        models = self.service.select(names)
        if not models:
            served = ", ".join(m.name for m in self.service.models)
            await self._drop("unknown-wake-word", f"none of {names} is served here (served: {served})")
            return
        self.fmt, self.converter = fmt, StreamConverter(fmt)
        self.streams = [(m, ModelStream(m.tflite, m.arena, m.sentry_cutoff, m.settings)) for m in models]
        cascades = {i: m.cascade for i, m in enumerate(models) if m.cascade is not None}
        self.confirm = Confirmations(cascades, {i: s.stride for i, (_, s) in enumerate(self.streams)}) \
            if cascades else None
        self.device = DeviceStream([s for _, s in self.streams], None if self.confirm is None else self.confirm.history)
        self._base(data)
        self.service.counts["streams"] += 1
        if not fmt.is_native:
            log.info("%s: converting %s to 16000 Hz, 16-bit, mono", self.peer, fmt)

    def _base(self, data: dict[str, Any]) -> None:
        ts = data.get("timestamp")
        if not self.base_known and isinstance(ts, int) and not isinstance(ts, bool):
            self.base_ms, self.base_known = ts, True

    async def _chunk(self, data: dict[str, Any], payload: bytes) -> None:
        if self.dropped:
            return
        fmt, device = self.fmt, self.device
        if fmt is None or self.converter is None or device is None:
            await self._drop("protocol", "audio-chunk before audio-start")
            return
        rate, width, channels = data.get("rate"), data.get("width"), data.get("channels")
        if not (rate == fmt.rate and width == fmt.width and channels == fmt.channels and type(rate) is int
                and type(width) is int and type(channels) is int):  # the same format as audio-start: no more checks
            try:
                chunk_fmt = check_format(rate, width, channels)
            except AudioFormatError as e:
                await self._drop(e.code, str(e))
                return
            await self._drop(AudioFormatError.code, f"audio format changed inside a stream ({fmt} -> {chunk_fmt})")
            return
        if self.samples == 0:
            self._base(data)
        pcm = self.converter.feed_bytes(payload)
        self.samples += len(pcm) // 2
        fired = device.feed(pcm)
        if fired or self.confirm is not None:
            await self._run(fired)

    async def _run(self, fired: list[tuple[int, Firing]], final: bool = False) -> None:
        """Send the device detections; hold the judge-confirmed models' firings until their judge has spoken
        (every one still held when `final`: the stream has ended)."""
        confirm = self.confirm
        for index, firing in fired:
            if confirm is not None and index in confirm.cascades:
                confirm.add(index, firing)
            else:
                await self._detected(index, firing)
        if confirm is None or not (confirm.pending or len(confirm.history.frames) > confirm.history.keep):
            return
        for verdict in await self.service.judge(confirm, final):
            index, firing = verdict.pending.index, verdict.pending.firing
            cascade = confirm.cascades[index]
            self.service.counts["judged"] += 1
            log.info("%s: judge %s %s at %d ms (score %.3f, threshold %.3f, %d frames, %.1f ms)", self.peer,
                     "CONFIRMED" if verdict.confirmed else "rejected", self.streams[index][0].name,
                     self.base_ms + firing.end_ms, verdict.score, cascade.threshold, verdict.frames, verdict.judge_ms)
            if verdict.confirmed:
                await self._detected(index, firing, {"judge_score": round(verdict.score, 4),
                                                     "judge_cutoff": cascade.judge_cutoff,
                                                     "judge_ms": round(verdict.judge_ms, 2)})
            else:
                self.service.counts["judge_rejected"] += 1

    async def _detected(self, index: int, firing: Firing, judged: dict[str, Any] | None = None) -> None:
        model = self.streams[index][0]
        self.detections += 1
        self.service.counts["detections"] += 1
        timestamp = self.base_ms + firing.end_ms
        log.info("%s: DETECTED %s at %d ms (window mean %.3f, cutoff %g)", self.peer, model.name,
                 timestamp, firing.probability, model.sentry_cutoff)
        if self.service.on_detection is not None:
            self.service.on_detection(model.name, timestamp)
        await self._send(Detection(name=model.name, timestamp=timestamp, context={
            "probability": firing.probability, "cutoff": model.sentry_cutoff, "inference": firing.inference,
            "version": model.version, **(judged or {})}).event())

    async def _stop(self) -> None:
        if self.dropped:
            self._new_request()
            return
        if self.fmt is None or self.converter is None or self.device is None:
            await self._send_error("protocol", "audio-stop before audio-start")
            return
        fired = self.device.feed(self.converter.flush().astype("<i2").tobytes())
        await self._run(fired + self.device.flush(), final=True)
        detections, audio_s = self.detections, self.samples / JUDGE_RATE
        names = [m.name for m, _ in self.streams]
        self._new_request()
        if not detections:
            await self._send(NotDetected(context={"models": names, "audio_s": round(audio_s, 3)}).event())


# -- HTTP: the manifests and .tflite files for ESPHome ----------------------------------------------------


class ModelFiles:
    """What the HTTP server answers: `/` (an index), `/<name>.json` (the manifest, `model` rewritten to the
    file beside it) and `/<name>.tflite`; files are read once at start."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        index = []
        for m in models:
            self.files[f"/{m.name}.json"] = ((dumps(m.http_manifest(), indent=2) + "\n").encode(), "application/json")
            self.files[f"/{m.tflite_name}"] = (m.tflite.read_bytes(), "application/octet-stream")
            index.append({"name": m.name, "phrase": m.phrase, "version": m.version, "manifest": f"/{m.name}.json",
                          "model": f"/{m.tflite_name}", "probability_cutoff": m.cutoff})
        self.files["/"] = ((dumps({"models": index}, indent=2) + "\n").encode(), "application/json")

    def answer(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", "text/plain"
        found = self.files.get(path.split("?", 1)[0])
        if found is None:
            return 404, b"not found\n", "text/plain"
        return 200, *found


async def handle_http(files: ModelFiles, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      timeout_s: float) -> None:
    """One HTTP/1.x request (then close): bounded request head, GET/HEAD only."""
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    method = ""
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                raise ValueError("bad request line")
            method, path = parts[0], parts[1]
            status, body, ctype = files.answer(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, body, ctype = 400, b"bad request\n", "text/plain"
        writer.write(f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: {ctype}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        if method != "HEAD":
            writer.write(body)
        await asyncio.wait_for(writer.drain(), timeout_s)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


# -- running it -----------------------------------------------------------------------------------------


@dataclass
class Bound:
    """Where the servers listen (the ports actually bound: port 0 asks for a free one)."""

    host: str
    port: int
    http_port: int | None

    @property
    def uri(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        return None if self.http_port is None else f"http://{self.host}:{self.http_port}"


async def serve_async(models: list[ServedModel], settings: ServeSettings, ready: Callable[[Bound], None] | None = None,
                      stop: asyncio.Event | None = None, service: WakeService | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM / SIGINT when run in the main thread)."""
    import signal

    service = service or WakeService(models, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers: set[asyncio.Task] = set()

    async def on_wyoming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        try:
            await service.handler(reader, writer).run()
        finally:
            handlers.discard(task)

    wyoming = await asyncio.start_server(on_wyoming, settings.host, settings.port,
                                         limit=settings.limits.max_header_bytes)
    http = None
    if settings.http_port is not None:
        files = ModelFiles(models)
        http = await asyncio.start_server(lambda r, w: handle_http(files, r, w, settings.read_timeout_s),
                                          settings.host, settings.http_port, limit=MAX_HTTP_HEADER_BYTES)
    bound = Bound(settings.host, wyoming.sockets[0].getsockname()[1],
                  None if http is None else http.sockets[0].getsockname()[1])
    signals = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
    try:
        await service.warm_up()
        for m in models:
            log.info("serving %s, version %s: %s", m.name, m.version, describe_model(m))
        log.info("serving %d model(s) on %s (Wyoming, streaming)%s", len(models), bound.uri,
                 "" if bound.http_url is None else f" and {bound.http_url} (manifests for ESPHome)")
        if ready is not None:
            ready(bound)
        await stop.wait()
        log.info("stopping: %s", service.counts)
    finally:
        for server in (wyoming, http):
            if server is not None:
                server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        service.close()
        for sig in signals:
            loop.remove_signal_handler(sig)


def serve(models: list[ServedModel], settings: ServeSettings) -> None:
    """Block serving (the CLI's `wakeline serve`)."""
    asyncio.run(serve_async(models, settings))


class ServeThread(LoopThread):
    """The server on its own event loop in a background thread (tests, benchmarks):

        with ServeThread(models, ServeSettings(port=0, http_port=0)) as server:
            server.bound.uri, server.bound.http_url
    """

    def __init__(self, models: list[ServedModel], settings: ServeSettings, start_timeout_s: float = 30.0,
                 service: WakeService | None = None) -> None:
        super().__init__("wakeline-serve", start_timeout_s)
        self.models, self.settings = models, settings
        self.service = service or WakeService(models, settings)
        self.bound: Bound | None = None

    async def _main(self) -> None:
        def ready(bound: Bound) -> None:
            self.bound = bound
            self._started()

        await serve_async(self.models, self.settings, ready, self._stop, self.service)
