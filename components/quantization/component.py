"""quantization as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import Artifact, Dataset, Input, Model, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def quantization(config: Input[Artifact], model: Input[Model], features: Input[Dataset],
                 tflite_model: Output[Model]):
    """Streaming INT8 .tflite + ESPHome v2 manifest, with measured parity, arena and calibrated cutoff."""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite
    from components.quantization.stage import run_stage

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"model": Path(model.path), "features": Path(features.path)},
                       {"tflite_model": Path(tflite_model.path)}, run_config)
    tflite_model.metadata.update(finite(result.metadata["tflite_model"]))
