"""The judge as a Wyoming wake-word service (the protocol Home Assistant speaks to wake-word engines).

One request on a connection (several may follow one another on the same connection):

    client: detect (optional; `names` filter) -> audio-start -> audio-chunk* -> audio-stop
    judge:  detection {name, timestamp, context: {score, cutoff, threshold, ...}}  or  not-detected {context}

plus `describe` -> `info` (one wake program with the one wake-word model) and `ping` -> `pong` at any time.
Unknown event types are ignored, as Wyoming peers are expected to do.

Defences (a bad client never takes the server down, nor holds it up):
- every frame is parsed by `protocol.FrameParser` (`read_event`'s checks: bounded header, data and payload) from
  what each read of the connection brought, with no await per event; a broken frame gets
  an `error` event and the connection is closed;
- at most `max_audio_s` seconds of audio per request (checked in the client's own format, before buffering):
  beyond it the request gets an `error` and is dropped (its remaining chunks are ignored up to audio-stop);
- audio formats: 16 kHz / 16-bit / mono as is, other rates and channel counts converted (soxr), other sample
  widths refused with an `error`; a format that changes mid-request drops the request;
- a connection that sends no complete event for `read_timeout_s` gets an `error` and is closed;
- beyond `max_connections` concurrent connections, a new one gets an `error` (code `busy`) and is closed;
- scoring runs in a thread pool (or with `processes`, worker processes that each load the model), off the
  event loop, so a long clip never stalls other connections.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.wake import Detect, Detection, NotDetected

from components.common.artifacts import code_version
from components.common.cpus import available_cpus
from components.judge.audio import AudioFormatError, PcmFormat, check_format, to_judge_input
from components.judge.protocol import FrameLimits, FrameParser, ProtocolError, TruncatedFrame
from components.common.names import slug
from components.runtime.judge import Judge, JudgeScore, load_judge

log = logging.getLogger(__name__)

PROGRAM = "wakeline-judge"
LINGER_S = 1.0  # after an error: how long to keep draining a client that is still sending (so it reads the error)
LINGER_BYTES = 1 << 20
READ_BYTES = 64 * 1024  # what one read of a connection takes; every complete event in it is handled before the next
ATTRIBUTION = Attribution(name="wakeline", url="https://github.com/wakeline/wakeline")


def default_workers() -> int:
    return max(1, min(4, available_cpus()))


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 10400
    max_audio_s: float = 10.0
    read_timeout_s: float = 5.0
    max_connections: int = 32
    workers: int = field(default_factory=default_workers)
    processes: bool = False  # score in worker processes (each loads the model) instead of threads
    write_timeout_s: float = 5.0
    limits: FrameLimits = FrameLimits()

    def __post_init__(self) -> None:
        for name in ("max_audio_s", "read_timeout_s", "write_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_connections < 1 or self.workers < 1:
            raise ValueError("max_connections and workers must be at least 1")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0-65535, got {self.port}")


def wake_info(judge: Judge) -> Info:
    """What `describe` answers: one wake program serving the judge's one wake word."""
    model = WakeModel(name=judge.name, description=judge.phrase, phrase=judge.phrase, attribution=ATTRIBUTION,
                      installed=True, languages=list(judge.languages), version=code_version())
    program = WakeProgram(name=PROGRAM, description=f"wakeline judge: confirms '{judge.phrase}' detections "
                          f"({judge.kind} model, cutoff {judge.cutoff:g})", attribution=ATTRIBUTION,
                          installed=True, version=code_version(), models=[model])
    return Info(wake=[program])


