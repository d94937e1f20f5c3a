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

    from components.common.jsonio import finite, finite_scalars
    from components.esphome_verification.stage import run_for_pipeline

    verdict = run_for_pipeline(Path(config.path), Path(tflite_model.path), Path(features.path),
                               Path(blessing.path), Path(report.path))
    blessing.metadata.update(finite(verdict.as_dict()))
    metrics.metadata.update(finite_scalars(verdict.scalars()))
    roc.log_roc_curve(*verdict.roc_curve())
    return verdict.blessed
