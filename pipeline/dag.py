"""The wakeline DAG: pure wiring of components. No environment, no I/O; images and Kubernetes settings come in
as arguments (the CLI builds them from the config file's `kubernetes:` section when it compiles or submits).

No `from __future__ import annotations` here or in component modules: kfp reads the real annotations."""

from typing import NamedTuple

from kfp import dsl, kubernetes

from components.common.config import DEFAULT_CLUSTER, KubernetesSettings, Stage
from components.common.images import Images
from components.common.stages import CONFIG, TASKS, TRAITS, Fan, Task

PIPELINE_NAME = "wakeline"

# Which stages run in the gpu image and ask for GPUs, which need which credentials, which mount the state volume:
# the registry's traits (components/common/stages.py), as sets for the cluster code and its tests.
GPU_STAGES = frozenset(s for s, t in TRAITS.items() if t.gpu)
S3_STAGES = frozenset(s for s, t in TRAITS.items() if t.s3)
MLFLOW_STAGES = frozenset(s for s, t in TRAITS.items() if t.mlflow)
STATE_STAGES = frozenset(s for s, t in TRAITS.items() if t.state)
PIPELINE_OUTPUTS = {  # the run's outputs (what the KFP UI lists for the run) -> (task, output)
    "dataset": ("data-prep", "dataset"), "hard_negatives": ("background-mining", "hard_negatives"),
    "mining_report": ("background-mining", "report"), "features": ("gather-features", "features"),
    "teacher_a": ("teacher-training", "model"), "teacher_b": ("teacher-training-2", "model"),
    "student": ("distillation", "model"), "esphome_model": ("quantization", "tflite_model"),
    "verification": ("esphome-verification", "report"), "cascade_report": ("cascade-evaluation", "report")}


def create_pipeline(images: Images, cluster: KubernetesSettings | None = DEFAULT_CLUSTER):
    """Build the pipeline for a set of images from the stage registry (`components.common.stages.TASKS`): each
    task in its order, its inputs wired to the upstream outputs the registry names. Its parameters are the KFP
    run form: a preset, an optional wake word, and the config as JSON (partial is fine: merged onto the preset).

    `cluster` is how the stages run on Kubernetes: requests and limits per stage, GPUs per GPU stage (0 compiles a
    CPU-only pipeline; GPU stages then run NumPy in the gpu image), tolerations, node selectors, the S3 and MLflow
    Secrets, the state volume, the pipeline root. None leaves all of that out: kfp.local ignores it anyway (and warns
    about resource settings on every task), so the local runner passes None.
    """
    @dsl.pipeline(name=PIPELINE_NAME, pipeline_root=(cluster.pipeline_root or None) if cluster else None,
                  description="Train an ESPHome micro_wake_word model: data prep, mining, augmentation, two teachers, "
                              "distillation, INT8 quantization, verification, cascade evaluation, publish.")
    def wakeline(preset: str = "default", wake_word: str = "", config_json: str = "") -> NamedTuple(
            "Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
            features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model,
            student=dsl.Model, esphome_model=dsl.Model, verification=dsl.HTML, cascade_report=dsl.HTML):
        made: dict[str, object] = {}

        def add(task: Task, **arguments):
            created = task.load_component()(**arguments, **task.options).set_display_name(task.display_name)
            made[task.name] = _place(created, task.stage, images, cluster).after(*(made[a] for a in task.after))
            return made[task.name]

        def wired(task: Task) -> dict:
            return {name: made[source].outputs[output] for name, (source, output) in task.inputs.items()}

        for task in TASKS:
            if task.stage is Stage.VALIDATE_CONFIG:
                add(task, config_json=config_json, preset=preset, wake_word=wake_word).set_caching_options(False)
            elif task.fan is Fan.PER_SHARD:
                with dsl.ParallelFor(made["augmentation-shards"].output, name="augmentation-shards") as shard:
                    add(task, config=_config(made), shard_index=shard, **wired(task))
            elif task.fan is Fan.GATHER:
                add(task, **{name: dsl.Collected(value) for name, value in wired(task).items()})
            elif task.fan is Fan.IF_BLESSED:
                blessed = made["esphome-verification"].outputs["Output"]
                with dsl.If(blessed == True, name="if-blessed"):  # noqa: E712 - a KFP condition
                    add(task, config=_config(made), **wired(task), pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                        pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            else:
                add(task, config=_config(made), **wired(task))

        outputs = NamedTuple("Outputs", dataset=dsl.Dataset, hard_negatives=dsl.Dataset, mining_report=dsl.HTML,
                             features=dsl.Dataset, teacher_a=dsl.Model, teacher_b=dsl.Model, student=dsl.Model,
                             esphome_model=dsl.Model, verification=dsl.HTML, cascade_report=dsl.HTML)
        return outputs(**{name: made[source].outputs[output] for name, (source, output) in PIPELINE_OUTPUTS.items()})

    return wakeline


def _config(made: dict):
    return made["validate-config"].outputs[CONFIG]


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
