"""Deployment settings: where a run's model goes and where its stages run. They never decide what model a run
trains, so they are not hashed into its lineage (`WakelineConfig.sha256()` leaves them out): two runs that
differ only here made the same model from the same parameters.

- `publish`: the model store and the MLflow registered model. Read at run time by the publish stage, but only to
  decide where the blessed model is written and registered; the model's bytes and its blessing do not depend
  on it (a store holds models content-addressed by their own sha256).
- `kubernetes`: requests and limits, GPUs, tolerations, node selectors, Secrets, the state volume and KFP's
  pipeline root. Read by `wakeline compile/submit/schedule` when they build the IR, never by a stage.
"""
from __future__ import annotations

import enum
import re
from pathlib import PurePosixPath
from typing import Annotated, Any

from components.common.config.base import Strict
from pydantic import AfterValidator, Field, field_validator, model_validator


class RegistryMode(str, enum.Enum):
    AUTO = "auto"  # register when MLflow answers; otherwise publish to the store and record why not
    REQUIRED = "required"  # the publish stage fails when the model cannot be registered
    OFF = "off"


class Publish(Strict):
    """Where a blessed model goes: a content-addressed folder per model in `store`, and a new version of one
    MLflow registered model per wake word (alias `candidate`; `wakeline promote` moves `production`)."""

    # a directory or s3://bucket/prefix; a relative directory is taken from where `wakeline run` starts
    store: Annotated[str, Field(min_length=1)] = "runs/published"
    # the MLflow registered model; "" = wakeline-<wake word slug>, e.g. wakeline-hey-jarvis
    registered_model_name: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")] = ""
    registry: RegistryMode = RegistryMode.AUTO

    @field_validator("registry", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false (and `on`/`yes` as true)
        return {False: RegistryMode.OFF.value, True: RegistryMode.AUTO.value}.get(v, v) if isinstance(v, bool) else v

    @field_validator("store")
    @classmethod
    def _bucket_named(cls, v: str) -> str:
        if v.startswith("s3://") and not v.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError(f"{v!r}: an S3 store is s3://bucket[/prefix]")
        return v


# --------------------------------------------------------------------------------------------------
# where the stages run on Kubernetes. Read by `wakeline compile/submit/schedule` when they build the IR, never by
# a stage: the same section in a run's config_json has no effect (the IR is already compiled by then).


class Stage(str, enum.Enum):
    """The pipeline's tasks by the names `kubernetes.resources` uses (both teachers are `teacher_training`)."""

    VALIDATE_CONFIG = "validate_config"
    AUGMENTATION_SHARDS = "augmentation_shards"
    DATA_PREP = "data_prep"
    BACKGROUND_MINING = "background_mining"
    AUGMENTATION = "augmentation"
    GATHER_FEATURES = "gather_features"
    TEACHER_TRAINING = "teacher_training"
    DISTILLATION = "distillation"
    QUANTIZATION = "quantization"
    ESPHOME_VERIFICATION = "esphome_verification"
    CASCADE_EVALUATION = "cascade_evaluation"
    PUBLISH = "publish"


_CPU_QUANTITY = re.compile(r"^(?:(\d+(?:\.\d+)?|\.\d+)|(\d+)m)$")
_MEMORY_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|Pi|Ei|K|M|G|T|P|E)?$")
_MEMORY_FACTOR = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                  "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity in cores: "2" -> 2.0, "0.5" -> 0.5, "500m" -> 0.5."""
    m = _CPU_QUANTITY.match(quantity)
    if not m:
        raise ValueError(f"{quantity!r} is not a CPU quantity: cores (\"2\", \"0.5\") or millicores (\"500m\")")
    return float(m.group(1)) if m.group(1) is not None else int(m.group(2)) / 1000


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes: "512Mi" -> 536870912, "8G" -> 8000000000."""
    m = _MEMORY_QUANTITY.match(quantity)
    if not m:
        raise ValueError(f"{quantity!r} is not a memory quantity: bytes with an optional suffix "
                         f"Ki, Mi, Gi, Ti (powers of 2) or K, M, G, T (powers of 10), e.g. \"512Mi\", \"8Gi\"")
    return int(m.group(1)) * _MEMORY_FACTOR[m.group(2)]


def _cpu(v: str) -> str:
    if cpu_cores(v) <= 0:
        raise ValueError(f"{v!r}: must be more than 0 cores")
    return v


def _memory(v: str) -> str:
    if memory_bytes(v) <= 0:
        raise ValueError(f"{v!r}: must be more than 0 bytes")
    return v


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]


class StageResources(Strict):
    """One stage's pod: CPU in cores ("2", "0.5") or millicores ("500m"), memory with a Kubernetes suffix ("8Gi").
    A limit left out (null) is not set: the pod may use what the node has spare (no CPU throttling)."""

    cpu_request: CpuQuantity
    cpu_limit: CpuQuantity | None = None
    memory_request: MemoryQuantity
    memory_limit: MemoryQuantity | None = None

    @model_validator(mode="after")
    def _limit_at_least_request(self):
        if self.cpu_limit is not None and cpu_cores(self.cpu_limit) < cpu_cores(self.cpu_request):
            raise ValueError(f"cpu_limit {self.cpu_limit!r} is below cpu_request {self.cpu_request!r}")
        if self.memory_limit is not None and memory_bytes(self.memory_limit) < memory_bytes(self.memory_request):
            raise ValueError(f"memory_limit {self.memory_limit!r} is below memory_request {self.memory_request!r}")
        return self


def _stage(cpu_request: str, memory_request: str, memory_limit: str) -> dict[str, str | None]:
    return {"cpu_request": cpu_request, "cpu_limit": None, "memory_request": memory_request,
            "memory_limit": memory_limit}


# Sized for the default preset on a small cluster (a Kind node: 4 CPUs, 8 GB): requests that schedule there,
# limits well above the peak resident memory measured locally (the training stages peaked at 0.8-2.6 GiB).
# The production preset raises them. Estimates: none of these was measured on a cluster.
_STAGE_RESOURCES: dict[str, dict[str, str | None]] = {
    Stage.VALIDATE_CONFIG.value: _stage("250m", "512Mi", "1Gi"),
    Stage.AUGMENTATION_SHARDS.value: _stage("250m", "512Mi", "1Gi"),
    Stage.DATA_PREP.value: _stage("1", "2Gi", "8Gi"),  # piper + espeak-ng synthesis
    Stage.BACKGROUND_MINING.value: _stage("1", "2Gi", "8Gi"),  # probe training, scanning long audio
    Stage.AUGMENTATION.value: _stage("1", "2Gi", "8Gi"),  # per shard
    Stage.GATHER_FEATURES.value: _stage("500m", "1Gi", "4Gi"),
    Stage.TEACHER_TRAINING.value: _stage("1", "3Gi", "12Gi"),
    Stage.DISTILLATION.value: _stage("1", "3Gi", "12Gi"),
    Stage.QUANTIZATION.value: _stage("1", "2Gi", "8Gi"),
    Stage.ESPHOME_VERIFICATION.value: _stage("1", "1Gi", "4Gi"),
    Stage.CASCADE_EVALUATION.value: _stage("1", "1Gi", "4Gi"),  # the sentry in TFLite-Micro + the judge in NumPy
    Stage.PUBLISH.value: _stage("250m", "512Mi", "2Gi"),
}


class StageResourceTable(Strict):
    """Requests and limits per stage. A partial entry keeps that stage's other defaults:
    `teacher_training: {memory_limit: 64Gi}` changes only the teachers' memory limit."""

    validate_config: StageResources
    augmentation_shards: StageResources
    data_prep: StageResources
    background_mining: StageResources
    augmentation: StageResources
    gather_features: StageResources
    teacher_training: StageResources
    distillation: StageResources
    quantization: StageResources
    esphome_verification: StageResources
    cascade_evaluation: StageResources
    publish: StageResources

    @model_validator(mode="before")
    @classmethod
    def _onto_stage_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = {name: {**default, **data[name]} if isinstance(data.get(name), dict) else data.get(name, default)
                  for name, default in _STAGE_RESOURCES.items()}
        return {**data, **merged}  # unknown stage names stay, so that they are reported

    def for_stage(self, stage: Stage) -> StageResources:
        return getattr(self, stage.value)


