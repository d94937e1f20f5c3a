"""augmentation (one shard) and gather_features as KFP components: typed signatures, no logic.

The feature store travels as a KFP `Dataset` (its layout is `FeatureStoreLayout`): lightweight component
sources only see kfp.dsl's names, so the signature must use them.
"""
from typing import List

from kfp import dsl

from components.common.artifacts import Artifact, Dataset, Input, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def augmentation(config: Input[Artifact], dataset: Input[Dataset], shard_index: int, features: Output[Dataset],
                 hard_negatives: Input[Dataset]):
    """Waveform augmentation (CuPy or NumPy) + device-frontend features for one shard of the batches; the mined
    hard negatives (background_mining) join the training split."""
    from pathlib import Path

    from components.augmentation.stage import run_stage
    from components.common.config import read_config_artifact
    from components.common.jsonio import finite

    run_config = read_config_artifact(Path(config.path))
    result = run_stage({"dataset": Path(dataset.path), "hard_negatives": Path(hard_negatives.path)},
                       {"features": Path(features.path)}, run_config, shard_index=shard_index)
    features.metadata.update(finite(result.metadata["features"]))


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def gather_features(shards: Input[List[Dataset]], features: Output[Dataset]):
    """Merge the shards into one feature store, in global clip order."""
    from pathlib import Path

    from components.augmentation.stage import run_gather_stage
    from components.common.jsonio import finite

    result = run_gather_stage({"shards": [Path(s.path) for s in shards]}, {"features": Path(features.path)})
    features.metadata.update(finite(result.metadata["features"]))
