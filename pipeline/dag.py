"""The wakeline DAG: pure wiring of components. No environment, no I/O; images and Kubernetes settings come in
as arguments (the CLI builds them from the config file's `kubernetes:` section when it compiles or submits).

No `from __future__ import annotations` here or in component modules: kfp reads the real annotations."""

from typing import NamedTuple

from kfp import dsl, kubernetes

from components.augmentation.component import augmentation, gather_features
from components.background_mining.component import background_mining
from components.cascade_evaluation.component import cascade_evaluation
from components.distillation.component import distillation
from components.esphome_verification.component import esphome_verification
from components.publish.component import publish
from components.quantization.component import quantization
from components.teacher_training.component import teacher_training

from components.common.config import DEFAULT_CLUSTER, KubernetesSettings, Stage
from components.common.images import Images
from components.data_prep.component import data_prep
from components.validate_config.component import augmentation_shards, validate_config

PIPELINE_NAME = "wakeline"

# Which stages run in the gpu image and ask for GPUs, and which need which credentials (by what their code reads).
GPU_STAGES = frozenset({Stage.AUGMENTATION, Stage.TEACHER_TRAINING, Stage.DISTILLATION})
# s3:// user audio (data_prep), an s3:// previous model (background_mining), an s3:// model store (publish)
S3_STAGES = frozenset({Stage.DATA_PREP, Stage.BACKGROUND_MINING, Stage.PUBLISH})
# stage_run tracking, and models:/ previous models from the registry (background_mining), registration (publish)
MLFLOW_STAGES = frozenset({Stage.BACKGROUND_MINING, Stage.TEACHER_TRAINING, Stage.DISTILLATION, Stage.QUANTIZATION,
                           Stage.ESPHOME_VERIFICATION, Stage.CASCADE_EVALUATION, Stage.PUBLISH})
# state that outlives a pod, on kubernetes.state_volume: mining sessions and cached probes (mining.session_root),
# training checkpoints to resume from after pre-emption (training.checkpoint_root, read through fit.checkpoint_dir)
STATE_STAGES = frozenset({Stage.BACKGROUND_MINING, Stage.TEACHER_TRAINING, Stage.DISTILLATION})


