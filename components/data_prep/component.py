"""data_prep as a KFP component: typed signature, no logic."""
from kfp import dsl
from components.common.artifacts import Artifact, Dataset, Input, Output

from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def data_prep(config: Input[Artifact], dataset: Output[Dataset]):
    """User audio + offline TTS + synthetic ambient + RIRs -> clips, manifest.jsonl, quarantine report."""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite
    from components.data_prep.stage import run_stage

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({}, {"dataset": Path(dataset.path)}, run_config)
    dataset.metadata.update(finite(result.metadata["dataset"]))
