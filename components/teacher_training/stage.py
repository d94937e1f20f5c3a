"""teacher_training stage entry: a FeatureStore in, a trained Keras `Model` directory and metrics out."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from components.common.artifacts import FeatureStoreLayout
from components.common.config import WakelineConfig
from components.common.stages import StageResult
from components.training.fit import FitPlan, checkpoint_dir, fit_and_save

__all__ = ["checkpoint_dir", "run"]


def run(features_dir: Path, output_dir: Path, config: WakelineConfig, teacher_index: int, *,
        show_progress: bool = True, stop_after: int | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Train teacher `teacher_index` on hard labels; return (model metadata, scalar metrics)."""
    spec = config.teachers[teacher_index]
    plan = FitPlan(spec, seed=config.seed + teacher_index, run_name=f"teacher_training/{spec.name}")
    metadata, metrics, _ = fit_and_save(plan, FeatureStoreLayout(Path(features_dir)), output_dir, config,
                                        show_progress=show_progress, stop_after=stop_after)
    return metadata, metrics


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              teacher_index: int, show_progress: bool = True) -> StageResult:
    """The stage entry (components.common.stages): `features` in, teacher `teacher_index`'s `model` out."""
    metadata, scalars = run(inputs["features"], outputs["model"], config, teacher_index, show_progress=show_progress)
    return StageResult({"model": metadata}, scalars)
