"""background_mining as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import HTML, Artifact, Dataset, Input, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def background_mining(config: Input[Artifact], dataset: Input[Dataset], hard_negatives: Output[Dataset],
                      report: Output[HTML]):
    """Hard negatives from the training background audio: windows the previous model (or a probe) scores high."""
    from pathlib import Path

    from components.background_mining.stage import run_stage
    from components.common.config import read_config_artifact
    from components.common.jsonio import finite

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"dataset": Path(dataset.path)},
                       {"hard_negatives": Path(hard_negatives.path), "report": Path(report.path)}, run_config)
    hard_negatives.metadata.update(finite(result.metadata["hard_negatives"]))
