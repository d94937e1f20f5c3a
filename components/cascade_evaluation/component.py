"""cascade_evaluation as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def cascade_evaluation(config: Input[Artifact], tflite_model: Input[Model], teacher_a: Input[Model],
                       teacher_b: Input[Model], features: Input[Dataset], cascade: Output[Artifact],
                       report: Output[HTML], metrics: Output[Metrics]):
    """The quantized model as the on-device sentry and the teacher `cascade.judge` names as the server-side
    judge: FRR and FA/h of the sentry alone and of the cascade over a grid of both cutoffs (the operating point
    chosen on validation, measured on test), the FA/h reduction (cascade.json), an HTML report, metrics. Both
    teachers are inputs because the judge is picked by the run's config, which the DAG cannot read."""
    from pathlib import Path

    from components.cascade_evaluation.stage import run_stage
    from components.common.config import read_config_artifact
    from components.common.jsonio import finite, finite_scalars

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"tflite_model": Path(tflite_model.path), "teacher_a": Path(teacher_a.path),
                        "teacher_b": Path(teacher_b.path), "features": Path(features.path)},
                       {"cascade": Path(cascade.path), "report": Path(report.path)}, run_config)
    cascade.metadata.update(finite(result.metadata["cascade"]))
    metrics.metadata.update(finite_scalars(result.scalars))