def create_pipeline(images: Images, cluster: KubernetesSettings | None = DEFAULT_CLUSTER):
    """Build the pipeline for a set of images. Its parameters are the KFP run form: a preset, an optional
    wake word, and the config as JSON (partial is fine: it is merged onto the preset).

    `cluster` is how the stages run on Kubernetes: requests and limits per stage, GPUs per GPU stage (0 compiles a
    CPU-only pipeline; GPU stages then run NumPy in the gpu image), tolerations, node selectors, the S3 and MLflow
    Secrets, the state volume, the pipeline root. None leaves all of that out: kfp.local ignores it anyway (and warns
    about resource settings on every task), so the local runner passes None.
    """
    def place(task, stage: Stage):
        return _place(task, stage, images, cluster)

    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=(cluster.pipeline_root or None) if cluster else None,
                  description="Train an ESPHome micro_wake_word model: data prep, mining, augmentation, two teachers, "
                              "distillation, INT8 quantization, verification, cascade evaluation, publish.")
    def wakeline(preset: str = "default", wake_word: str = "", config_json: str = "") -> NamedTuple(
            "Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
            features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model,
            student=dsl.Model, esphome_model=dsl.Model, verification=dsl.HTML, cascade_report=dsl.HTML):
        checked = validate_config(config_json=config_json, preset=preset, wake_word=wake_word)
        place(checked.set_display_name("validate config"), Stage.VALIDATE_CONFIG)
        checked.set_caching_options(False)
        config = checked.outputs["config"]
        shards = augmentation_shards(config=config)
        place(shards.set_display_name("plan shards"), Stage.AUGMENTATION_SHARDS)

        prep = data_prep(config=config)
        place(prep.set_display_name("data prep"), Stage.DATA_PREP)

        mined = background_mining(config=config, dataset=prep.outputs["dataset"])
        place(mined.set_display_name("background mining"), Stage.BACKGROUND_MINING)

        with dsl.ParallelFor(shards.output, name="augmentation-shards") as shard:
            aug = augmentation(config=config, dataset=prep.outputs["dataset"], shard_index=shard,
                               hard_negatives=mined.outputs["hard_negatives"])
            place(aug.set_display_name("augmentation"), Stage.AUGMENTATION)
        gathered = gather_features(shards=dsl.Collected(aug.outputs["features"]))
        place(gathered.set_display_name("gather features"), Stage.GATHER_FEATURES)

        teachers = []
        for index, label in enumerate(("a", "b")):  # two teachers in parallel, from config.teachers[0/1]
            teacher = teacher_training(config=config, features=gathered.outputs["features"], teacher_index=index)
            place(teacher.set_display_name(f"teacher {label}"), Stage.TEACHER_TRAINING)
            teachers.append(teacher)

        student = distillation(config=config, features=gathered.outputs["features"],
                               teacher_a=teachers[0].outputs["model"], teacher_b=teachers[1].outputs["model"])
        place(student.set_display_name("distillation"), Stage.DISTILLATION)

        quantized = quantization(config=config, model=student.outputs["model"], features=gathered.outputs["features"])
        place(quantized.set_display_name("quantization"), Stage.QUANTIZATION)
        verified = esphome_verification(config=config, tflite_model=quantized.outputs["tflite_model"],
                                        features=gathered.outputs["features"])
        place(verified.set_display_name("esphome verification"), Stage.ESPHOME_VERIFICATION)
        # the shipped model as the device's sentry, a teacher (config.cascade.judge) as the server's judge
        cascaded = cascade_evaluation(config=config, tflite_model=quantized.outputs["tflite_model"],
                                      teacher_a=teachers[0].outputs["model"], teacher_b=teachers[1].outputs["model"],
                                      features=gathered.outputs["features"])
        place(cascaded.set_display_name("cascade evaluation").after(verified), Stage.CASCADE_EVALUATION)
        with dsl.If(verified.outputs["Output"] == True, name="if-blessed"):  # noqa: E712 - a KFP condition
            published = publish(config=config, dataset=prep.outputs["dataset"],
                                hard_negatives=mined.outputs["hard_negatives"], features=gathered.outputs["features"],
                                teacher_a=teachers[0].outputs["model"], teacher_b=teachers[1].outputs["model"],
                                student=student.outputs["model"], tflite_model=quantized.outputs["tflite_model"],
                                blessing=verified.outputs["blessing"], report=verified.outputs["report"],
                                cascade=cascaded.outputs["cascade"], pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            place(published.set_display_name("publish"), Stage.PUBLISH)

        outputs = NamedTuple("Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
                             features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model, student=dsl.Model,
                             esphome_model=dsl.Model, verification=dsl.HTML, cascade_report=dsl.HTML)
        return outputs(prep.outputs["dataset"], mined.outputs["hard_negatives"], mined.outputs["report"],
                       gathered.outputs["features"], teachers[0].outputs["model"],
                       teachers[1].outputs["model"], student.outputs["model"], quantized.outputs["tflite_model"],
                       verified.outputs["report"], cascaded.outputs["report"])

    return wakeline


def _place(task, stage: Stage, images: Images, cluster: KubernetesSettings | None):
    """Image, resources, GPU request, scheduling, credentials and state volume of one task, from the stage it runs."""
    gpu_stage = stage in GPU_STAGES
    task.set_container_image(images.gpu if gpu_stage else images.cpu)
    if cluster is None:
        return task
    resources = cluster.resources.for_stage(stage)
    task.set_cpu_request(resources.cpu_request).set_memory_request(resources.memory_request)
    if resources.cpu_limit is not None:
        task.set_cpu_limit(resources.cpu_limit)
    if resources.memory_limit is not None:
        task.set_memory_limit(resources.memory_limit)
    on_gpu = gpu_stage and cluster.gpus_per_task > 0
    if on_gpu:
        # Both calls are needed: with only a limit, KFP requests no GPU at all.
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(cluster.gpus_per_task)
        for toleration in cluster.gpu_tolerations:
            kubernetes.add_toleration(task, key=toleration.key, operator=toleration.operator.value,
                                      value=toleration.value or None, effect=toleration.effect.value)
    for key, value in (cluster.gpu_node_selector if on_gpu else cluster.cpu_node_selector).items():
        kubernetes.add_node_selector(task, key, value)
    if cluster.state_volume is not None and stage in STATE_STAGES:
        kubernetes.mount_pvc(task, pvc_name=cluster.state_volume.pvc_name, mount_path=cluster.state_volume.mount_path)
    for secret, stages in ((cluster.s3_secret, S3_STAGES), (cluster.mlflow_secret, MLFLOW_STAGES)):
        if secret is None or stage not in stages:
            continue
        # The Secret's keys are the variable names; the optional ones may be missing (one entry each way).
        for names, optional in ((secret.required, False), (secret.optional, True)):
            if names:
                kubernetes.use_secret_as_env(task, secret.secret_name, {n: n for n in names}, optional=optional)
    return task
