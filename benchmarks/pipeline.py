"""Pipeline benchmark: the whole DAG end to end through kfp.local, and the same stages called directly.

  smoke_pipeline_wall_s     `smoke` through kfp.local from nothing (fresh checkpoints)   target <= 600 s on 2 cores
  default_pipeline_wall_s   `default` through kfp.local from nothing                       target <= 2400 s on 2 cores
  kfp_local_overhead_ratio  pipeline wall time / the same stage entries called in one process, in order, on the
                            same config (the largest preset measured)                      target <= 1.1

WAKELINE_BENCH_PIPELINE_PRESETS picks the presets (default "smoke,default"); the default preset takes about
half an hour for both runs on 2 cores.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import log, result

TARGETS_S = {"smoke": 600, "default": 2400}


def direct(config, preset: str, root: Path) -> float:
    """Every stage of the registry in DAG order in this process (what kfp.local's tasks call, through
    `pipeline.inprocess`, publishing aside as in the pipeline run's comparison); returns the wall time."""
    from pipeline.inprocess import run_in_process

    t0 = time.monotonic()
    run_in_process(config, preset, root)
    return time.monotonic() - t0


def run() -> list[dict]:
    from components.common.config import load_config
    from pipeline.local import run_local

    presets = [p for p in os.environ.get("WAKELINE_BENCH_PIPELINE_PRESETS", "smoke,default").split(",") if p]
    out, walls = [], {}
    with tempfile.TemporaryDirectory(prefix="wakeline-bench-pipeline-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp) / 'mlflow.db'}"  # not ./runs/mlflow.db
        for preset in presets:
            base = load_config(preset)
            pipeline_cfg = base.model_copy(update={"training": base.training.model_copy(
                update={"checkpoint_root": str(Path(tmp) / preset / "ck-pipeline")})})
            pipeline_cfg = _mining_root(pipeline_cfg, Path(tmp) / preset / "mining-pipeline")
            log(f"[bench] pipeline: {preset} through kfp.local")
            run_ = run_local(pipeline_cfg, preset, Path(tmp) / preset / "runs", run_id="bench")
            blessed = _blessed(run_)
            walls[preset] = run_.wall_s
            out.append(result(f"{preset}_pipeline_wall_s", run_.wall_s, "s", target=TARGETS_S.get(preset),
                              blessed=blessed, cpu_count=os.cpu_count()))
        largest = presets[-1]
        base = load_config(largest)
        direct_cfg = base.model_copy(update={"training": base.training.model_copy(
            update={"checkpoint_root": str(Path(tmp) / largest / "ck-direct")})})
        direct_cfg = _mining_root(direct_cfg, Path(tmp) / largest / "mining-direct")
        log(f"[bench] pipeline: {largest}, the same stages called directly")
        direct_s = direct(direct_cfg, largest, Path(tmp) / largest / "direct")
        out.append(result("kfp_local_overhead_ratio", walls[largest] / direct_s, "x", target=1.1, preset=largest,
                          baseline="the same stage entries called in one process", baseline_value=direct_s,
                          ours_value=walls[largest], ours_unit="s"))
    return out


def _mining_root(config, path: Path):
    return config.model_copy(update={"mining": config.mining.model_copy(update={"session_root": str(path)})})


def _blessed(run_) -> bool | None:
    import json

    blessing = run_.outputs["verification"].path.parent / "blessing"
    return json.loads(blessing.read_text())["blessed"] if blessing.is_file() else None
