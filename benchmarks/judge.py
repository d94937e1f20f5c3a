"""Judge benchmark: how long a device waits for the judge's verdict on a 2 s clip while 32 clients each send
20 requests back to back (`wakeline judge serve` in its own process, the official hey_jarvis model in
TFLite-Micro; clients use `components.judge.client.JudgeClient`, one connection per request).

  judge_latency_p50_ms     median request latency under that load (connect -> verdict), with the same
                           scoring called in-process (no server, no protocol, no load) as the baseline
  judge_latency_p95_ms     95th percentile, same load, same baseline
  judge_protocol_overhead  unloaded server latency (one client, sequential) / in-process scoring time:
                           what the Wyoming round trip and the server cost on top of the model
  judge_throughput         requests answered per second under the load
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import comparison, log, result

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "tests" / "fixtures" / "esphome-models" / "v2" / "hey_jarvis.tflite"
CLIP_S = 2.0
CLIENTS, REQUESTS = 32, 20
UNLOADED_REQUESTS = 100
IN_PROCESS_RUNS = 200


def _clip() -> np.ndarray:
    """2 s of coloured noise at -20 dBFS: the judge's cost does not depend on what is said."""
    from components.common.audio import to_int16
    from components.synthesis.ambient import coloured_noise

    return to_int16(coloured_noise(int(CLIP_S * 16_000), np.random.default_rng(7)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    from components.judge.client import JudgeClient, JudgeError

    port = _free_port()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "judge", "serve", "--model", str(MODEL),
                                 "--port", str(port), "--max-connections", str(CLIENTS + 8)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"tcp://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the judge server exited: {log_path.read_text()[-2000:]}")
        try:
            JudgeClient(uri, timeout_s=5).describe()
            return proc, uri
        except JudgeError:
            time.sleep(0.2)
    _stop(proc)
    raise TimeoutError("the judge server did not start in 60 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


async def _load(uri: str, clip: np.ndarray, clients: int, requests: int) -> tuple[list[float], int, float]:
    """Per-request latencies (ms), failures, and wall seconds for `clients` x `requests`."""
    from components.judge.client import JudgeClient, JudgeError

    client = JudgeClient(uri, timeout_s=60)
    latencies: list[float] = []
    failures = 0

    async def one(_: int) -> None:
        nonlocal failures
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                await client.acheck(clip)
            except JudgeError:
                failures += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    return latencies, failures, time.perf_counter() - t0


def run() -> list[dict]:
    from components.runtime.judge import load_judge

    clip = _clip()
    judge = load_judge(MODEL)
    for _ in range(10):
        judge.judge(clip)
    in_process = []
    for _ in range(IN_PROCESS_RUNS):
        t0 = time.perf_counter()
        judge.judge(clip)
        in_process.append((time.perf_counter() - t0) * 1000)
    base_p50, base_p95 = np.percentile(in_process, [50, 95])
    log(f"[bench] judge: in-process scoring of a {CLIP_S:g} s clip: p50 {base_p50:.2f} ms, p95 {base_p95:.2f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        proc, uri = _start_server(Path(tmp) / "serve.log")
        try:
            asyncio.run(_load(uri, clip, 4, 5))  # warm-up: interpreters in every scoring thread
            unloaded, unloaded_failures, _ = asyncio.run(_load(uri, clip, 1, UNLOADED_REQUESTS))
            loaded, failures, wall = asyncio.run(_load(uri, clip, CLIENTS, REQUESTS))
        finally:
            _stop(proc)
    if failures or unloaded_failures or len(loaded) != CLIENTS * REQUESTS:
        raise RuntimeError(f"{failures + unloaded_failures} judge requests failed")
    p50, p95 = np.percentile(loaded, [50, 95])
    unloaded_p50 = float(np.median(unloaded))
    log(f"[bench] judge: unloaded p50 {unloaded_p50:.2f} ms; {CLIENTS} x {REQUESTS}: p50 {p50:.1f} ms, "
        f"p95 {p95:.1f} ms, {len(loaded) / wall:.0f} requests/s")
    baseline = f"the same scoring in-process, no server, no load ({IN_PROCESS_RUNS} runs)"
    context = {"clip_s": CLIP_S, "clients": CLIENTS, "requests_per_client": REQUESTS, "model": "hey_jarvis v2 "
               "(official, TFLite-Micro)", "cpu_count": os.cpu_count(), "ours_unit": "ms", "baseline": baseline}
    return [
        result("judge_latency_p50_ms", p50, "ms", baseline_value=base_p50, ours_value=p50, **context),
        result("judge_latency_p95_ms", p95, "ms", baseline_value=base_p95, ours_value=p95, **context),
        comparison("judge_protocol_overhead", unloaded_p50, float(base_p50),
                   baseline_name="in-process scoring p50 (no server)", unit="ms",
                   note="one client, sequential requests: the Wyoming round trip + server on top of the model",
                   requests=UNLOADED_REQUESTS),
        result("judge_throughput", len(loaded) / wall, "requests/s", clients=CLIENTS, requests=len(loaded),
               wall_s=wall, failed=failures),
    ]
