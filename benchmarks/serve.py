"""`wakeline serve` under load: real-time Home Assistant-style streams against one server process (the CLI in
its own process, the official hey_jarvis model on TFLite-Micro), clients in this process.

Each stream is what HA's Wyoming wake-word client sends: detect, audio-start, then one 10 ms audio-chunk
(160 samples, HA's `MS_PER_CHUNK`) at a time, paced at real time (chunk k leaves when its last sample exists),
then audio-stop. Every PROBE_CHUNKS chunks the stream also sends a `ping`; the server answers a ping only after
it has processed every chunk before it, so the pong's arrival time minus the time that audio was due is the
server's lag behind that stream at that moment. The frames are encoded once (`wyoming.event.write_event`, the
bytes the package's client writes) and one pacing task writes every stream's due chunks, so the clients cost
little beside the server on the same cores. All times are measured from when audio was *due*, so a late client
counts against the server, never for it.

  concurrent_realtime_streams  the most streams the server sustains (CRITERION below), found by doubling from
                               START_STREAMS up to WAKELINE_BENCH_SERVE_MAX_STREAMS, then bisecting between the
                               last level that passed and the first that failed
  detection_latency_p50_ms     from the end of the spoken word (the piper clip's end, on the stream's real-time
  detection_latency_p95_ms     clock) to the detection event's arrival, at the largest sustained level (negative:
                               the model fired before the word's end)
  served_vs_inprocess_ratio    audio seconds per wall second through the server (STREAMS_UNPACED clients sending
                               the same 10 ms frames as fast as the server reads them) / the device runtime
                               in-process on the same audio, chunks and cores (FeatureStream + ModelStream, one
                               stream after another, no server, no protocol)
  memory_per_stream_mb         (the server's peak RSS at the largest sustained level - its RSS after a warm-up) /
                               streams (freed memory the allocator keeps makes this a lower bound)

Scale (environment): WAKELINE_BENCH_SERVE_MAX_STREAMS (default 400) caps the search, WAKELINE_BENCH_SERVE_STREAM_S
(default 10) is each stream's length. The issue's goals: >= 100 streams on 2 cores, ratio >= 0.8.
WAKELINE_BENCH_SERVE_PROFILE=PATH runs the server under cProfile and writes its stats there (development).
WAKELINE_BENCH_SERVE_STORE=DIR serves that store's hey_jarvis instead of the official model (e.g. a run's
`runs/published`), and WAKELINE_BENCH_SERVE_CONFIRM=1 serves it with `--confirm-with-judge` (its published
cascade); the in-process ceiling stays the device model alone.
"""
from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import comparison, log, result

REPO = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("WAKELINE_BENCH_SERVE_STORE") or REPO / "tests" / "fixtures" / "esphome-models" / "v2")
CONFIRM = os.environ.get("WAKELINE_BENCH_SERVE_CONFIRM", "") == "1"  # serve with --confirm-with-judge
WORD = "hey_jarvis"
SR = 16_000
CHUNK_MS = 10  # homeassistant/components/assist_pipeline/const.py: MS_PER_CHUNK = 10
CHUNK_SAMPLES = SR * CHUNK_MS // 1000
PROBE_CHUNKS = 25  # a ping every 250 ms of audio
MAX_STREAMS = int(os.environ.get("WAKELINE_BENCH_SERVE_MAX_STREAMS", "400"))
STREAM_S = float(os.environ.get("WAKELINE_BENCH_SERVE_STREAM_S", "10"))
PROFILE = os.environ.get("WAKELINE_BENCH_SERVE_PROFILE")
START_STREAMS = 25
START_SPREAD_S = 1.0  # streams start at seeded uniform offsets over this span (their chunks interleave)
STREAMS_UNPACED = 8
WORD_AT_S = 1.0

