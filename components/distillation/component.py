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
    from components.distillation.stage import run

    model_metadata, scalars = run([Path(teacher_a.path), Path(teacher_b.path)], Path(features.path),
                                  Path(model.path), read_config_artifact(Path(config.path)))
    model.metadata.update(finite(model_metadata))
    metrics.metadata.update(finite_scalars(scalars))
