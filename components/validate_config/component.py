"""First task of every run: resolve the run form (preset, config JSON, wake word) and validate it.

The resolved config travels as an artifact, not a string parameter: kfp.local 2.17 replaces upstream
*parameter* outputs inside a ParallelFor body with the loop item (artifacts pass correctly), and an
artifact also gives the config a hash and a place in the lineage graph.
"""
from typing import List

from kfp import dsl

from components.common.artifacts import Artifact, Input, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def validate_config(config_json: str, preset: str, wake_word: str, config: Output[Artifact]):
    """Fails the run with every bad key named; writes the full resolved config for the stages."""
    from pathlib import Path

    from components.common.config import resolve_pipeline_config, write_config_artifact

    config.metadata.update(write_config_artifact(resolve_pipeline_config(config_json, preset, wake_word),
                                                 Path(config.path), preset))


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def augmentation_shards(config: Input[Artifact]) -> List[int]:
    """The shard indices the augmentation fan-out iterates over."""
    from pathlib import Path

    from components.common.config import read_config_artifact

    return read_config_artifact(Path(config.path)).shard_indices()
