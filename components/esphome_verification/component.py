"""esphome_verification as a KFP component: typed signature, no logic (publish: components/publish)."""

from kfp import dsl

from components.common.artifacts import (HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model,
                                         Output)
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def esphome_verification(config: Input[Artifact], tflite_model: Input[Model], features: Input[Dataset],
                         blessing: Output[Artifact], report: Output[HTML], metrics: Output[Metrics],
                         roc: Output[ClassificationMetrics]) -> bool:
    """ESPHome contract checks + behaviour on the device runtime; returns blessed (only if everything passes).

    A single `bool` return, not a NamedTuple: kfp.local 2.17 resolves a dsl.If condition on a task output only
    when its channel is `<task>-Output`; a named output (`<task>-blessed`) is never found and the branch skipped."""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite, finite_scalars
    from components.esphome_verification.stage import run_stage

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"tflite_model": Path(tflite_model.path), "features": Path(features.path)},
                       {"blessing": Path(blessing.path), "report": Path(report.path)}, run_config)
    blessing.metadata.update(finite(result.metadata["blessing"]))
    metrics.metadata.update(finite_scalars(result.scalars))
    roc.log_roc_curve(*result.value.roc_curve())
    return result.value.blessed