# What "sustained" means: every one of these holds at that stream count.
MAX_LAG_P95_MS = 250.0  # the server's lag behind the streams (ping probes), 95th percentile over the run
MAX_LAG_GROWTH_MS = 100.0  # median lag over the last quarter of the audio minus that over the first quarter
MAX_LATENCY_P95_MS = 500.0  # word end -> detection event
MIN_RATE_FRACTION = 0.97  # processed audio-s/s (probe to probe) >= this x streams x 1.0
CRITERION = (f"N streams of {CHUNK_MS} ms chunks paced at real time are sustained when: every stream completes "
             f"without an error and gets exactly its one detection; the server's lag behind the streams (pong "
             f"arrival - when the audio before the ping was due, a ping every {PROBE_CHUNKS * CHUNK_MS} ms) has "
             f"p95 <= {MAX_LAG_P95_MS:g} ms and does not grow (median over the last quarter of the audio - median "
             f"over the first quarter <= {MAX_LAG_GROWTH_MS:g} ms); detection latency p95 <= "
             f"{MAX_LATENCY_P95_MS:g} ms; and the audio the server processed per wall second (first to last probe "
             f"of each stream, summed) >= {MIN_RATE_FRACTION:g} x N. Times run from when the audio was due, so a "
             f"late client counts against the server.")


