"""What a long stage reports about itself: a resource monitor and an optional cProfile of N steps."""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from components.common.jsonio import dumps


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _gpu_sample() -> dict[str, float] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
        util, mem = out.stdout.strip().splitlines()[0].split(",")
        return {"gpu_util_pct": float(util), "gpu_mem_mib": float(mem)}
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


class ResourceMonitor:
    """Samples this process's CPU % (of one core), RSS and, when nvidia-smi exists, GPU utilisation and
    memory, every `interval_s` on a daemon thread."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-monitor", daemon=True)

    def _loop(self) -> None:
        t0, c0 = time.monotonic(), time.process_time()
        while not self._stop.wait(self.interval_s):
            t1, c1 = time.monotonic(), time.process_time()
            sample = {"t_s": round(t1, 2), "cpu_pct": round(100 * (c1 - c0) / max(t1 - t0, 1e-9), 1),
                      "rss_mib": round(_rss_bytes() / 2 ** 20, 1)}
            sample.update(_gpu_sample() or {})
            self.samples.append(sample)
            t0, c0 = t1, c1

    def __enter__(self) -> "ResourceMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"rss_mib_peak": round(_rss_bytes() / 2 ** 20, 1)}
        out = {"cpu_pct_mean": round(sum(s["cpu_pct"] for s in self.samples) / len(self.samples), 1),
               "rss_mib_peak": max(s["rss_mib"] for s in self.samples), "cpu_count": os.cpu_count() or 1}
        if "gpu_util_pct" in self.samples[0]:
            out["gpu_util_pct_mean"] = round(sum(s["gpu_util_pct"] for s in self.samples) / len(self.samples), 1)
            out["gpu_mem_mib_peak"] = max(s["gpu_mem_mib"] for s in self.samples)
        return out

    def write(self, path: Path) -> dict[str, Any]:
        data = {"summary": self.summary(), "samples": self.samples}
        path.write_text(dumps(data, indent=1))
        return data["summary"]


class StepProfiler:
    """cProfile over the first `steps` calls wrapped with `step()`; writes .pstats and a top-N text summary."""

    def __init__(self, steps: int, out_dir: Path, top: int = 25) -> None:
        self.remaining, self.out_dir, self.top = steps, Path(out_dir), top
        self.profile = cProfile.Profile() if steps > 0 else None
        self.done = False

    def __enter__(self):
        if self.profile and self.remaining > 0:
            self.profile.enable()
        return self

    def __exit__(self, *exc) -> None:
        if not self.profile or self.remaining <= 0:
            return
        self.profile.disable()
        self.remaining -= 1
        if self.remaining == 0:
            self._write()

    def _write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.profile.dump_stats(str(self.out_dir / "profile.pstats"))
        text = io.StringIO()
        pstats.Stats(self.profile, stream=text).sort_stats("cumulative").print_stats(self.top)
        (self.out_dir / "profile_top.txt").write_text(text.getvalue())
        self.done = True
