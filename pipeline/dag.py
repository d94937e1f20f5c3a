"""The wakeline DAG: pure wiring of components. No environment, no I/O; images come in as an argument.

No `from __future__ import annotations` here or in component modules: kfp reads the real annotations."""

from typing import NamedTuple

from kfp import dsl

from components.augmentation.component import augmentation, gather_features
from components.background_mining.component import background_mining
from components.distillation.component import distillation
from components.esphome_verification.component import esphome_verification, publish
from components.quantization.component import quantization
from components.teacher_training.component import teacher_training

from components.common.images import Images
from components.data_prep.component import data_prep
from components.validate_config.component import augmentation_shards, validate_config

PIPELINE_NAME = "wakeline"


def create_pipeline(images: Images, gpus_per_task: int = 1):
    """Build the pipeline for a set of images. Its parameters are the KFP run form: a preset, an optional
    wake word, and the config as JSON (partial is fine: it is merged onto the preset).

    `gpus_per_task` is what GPU stages request on a cluster; 0 compiles a CPU-only pipeline (GPU stages
    then run NumPy in the gpu image). kfp.local ignores resource requests either way.
    """

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Train an ESPHome micro_wake_word model: data prep, mining, augmentation, two teachers, "
                              "distillation, INT8 quantization, verification, publish.")
    def wakeline(preset: str = "default", wake_word: str = "", config_json: str = "") -> NamedTuple(
            "Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
            features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model,
            student=dsl.Model, esphome_model=dsl.Model, verification=dsl.HTML):
        checked = validate_config(config_json=config_json, preset=preset, wake_word=wake_word)
        checked.set_display_name("validate config").set_container_image(images.cpu)
        checked.set_caching_options(False)
        config = checked.outputs["config"]
        shards = augmentation_shards(config=config)
        shards.set_display_name("plan shards").set_container_image(images.cpu)

        prep = data_prep(config=config)
        prep.set_display_name("data prep").set_container_image(images.cpu)

        mined = background_mining(config=config, dataset=prep.outputs["dataset"])
        mined.set_display_name("background mining").set_container_image(images.cpu)

        with dsl.ParallelFor(shards.output, name="augmentation-shards") as shard:
            aug = augmentation(config=config, dataset=prep.outputs["dataset"], shard_index=shard,
                               hard_negatives=mined.outputs["hard_negatives"])
            aug.set_display_name("augmentation").set_container_image(images.gpu)
            _request_gpus(aug, gpus_per_task)
        gathered = gather_features(shards=dsl.Collected(aug.outputs["features"]))
        gathered.set_display_name("gather features").set_container_image(images.cpu)

        teachers = []
        for index, label in enumerate(("a", "b")):  # two teachers in parallel, from config.teachers[0/1]
            teacher = teacher_training(config=config, features=gathered.outputs["features"], teacher_index=index)
            teacher.set_display_name(f"teacher {label}").set_container_image(images.gpu)
            _request_gpus(teacher, gpus_per_task)
            teachers.append(teacher)

        student = distillation(config=config, features=gathered.outputs["features"],
                               teacher_a=teachers[0].outputs["model"], teacher_b=teachers[1].outputs["model"])
        student.set_display_name("distillation").set_container_image(images.gpu)
        _request_gpus(student, gpus_per_task)

        quantized = quantization(config=config, model=student.outputs["model"], features=gathered.outputs["features"])
        quantized.set_display_name("quantization").set_container_image(images.cpu)
        verified = esphome_verification(config=config, tflite_model=quantized.outputs["tflite_model"],
                                        features=gathered.outputs["features"])
        verified.set_display_name("esphome verification").set_container_image(images.cpu)
        with dsl.If(verified.outputs["Output"] == True, name="if-blessed"):  # noqa: E712 - a KFP condition
            published = publish(tflite_model=quantized.outputs["tflite_model"],
                                blessing=verified.outputs["blessing"])
            published.set_display_name("publish").set_container_image(images.cpu)

        outputs = NamedTuple("Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
                             features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model, student=dsl.Model,
                             esphome_model=dsl.Model, verification=dsl.HTML)
        return outputs(prep.outputs["dataset"], mined.outputs["hard_negatives"], mined.outputs["report"],
                       gathered.outputs["features"], teachers[0].outputs["model"],
                       teachers[1].outputs["model"], student.outputs["model"], quantized.outputs["tflite_model"],
                       verified.outputs["report"])

    return wakeline


def _request_gpus(task, count: int) -> None:
    # Both calls are needed: with only a limit, KFP requests no GPU at all.
    if count > 0:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(count)