class JudgeService:
    """What every connection shares: the judge, the settings, the scoring pool and the connection count."""

    def __init__(self, judge: Judge, settings: ServerSettings) -> None:
        self.judge, self.settings = judge, settings
        self.pool: Executor
        if settings.processes:  # spawned, not forked: the parent may already run threads
            self.pool = ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_load_worker_judge, initargs=(judge.source, judge.cutoff))
        else:
            self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="judge-score")
        self.info_event = wake_info(judge).event()
        self.active = 0
        self.counts = {"connections": 0, "requests": 0, "detections": 0, "errors": 0, "rejected": 0}

    def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> "JudgeHandler":
        """The `wyoming.server.HandlerFactory` for this service."""
        return JudgeHandler(self, reader, writer)

    def serves(self, names: list[str]) -> bool:
        wanted = {slug(n) for n in names if n.strip()}  # a blank name asks for no wake word in particular
        return self.judge.name in wanted or (bool(self.judge.phrase.strip()) and slug(self.judge.phrase) in wanted)

    async def evaluate(self, pcm: bytes, fmt: PcmFormat) -> JudgeScore:
        """Convert the request's audio and score it, in the pool."""
        loop = asyncio.get_running_loop()
        if self.settings.processes:
            return await loop.run_in_executor(self.pool, _evaluate_in_worker, pcm, fmt)
        return await loop.run_in_executor(self.pool, _evaluate, self.judge, pcm, fmt)

    async def warm_up(self) -> None:
        """Start every pool worker (and load its model) before the first client waits for it."""
        loop = asyncio.get_running_loop()
        silence = PcmFormat(16_000, 2, 1)
        if self.settings.processes:
            await asyncio.gather(*(loop.run_in_executor(self.pool, _evaluate_in_worker, bytes(32_000), silence)
                                   for _ in range(self.settings.workers)))
        else:
            await asyncio.gather(*(loop.run_in_executor(self.pool, _evaluate, self.judge, bytes(32_000), silence)
                                   for _ in range(self.settings.workers)))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class JudgeHandler(AsyncEventHandler):
    """One client connection."""

    def __init__(self, service: JudgeService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.service = service
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        self._new_request()

    def _new_request(self) -> None:
        self.names: list[str] | None = None
        self.fmt: PcmFormat | None = None
        self.audio = bytearray()
        self.max_bytes = 0
        self.start_ms: int | None = None
        self.dropped = False  # an error was sent: ignore the rest of this request up to audio-stop
        self.converting_logged = False

    # -- the connection ------------------------------------------------------------------------------

    async def run(self) -> None:
        svc, settings = self.service, self.service.settings
        if svc.active >= settings.max_connections:
            svc.counts["rejected"] += 1
            log.warning("%s: refused, already serving %d connections", self.peer, svc.active)
            await self._send_error("busy", f"the judge serves at most {settings.max_connections} connections")
            await self._close(linger=True)
            return
        svc.active += 1
        svc.counts["connections"] += 1
        log.debug("%s: connected (%d active)", self.peer, svc.active)
        linger = False
        loop = asyncio.get_running_loop()
        parser = FrameParser(settings.limits)
        deadline = loop.time() + settings.read_timeout_s
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await self.reader.read(READ_BYTES)
                except TimeoutError:
                    log.info("%s: no complete event for %.1f s, closing", self.peer, settings.read_timeout_s)
                    await self._send_error("timeout", f"no complete event for {settings.read_timeout_s:g} s")
                    linger = True
                    break
                try:
                    if not data:
                        parser.close()
                        break
                    go_on, got = True, False
                    for event in parser.feed(data):
                        got = True
                        if not await self.handle_event(event):
                            go_on = False
                            break
                    if not go_on:
                        break
                    if got:
                        deadline = loop.time() + settings.read_timeout_s
                except ProtocolError as e:
                    log.warning("%s: %s (%s), closing", self.peer, e, e.code)
                    if not isinstance(e, TruncatedFrame):  # nobody is left to read an answer
                        await self._send_error(e.code, str(e))
                        linger = True
                    break
        except (ConnectionError, TimeoutError) as e:
            log.info("%s: connection lost (%s)", self.peer, type(e).__name__)
        except Exception:  # noqa: BLE001 - a bug on one connection must never take the server down
            log.exception("%s: unexpected error, closing the connection", self.peer)
            await self._send_error("internal", "internal error")
        finally:
            svc.active -= 1
            await self.disconnect()
            await self._close(linger)
            log.debug("%s: closed (%d active)", self.peer, svc.active)

    async def _close(self, linger: bool = False) -> None:
        """Close; after an error (`linger`), first half-close and drain what the peer is still sending, for at
        most LINGER_S / LINGER_BYTES, so that a client in the middle of a write reads our error instead of a
        connection reset."""
        if linger:
            with contextlib.suppress(Exception):
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                loop = asyncio.get_running_loop()
                deadline, drained = loop.time() + LINGER_S, 0
                while drained < LINGER_BYTES and (left := deadline - loop.time()) > 0:
                    data = await asyncio.wait_for(self.reader.read(65536), left)
                    if not data:
                        break
                    drained += len(data)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def _send(self, event: Event) -> None:
        async with asyncio.timeout(self.service.settings.write_timeout_s):
            await self.write_event(event)

    async def _send_error(self, code: str, text: str) -> None:
        """Best effort: the peer may already be gone."""
        self.service.counts["errors"] += 1
        with contextlib.suppress(Exception):
            await self._send(Error(text=text, code=code).event())

    async def _drop(self, code: str, text: str) -> None:
        log.warning("%s: request dropped: %s (%s)", self.peer, text, code)
        self._new_request()
        self.dropped = True
        await self._send_error(code, text)

    # -- events --------------------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        kind, data = event.type, event.data
        if Describe.is_type(kind):
            await self._send(self.service.info_event)
        elif Ping.is_type(kind):
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
            problem = self._start(data)
            if problem is not None:
                await self._drop(AudioFormatError.code, problem)
        elif AudioChunk.is_type(kind):
            await self._chunk(data, event.payload or b"")
        elif AudioStop.is_type(kind):
            await self._stop()
        else:
            log.debug("%s: ignoring a %r event", self.peer, kind)
        return True

    def _start(self, data: dict[str, Any]) -> str | None:
        """Begin a request; returns what is wrong with its format, if anything."""
        names = self.names  # a detect before audio-start belongs to this request
        if self.fmt is not None:
            log.info("%s: audio-start inside a request, starting over", self.peer)
        self._new_request()
        self.names = names
        try:
            fmt = check_format(data.get("rate"), data.get("width"), data.get("channels"))
        except AudioFormatError as e:
            return str(e)
        self.fmt = fmt
        frames = int(self.service.settings.max_audio_s * fmt.rate)
        self.max_bytes = frames * fmt.frame_bytes
        ts = data.get("timestamp")
        self.start_ms = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
        return None

    async def _chunk(self, data: dict[str, Any], payload: bytes) -> None:
        if self.dropped:
            return
        if self.fmt is None:
            await self._drop("protocol", "audio-chunk before audio-start")
            return
        try:
            fmt = check_format(data.get("rate"), data.get("width"), data.get("channels"))
        except AudioFormatError as e:
            await self._drop(e.code, str(e))
            return
        if fmt != self.fmt:
            await self._drop(AudioFormatError.code, f"audio format changed inside a request ({self.fmt} -> {fmt})")
            return
        if len(self.audio) + len(payload) > self.max_bytes:
            await self._drop("too-much-audio", f"more than {self.service.settings.max_audio_s:g} s of audio in "
                             "one request")
            return
        if self.start_ms is None and not self.audio:
            ts = data.get("timestamp")
            self.start_ms = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
        if not fmt.is_native and not self.converting_logged:
            self.converting_logged = True
            log.info("%s: converting %s to 16000 Hz, 16-bit, mono", self.peer, fmt)
        self.audio += payload

    async def _stop(self) -> None:
        if self.dropped:
            self._new_request()
            return
        if self.fmt is None:
            await self._send_error("protocol", "audio-stop before audio-start")
            return
        audio, fmt, names, start_ms = bytes(self.audio), self.fmt, self.names, self.start_ms
        self._new_request()
        await self._answer(audio, fmt, names, start_ms)

    async def _answer(self, audio: bytes, fmt: PcmFormat, names: list[str] | None, start_ms: int | None) -> None:
        svc, judge = self.service, self.service.judge
        svc.counts["requests"] += 1
        if names and not svc.serves(names):
            log.info("%s: asked for %s, serving %s: not-detected", self.peer, names, judge.name)
            await self._send(NotDetected(context={"reason": "not-served", "served": judge.name}).event())
            return
        t0 = time.perf_counter()
        try:
            result = await svc.evaluate(audio, fmt)
        except AudioFormatError as e:
            await self._send_error(e.code, str(e))
            return
        except Exception:  # noqa: BLE001 - one clip that breaks the scorer must not end the service
            log.exception("%s: scoring failed", self.peer)
            await self._send_error("internal", "scoring failed")
            return
        ms = (time.perf_counter() - t0) * 1000
        context = {"score": round(result.score, 6), "cutoff": judge.cutoff, "threshold": round(judge.threshold, 6),
                   "max_probability": round(result.max_probability, 6), "audio_s": round(result.audio_s, 3),
                   "model": judge.kind}
        log.info("%s: %s %s score %.4f (threshold %.4f, %.2f s audio, %.0f ms)", self.peer,
                 "DETECTED" if result.detected else "not detected", judge.name, result.score, judge.threshold,
                 result.audio_s, ms)
        if result.detected:
            svc.counts["detections"] += 1
            timestamp = (start_ms or 0) + (result.peak_ms or 0)
            await self._send(Detection(name=judge.name, timestamp=timestamp, context=context).event())
        else:
            await self._send(NotDetected(context=context).event())


def _evaluate(judge: Judge, pcm: bytes, fmt: PcmFormat) -> JudgeScore:
    return judge.judge(to_judge_input(pcm, fmt))


_WORKER_JUDGE: Judge | None = None  # in a scoring process


def _load_worker_judge(source: str, cutoff: float) -> None:
    global _WORKER_JUDGE
    _WORKER_JUDGE = load_judge(source, cutoff=cutoff)


def _evaluate_in_worker(pcm: bytes, fmt: PcmFormat) -> JudgeScore:
    assert _WORKER_JUDGE is not None, "the scoring process has no judge"
    return _evaluate(_WORKER_JUDGE, pcm, fmt)


# -- running it ------------------------------------------------------------------------------------------


async def serve_async(judge: Judge, settings: ServerSettings, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGTERM / SIGINT when run as the main program)."""
    service = JudgeService(judge, settings)
    server = AsyncTcpServer(settings.host, settings.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
    try:
        await service.warm_up()
        await server.start(service.handler)
        log.info("judge for %r (%s, cutoff %g) listening on tcp://%s:%d (max %d connections, %g s audio per "
                 "request, %g s read timeout, %d scoring %s)", judge.name, judge.kind, judge.cutoff,
                 settings.host, settings.port, settings.max_connections, settings.max_audio_s,
                 settings.read_timeout_s, settings.workers, "processes" if settings.processes else "threads")
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: %s", service.counts)
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        service.close()


def serve(judge: Judge, settings: ServerSettings) -> None:
    """Block serving (the CLI's `wakeline judge serve`)."""
    asyncio.run(serve_async(judge, settings))


class LoopThread:
    """A server coroutine on its own event loop in a background thread: `start` waits until the subclass's
    `_main` calls `_started()` (or re-raises what stopped it first), `stop` sets the loop's stop event."""

    label = "the server"

    def __init__(self, name: str, start_timeout_s: float) -> None:
        self.start_timeout_s = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    async def _main(self) -> None:
        raise NotImplementedError

    def _started(self) -> None:
        self._ready.set()

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self._main()

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            self._error = e
            self._ready.set()

    def start(self):
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise TimeoutError(f"{self.label} did not start in {self.start_timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServerThread(LoopThread):
    """The server on its own event loop in a background thread (tests, benchmarks, embedding):

        with ServerThread(judge, ServerSettings(port=free_port)) as server:
            JudgeClient(server.uri).check(samples)
    """

    label = "the judge server"

    def __init__(self, judge: Judge, settings: ServerSettings, start_timeout_s: float = 30.0) -> None:
        super().__init__("judge-server", start_timeout_s)
        self.judge, self.settings = judge, settings

    @property
    def uri(self) -> str:
        return f"tcp://{self.settings.host}:{self.settings.port}"

    async def _main(self) -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(serve_async(self.judge, self.settings, ready, self._stop))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():  # it never started (e.g. the port is taken): raise that here
            await task
        self._started()
        await task
