"""teacher_training as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import Artifact, Dataset, Input, Metrics, Model, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def teacher_training(config: Input[Artifact], features: Input[Dataset], teacher_index: int,
                     model: Output[Model], metrics: Output[Metrics]):
    """Train teacher `teacher_index` of the config on the feature store; validate like the device."""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite, finite_scalars
    from components.teacher_training.stage import run_stage

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"features": Path(features.path)}, {"model": Path(model.path)}, run_config,
                       teacher_index=teacher_index)
    model.metadata.update(finite(result.metadata["model"]))
    metrics.metadata.update(finite_scalars(result.scalars))
