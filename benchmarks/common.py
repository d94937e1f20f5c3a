"""Shared helpers for the benchmarks: machine description, result records, seeding, JSON reports.

Every benchmark module exposes `run() -> list[dict]`; each dict is one result made with `result` or
`comparison`. The runner (`python -m benchmarks`) wraps them with `report` and writes them with `write_report`.
"""
from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from components.common.jsonio import dumps

OUT_DIR = Path("runs") / "bench"  # relative to the cwd (the repo root under `make bench`)
SEED = 1234


def seed_everything(seed: int = SEED) -> None:
    """Seed the global generators; benchmarks still pass explicit seeds / `np.random.default_rng` streams."""
    random.seed(seed)
    np.random.seed(seed)


def gpu_name() -> str | None:
    """The first GPU's name from `nvidia-smi`, or None where there is no NVIDIA GPU / driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return names[0] if names else None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _clean(value: Any) -> Any:
    """JSON-friendly values: numpy scalars to Python, floats rounded to 4 significant digits (recursively)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def result(metric: str, value: float, unit: str, **context: Any) -> dict[str, Any]:
    """One measured number, with optional context fields (sample counts, audio seconds, ...)."""
    return {"metric": metric, "value": _clean(value), "unit": unit, **{k: _clean(v) for k, v in context.items()}}


def comparison(metric: str, ours: float, baseline: float, *, baseline_name: str, unit: str,
               **context: Any) -> dict[str, Any]:
    """A ratio ours / baseline; both sides measured in the same run on the same inputs."""
    return result(metric, ours / baseline, "x", baseline=baseline_name, baseline_value=baseline,
                  ours_value=ours, ours_unit=unit, **context)


def load_average() -> float | None:
    """1-minute load average (other work on a shared machine skews absolute numbers; ratios hold up better)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def report(benchmark: str, results: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "machine": machine_info(), "results": results, **_clean(extra)}


def write_report(rep: dict[str, Any], out_dir: Path = OUT_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rep['benchmark']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(rep, indent=2) + "\n")
    tmp.replace(path)
    return path


@contextmanager
def timer() -> Iterator[list[float]]:
    """`with timer() as t: ...` then `t[0]` is the elapsed wall time in seconds (time.perf_counter)."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
