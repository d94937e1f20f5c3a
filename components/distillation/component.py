"""distillation as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import Artifact, Dataset, Input, Metrics, Model, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def distillation(config: Input[Artifact], features: Input[Dataset], teacher_a: Input[Model],
                 teacher_b: Input[Model], model: Output[Model], metrics: Output[Metrics]):
    """Check the two teachers, then train the ESPHome-sized student on hard labels + their soft targets."""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite, finite_scalars
    from components.distillation.stage import run_stage

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"features": Path(features.path), "teacher_a": Path(teacher_a.path),
                        "teacher_b": Path(teacher_b.path)}, {"model": Path(model.path)}, run_config)
    model.metadata.update(finite(result.metadata["model"]))
    metrics.metadata.update(finite_scalars(result.scalars))