def _stream_audio() -> tuple[np.ndarray, float]:
    """STREAM_S of seeded noise with one piper "hey jarvis" at WORD_AT_S; (audio, word end in s)."""
    from components.common.audio import resample, to_int16
    from components.synthesis.ambient import coloured_noise
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    pcm, sr = next(iter(synthesize_many([PiperJob("hey jarvis", 1.0, 0.667, 0.8)], seed=11)))
    word = to_int16(resample(pcm.astype(np.float32) / 32768, sr))
    n = max(int(STREAM_S * SR), int(WORD_AT_S * SR) + len(word) + SR)
    n -= n % CHUNK_SAMPLES
    audio = (to_int16(coloured_noise(n, np.random.default_rng(3))) // 8).astype(np.int16)
    start = int(WORD_AT_S * SR)
    audio[start:start + len(word)] = word
    return audio, (start + len(word)) / SR


@dataclass(frozen=True)
class Frames:
    """The wire bytes of one stream, encoded once and shared by every client."""

    head: bytes  # detect + audio-start
    chunks: list[bytes]  # one audio-chunk each
    pings: dict[int, bytes]  # after chunk k (k + 1 a multiple of PROBE_CHUNKS): a ping with text k
    tail: bytes  # audio-stop + ping "end"


def _encode(audio: np.ndarray) -> Frames:
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.event import write_event
    from wyoming.ping import Ping
    from wyoming.wake import Detect

    def wire(*events) -> bytes:
        buf = io.BytesIO()
        for e in events:
            write_event(e.event(), buf)
        return buf.getvalue()

    pcm = audio.astype("<i2").tobytes()
    step = CHUNK_SAMPLES * 2
    chunks = [wire(AudioChunk(rate=SR, width=2, channels=1, audio=pcm[i:i + step], timestamp=k * CHUNK_MS))
              for k, i in enumerate(range(0, len(pcm), step))]
    pings = {k: wire(Ping(text=str(k))) for k in range(PROBE_CHUNKS - 1, len(chunks), PROBE_CHUNKS)}
    return Frames(wire(Detect(names=[WORD]), AudioStart(rate=SR, width=2, channels=1)), chunks, pings,
                  wire(AudioStop(), Ping(text="end")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Client:
    """One stream's connection and what it measured."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    start: float = 0.0  # chunk k is due at start + (k + 1) x CHUNK_MS
    sent: int = 0
    detections: list[float] = field(default_factory=list)  # arrival times
    probes: list[tuple[int, float]] = field(default_factory=list)  # (chunk k, pong arrival)
    errors: int = 0
    end: float | None = None  # the final pong's arrival
    late_s: float = 0.0  # the most a chunk left after it was due (this client process's own lateness)

    def due(self, k: int) -> float:
        return self.start + (k + 1) * CHUNK_MS / 1000

    async def read(self) -> None:
        from wyoming.error import Error
        from wyoming.event import async_read_event
        from wyoming.ping import Pong
        from wyoming.wake import Detection

        while (event := await async_read_event(self.reader)) is not None:
            now = time.perf_counter()
            if Pong.is_type(event.type):
                text = event.data.get("text")
                if text == "end":
                    self.end = now
                    return
                self.probes.append((int(text), now))
            elif Detection.is_type(event.type):
                self.detections.append(now)
            elif Error.is_type(event.type):
                self.errors += 1


async def _connect(port: int, frames: Frames, n: int) -> list[Client]:
    async def one() -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frames.head)
        return Client(reader, writer)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _close(clients: list[Client]) -> None:
    for c in clients:
        c.writer.close()
    for c in clients:
        try:
            await asyncio.wait_for(c.writer.wait_closed(), 5)
        except (OSError, TimeoutError):
            pass


async def _paced(port: int, pid: int, frames: Frames, n: int, seed: int) -> dict:
    """`n` streams at real time (starts spread over START_SPREAD_S); the raw measurements."""
    clients = await _connect(port, frames, n)
    readers = [asyncio.create_task(c.read()) for c in clients]
    peak, cpu0, own0 = _rss_mb(pid), _cpu_s(pid), time.process_time()
    t0 = time.perf_counter() + 0.2
    for c, offset in zip(clients, np.random.default_rng(seed).uniform(0, START_SPREAD_S, n)):
        c.start = t0 + float(offset)
    total, last_rss = len(frames.chunks), 0.0
    pending = sorted(clients, key=lambda c: c.start)
    while pending:
        now = time.perf_counter()
        nxt = float("inf")
        for c in pending:
            while c.sent < total and c.due(c.sent) <= now:
                k = c.sent
                c.late_s = max(c.late_s, now - c.due(k))
                c.writer.write(frames.chunks[k])
                if k in frames.pings:
                    c.writer.write(frames.pings[k])
                c.sent += 1
            if c.sent == total:
                c.writer.write(frames.tail)
            else:
                nxt = min(nxt, c.due(c.sent))
        pending = [c for c in pending if c.sent < total]
        if now - last_rss > 0.2:
            peak, last_rss = max(peak, _rss_mb(pid)), now
        if pending:
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
    done, _ = await asyncio.wait(readers, timeout=60)
    peak, cpu, own = max(peak, _rss_mb(pid)), _cpu_s(pid) - cpu0, time.process_time() - own0
    await _close(clients)
    for task in readers:
        task.cancel()
    return {"clients": clients, "peak_rss_mb": peak, "unfinished": n - sum(c.end is not None for c in clients),
            "server_cpu_s": cpu, "client_cpu_s": own}


async def _unpaced(port: int, pid: int, frames: Frames, n: int) -> tuple[float, float]:
    """`n` streams sending as fast as the server reads; (audio seconds per wall second, the server's CPU ms per
    audio second)."""
    clients = await _connect(port, frames, n)
    readers = [asyncio.create_task(c.read()) for c in clients]
    t0, cpu0 = time.perf_counter(), _cpu_s(pid)

    async def send(c: Client) -> None:
        for k, chunk in enumerate(frames.chunks):
            c.writer.write(chunk)
            if k in frames.pings:
                c.writer.write(frames.pings[k])
            if c.writer.transport.get_write_buffer_size() > 64 * 1024:
                await c.writer.drain()
        c.writer.write(frames.tail)
        await c.writer.drain()

    await asyncio.gather(*(send(c) for c in clients))
    await asyncio.wait(readers, timeout=120)
    wall, cpu = max((c.end or float("inf")) for c in clients) - t0, _cpu_s(pid) - cpu0
    await _close(clients)
    if any(c.errors or len(c.detections) != 1 for c in clients):
        raise RuntimeError("an unpaced stream got an error or not exactly one detection")
    audio_s = n * len(frames.chunks) * CHUNK_MS / 1000
    return audio_s / wall, cpu * 1000 / audio_s


def _judge(level: dict, n: int, word_end_s: float, audio_s: float) -> dict:
    """The level's figures and whether they meet CRITERION."""
    clients: list[Client] = level["clients"]
    lags, early, late, latencies, rate = [], [], [], [], 0.0
    quarter = len(clients[0].probes) // 4 if clients and clients[0].probes else 0
    for c in clients:
        lag = [(t - c.due(k)) * 1000 for k, t in c.probes]
        lags += lag
        if quarter:
            early += lag[:quarter]
            late += lag[-quarter:]
        latencies += [(t - c.start - word_end_s) * 1000 for t in c.detections]
        if len(c.probes) >= 2:
            (k0, t0), (k1, t1) = c.probes[0], c.probes[-1]
            rate += (k1 - k0) * CHUNK_MS / 1000 / (t1 - t0)
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float("inf")  # noqa: E731
    figures = {
        "streams": n,
        "errors": sum(c.errors for c in clients),
        "unfinished": level["unfinished"],
        "streams_without_one_detection": sum(len(c.detections) != 1 for c in clients),
        "lag_p50_ms": pct(lags, 50), "lag_p95_ms": pct(lags, 95), "lag_max_ms": max(lags, default=float("inf")),
        "lag_growth_ms": pct(late, 50) - pct(early, 50) if quarter else float("inf"),
        "latency_p50_ms": pct(latencies, 50), "latency_p95_ms": pct(latencies, 95),
        "processed_audio_s_per_s": rate, "client_late_max_ms": max(c.late_s for c in clients) * 1000,
        "peak_rss_mb": level["peak_rss_mb"],
        # what the level cost, whatever else ran on the machine: the server's and this process's CPU time per
        # second of one stream's audio
        "server_cpu_ms_per_stream_s": level["server_cpu_s"] * 1000 / (n * audio_s),
        "client_cpu_ms_per_stream_s": level["client_cpu_s"] * 1000 / (n * audio_s),
    }
    figures["sustained"] = bool(
        figures["errors"] == 0 and figures["unfinished"] == 0 and figures["streams_without_one_detection"] == 0
        and figures["lag_p95_ms"] <= MAX_LAG_P95_MS and figures["lag_growth_ms"] <= MAX_LAG_GROWTH_MS
        and figures["latency_p95_ms"] <= MAX_LATENCY_P95_MS and rate >= MIN_RATE_FRACTION * n)
    figures["latencies_ms"] = latencies
    return figures


def _in_process_throughput(audio: np.ndarray, repeats: int, chunk: int) -> tuple[float, float]:
    """Audio seconds per wall second of the served streaming detection, in-process (one stream at a time), and
    the CPU ms it took per audio second."""
    from components.serving.catalog import discover
    from components.serving.stream import FeatureStream, ModelStream

    model = discover(MODELS, [WORD])[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        frontend, stream = FeatureStream(), ModelStream(model.tflite, model.arena, model.cutoff, model.settings)
        for i in range(0, len(audio), chunk):
            stream.feed(frontend.feed(audio[i:i + chunk]))
    audio_s = repeats * len(audio) / SR
    return audio_s / (time.perf_counter() - t0), (time.process_time() - cpu0) * 1000 / audio_s


def _search(measure) -> tuple[int, dict | None, list[dict]]:
    """Double from START_STREAMS while `measure(n)` is sustained (up to MAX_STREAMS), then bisect."""
    levels: list[dict] = []

    def ok(n: int) -> bool:
        figures = measure(n)
        levels.append(figures)
        log(f"[bench] serve: {n} real-time streams: lag p50/p95/max {figures['lag_p50_ms']:.0f}/"
            f"{figures['lag_p95_ms']:.0f}/{figures['lag_max_ms']:.0f} ms (growth {figures['lag_growth_ms']:.0f}), "
            f"latency p50/p95 {figures['latency_p50_ms']:.0f}/{figures['latency_p95_ms']:.0f} ms, "
            f"{figures['processed_audio_s_per_s']:.1f} audio-s/s, {figures['errors']} errors, client late <= "
            f"{figures['client_late_max_ms']:.0f} ms, server CPU {figures['server_cpu_ms_per_stream_s']:.2f} ms per "
            f"stream-s -> {'sustained' if figures['sustained'] else 'fell behind'}")
        return figures["sustained"]

    good, bad = 0, None
    n = min(START_STREAMS, MAX_STREAMS)
    while True:
        if ok(n):
            good = n
            if n >= MAX_STREAMS:
                break
            n = min(2 * n, MAX_STREAMS)
        else:
            bad = n
            break
    while bad is not None and bad - good > max(2, good // 20):
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    best = next((lv for lv in reversed(levels) if lv["streams"] == good and lv["sustained"]), None)
    return good, best, levels


def run() -> list[dict]:
    audio, word_end_s = _stream_audio()
    frames = _encode(audio)
    audio_s = len(audio) / SR
    inproc, inproc_cpu_ms = _in_process_throughput(audio, STREAMS_UNPACED, CHUNK_SAMPLES)
    whole, _ = _in_process_throughput(audio, STREAMS_UNPACED, len(audio))
    log(f"[bench] serve: in-process device runtime: {inproc:.0f} audio-s/s in {CHUNK_MS} ms chunks, {whole:.0f} "
        "fed whole clips")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "serve.log"
        prefix = [sys.executable] + (["-m", "cProfile", "-o", PROFILE] if PROFILE else [])
        with open(log_path, "wb") as f:
            proc = subprocess.Popen(prefix + ["-m", "pipeline.cli", "serve", "--store", str(MODELS), "--name", WORD,
                                              "--port", str(port), "--no-http", "--read-timeout-s", "30",
                                              "--max-connections", str(MAX_STREAMS + 16)]
                                    + (["--confirm-with-judge"] if CONFIRM else []),
                                    cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the server did not start: {log_path.read_text()[-2000:]}") from None
                    time.sleep(0.2)
            asyncio.run(_unpaced(port, proc.pid, frames, 2))  # warm-up
            idle_mb = _rss_mb(proc.pid)
            served, served_cpu_ms = asyncio.run(_unpaced(port, proc.pid, frames, STREAMS_UNPACED))
            log(f"[bench] serve: through the server ({STREAMS_UNPACED} unpaced streams): {served:.0f} audio-s/s, "
                f"{served_cpu_ms:.2f} ms of server CPU per audio second")
            best, best_level, levels = _search(
                lambda n: _judge(asyncio.run(_paced(port, proc.pid, frames, n, n)), n, word_end_s, audio_s))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    if best_level is None:
        raise RuntimeError(f"the server did not sustain even {START_STREAMS} real-time streams: "
                           f"{[{k: v for k, v in lv.items() if k != 'latencies_ms'} for lv in levels]}")
    lat = best_level["latencies_ms"]
    p50, p95 = np.percentile(lat, [50, 95])
    summary = [{k: v for k, v in lv.items() if k != "latencies_ms"} for lv in levels]
    model = "hey_jarvis v2 (official, TFLite-Micro)" if "WAKELINE_BENCH_SERVE_STORE" not in os.environ else \
        f"hey_jarvis from {MODELS}"
    context = {"model": model, "confirm_with_judge": CONFIRM, "stream_s": audio_s, "chunk_ms": CHUNK_MS,
               "max_streams_tried": MAX_STREAMS, "cpu_count": os.cpu_count(), "levels": summary}
    return [
        result("concurrent_realtime_streams", best, "streams", criterion=CRITERION,
               capped_by_search=best >= MAX_STREAMS, **context),
        result("detection_latency_p50_ms", p50, "ms", streams=best, detections=len(lat), word_end_s=word_end_s),
        result("detection_latency_p95_ms", p95, "ms", streams=best, detections=len(lat), word_end_s=word_end_s),
        comparison("served_vs_inprocess_ratio", served, inproc, unit="audio s per s", streams=STREAMS_UNPACED,
                   baseline_name=f"FeatureStream + ModelStream in-process, same audio and {CHUNK_MS} ms chunks, one "
                   "stream at a time", inprocess_whole_clip=whole, served_vs_whole_clip=served / whole,
                   server_cpu_ms_per_audio_s=served_cpu_ms, inprocess_cpu_ms_per_audio_s=inproc_cpu_ms,
                   served_vs_inprocess_cpu_ratio=inproc_cpu_ms / served_cpu_ms,
                   note="the unpaced clients run in the benchmark process, beside the server on the same cores"),
        result("memory_per_stream_mb", (best_level["peak_rss_mb"] - idle_mb) / best, "MB", idle_rss_mb=idle_mb,
               peak_rss_mb=best_level["peak_rss_mb"], streams=best),
    ]
