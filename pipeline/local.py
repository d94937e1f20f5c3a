"""Run the pipeline on this machine with kfp.local (no Kubernetes, no Docker), outputs under runs/<run-id>/."""
from __future__ import annotations

import datetime as _dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.common.artifacts import code_version
from components.common.config import WakelineConfig
from components.common.images import Images


@dataclass(frozen=True)
class OutputArtifact:
    path: Path
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    run_dir: Path
    preset: str
    wall_s: float
    outputs: dict[str, OutputArtifact]  # the pipeline's outputs by name: dataset, features, ...

    @property
    def dataset_path(self) -> Path:
        return self.outputs["dataset"].path

    @property
    def dataset_metadata(self) -> dict[str, Any]:
        return self.outputs["dataset"].metadata

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "preset": self.preset,
                "wall_s": round(self.wall_s, 1),
                **{name: {"path": str(a.path), "metadata": a.metadata} for name, a in self.outputs.items()}}


def new_run_id(config: WakelineConfig, now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now()
    slug = re.sub(r"[^a-z0-9]+", "-", config.wake_word.lower()).strip("-")
    return f"{now:%Y%m%d-%H%M%S}-{slug}"


def run_local(config: WakelineConfig, preset: str, runs_dir: Path, run_id: str | None = None) -> LocalRun:
    """Run every stage through kfp.local's SubprocessRunner in this environment and collect the outputs."""
    from kfp import local

    from pipeline.dag import create_pipeline

    run_id = run_id or new_run_id(config)
    run_dir = (Path(runs_dir) / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {run_dir} already exists; choose another --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(run_dir / "kfp"),
               raise_on_error=True)
    pipeline = create_pipeline(Images.for_version(code_version()))
    t0 = time.monotonic()
    task = pipeline(preset=preset, wake_word="", config_json=config.to_json())
    wall = time.monotonic() - t0

    links = run_dir / "outputs"
    links.mkdir(exist_ok=True)
    outputs = {}
    for name, artifact in task.outputs.items():
        (links / name).symlink_to(Path(artifact.path))
        outputs[name] = OutputArtifact(Path(artifact.path), dict(artifact.metadata))
    result = LocalRun(run_id, run_dir, preset, wall, outputs)
    (run_dir / "summary.json").write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return result