class TolerationOperator(str, enum.Enum):
    EXISTS = "Exists"  # any value of the taint key
    EQUAL = "Equal"  # only `value`


class TaintEffect(str, enum.Enum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LabelKey = Annotated[str, Field(pattern=_LABEL_KEY, max_length=316)]
LabelValue = Annotated[str, Field(pattern=_LABEL_VALUE)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Toleration(Strict):
    key: LabelKey
    operator: TolerationOperator = TolerationOperator.EXISTS
    value: LabelValue = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE

    @model_validator(mode="after")
    def _value_matches_operator(self):
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("operator Exists takes no value (use Equal to match one)")
        if self.operator is TolerationOperator.EQUAL and not self.value:
            raise ValueError("operator Equal needs a value")
        return self


class SecretEnv(Strict):
    """A Kubernetes Secret (in the namespace the pipeline pods run in) whose keys are environment variable names,
    as in configs/kind/secrets.example.yaml: each key becomes the variable of the same name. A missing
    `required` key (or Secret) keeps the pod from starting; an `optional` key is set only when present."""

    secret_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    required: list[EnvName] = []
    optional: list[EnvName] = []

    @model_validator(mode="after")
    def _some_distinct_keys(self):
        names = self.required + self.optional
        if not names:
            raise ValueError("name at least one key under required or optional")
        if len(set(names)) != len(names):
            raise ValueError(f"a key is listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self

    @property
    def env_names(self) -> list[str]:
        return self.required + self.optional


_PIPELINE_ROOT = re.compile(r"^(s3|minio|gs)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")


def _pipeline_root(v: str) -> str:
    if v and not _PIPELINE_ROOT.match(v):
        raise ValueError(f"{v!r}: expected s3://bucket/prefix, minio://bucket/prefix or gs://bucket/prefix "
                         f"(or \"\" for the cluster's default, minio://mlpipeline/v2/artifacts)")
    return v


# The images' code and environment (images/*/Dockerfile): a volume mounted over them would hide them.
_IMAGE_DIRS = (PurePosixPath("/opt/wakeline"), PurePosixPath("/opt/venv"))


def _mount_path(v: str) -> str:
    path = PurePosixPath(v)
    if not path.is_absolute() or str(path) != v or ".." in path.parts:
        raise ValueError(f"{v!r}: must be an absolute, normalised path, e.g. /mnt/wakeline-state")
    hidden = [str(d) for d in _IMAGE_DIRS if d == path or path in d.parents]
    if hidden:
        raise ValueError(f"{v!r}: a volume mounted there would hide the image's {' and '.join(hidden)}")
    return v


class StateVolume(Strict):
    """A PersistentVolumeClaim (in the namespace the pipeline pods run in) mounted at `mount_path` in the stages
    that keep state between runs: background_mining (mining.session_root) and teacher_training and distillation
    (training.checkpoint_root). Those two paths must lie under `mount_path`, or the state stays on the pod's own
    disk and is lost with it (`wakeline submit`/`schedule` refuse such a config). The stages run as uid 1000, so
    the volume must be writable by it. Example claim: configs/kind/state-pvc.yaml."""

    pvc_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    mount_path: Annotated[str, AfterValidator(_mount_path)] = "/mnt/wakeline-state"


class KubernetesSettings(Strict):
    """How the compiled pipeline runs on a cluster: per-stage requests/limits, GPUs, scheduling and secrets,
    and where KFP keeps the artifacts (its pipeline root, an object store)."""

    # "" = the cluster's default (KFP's kfp-launcher config; minio://mlpipeline/v2/artifacts on a standard install)
    pipeline_root: Annotated[str, AfterValidator(_pipeline_root)] = ""
    gpus_per_task: Annotated[int, Field(ge=0, le=16)] = 1  # per GPU stage; 0 = a CPU-only cluster
    gpu_tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu")]  # GPU stages (when gpus_per_task > 0)
    gpu_node_selector: dict[LabelKey, LabelValue] = {}  # e.g. {nvidia.com/gpu.present: "true"}
    cpu_node_selector: dict[LabelKey, LabelValue] = {}  # every other stage
    # data_prep (s3:// sources), background_mining (s3:// previous model), publish (s3:// store); null = none
    s3_secret: SecretEnv | None = SecretEnv(
        secret_name="wakeline-s3", required=["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        optional=["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"])
    # every stage that logs to MLflow or reads its registry; null = none (stages then track into the pod's SQLite)
    mlflow_secret: SecretEnv | None = SecretEnv(
        secret_name="wakeline-mlflow", required=["MLFLOW_TRACKING_URI"],
        optional=["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"])
    resources: StageResourceTable = StageResourceTable()
    # resumable state (training checkpoints, mining sessions) on a PersistentVolumeClaim; null = the pod's own disk
    state_volume: StateVolume | None = None

    @model_validator(mode="after")
    def _secrets_set_distinct_variables(self):
        if self.s3_secret and self.mlflow_secret:
            both = sorted(set(self.s3_secret.env_names) & set(self.mlflow_secret.env_names))
            if both:
                raise ValueError(f"s3_secret and mlflow_secret both set {both}; a stage that takes both Secrets "
                                 f"would get the variable twice")
        return self


DEFAULT_CLUSTER = KubernetesSettings()  # what the committed IR is compiled with (frozen, safe to share)
