"""background_mining as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import HTML, Artifact, Dataset, Input, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def background_mining(config: Input[Artifact], dataset: Input[Dataset], hard_negatives: Output[Dataset],
                      report: Output[HTML]):
    """Hard negatives from the training background audio: windows the previous model (or a probe) scores high."""
    from pathlib import Path

    from components.background_mining.stage import run
    from components.common.config import read_config_artifact
    from components.common.jsonio import finite

    hard_negatives.metadata.update(finite(run(Path(dataset.path), Path(hard_negatives.path),
                                              read_config_artifact(Path(config.path)), report_path=Path(report.path))))
