"""The wakeline DAG: pure wiring of components. No environment, no I/O; images come in as an argument.

No `from __future__ import annotations` here or in component modules: kfp reads the real annotations."""

from kfp import dsl

from components.common.images import Images
from components.data_prep.component import data_prep
from components.validate_config.component import validate_config

PIPELINE_NAME = "wakeline"


def create_pipeline(images: Images):
    """Build the pipeline for a set of images. Its parameters are the KFP run form: a preset, an optional
    wake word, and the config as JSON (partial is fine: it is merged onto the preset)."""

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Train an ESPHome micro_wake_word model: data prep through verification.")
    def wakeline(preset: str = "default", wake_word: str = "", config_json: str = "") -> dsl.Dataset:
        config = validate_config(config_json=config_json, preset=preset, wake_word=wake_word)
        config.set_display_name("validate config").set_container_image(images.cpu)
        config.set_caching_options(False)

        prep = data_prep(config_json=config.output)
        prep.set_display_name("data prep").set_container_image(images.cpu)
        return prep.outputs["dataset"]

    return wakeline
