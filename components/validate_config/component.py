"""First task of every run: resolve the run form (preset, config JSON, wake word) and validate it."""
from kfp import dsl

from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def validate_config(config_json: str, preset: str, wake_word: str) -> str:
    """Fails the run with every bad key named; returns the full resolved config for the stages."""
    from components.common.config import resolve_pipeline_config

    return resolve_pipeline_config(config_json, preset, wake_word).to_json()
