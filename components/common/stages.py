"""The stage registry: every task of the DAG as data, the one source the DAG, lineage, the benchmarks and the
docs are built from (wiring as data, in the spirit of Kedro's pipelines and TFX's component specs).

Each `Task` names its stage (resources and placement come from that), the KFP component and the stage entry
(as "module:function", imported only when used: this module stays free of kfp and of the stages), where each
input comes from (an upstream task's output), its outputs, and the lineage node each output is. Tasks are listed
in DAG order; `pipeline/dag.py` creates them from this list, so the compiled IR is this registry.

The one stage-entry shape: `run_stage(inputs, outputs, config, **options) -> StageResult`, with `inputs` and
`outputs` mapping artifact names to local paths.
"""
from __future__ import annotations

import enum
import importlib
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from components.common.config import Stage


@dataclass
class StageResult:
    """What a stage entry returns: each output artifact's metadata (by output name), the scalar metrics the KFP UI
    shows, and the stage's own answer where its component returns one (verification: the Verdict)."""

    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    value: Any = None


class StageEntry(Protocol):
    def __call__(self, inputs: Mapping[str, Path | Sequence[Path]], outputs: Mapping[str, Path], config: Any,
                 **options: Any) -> StageResult: ...


class Fan(str, enum.Enum):
    """How a task sits in the DAG beyond its inputs."""

    ONCE = "once"
    PER_SHARD = "per_shard"  # one task per augmentation shard (dsl.ParallelFor over the shard plan)
    GATHER = "gather"  # takes every shard's output at once (dsl.Collected)
    IF_BLESSED = "if_blessed"  # runs only when verification blessed the model (dsl.If)


@dataclass(frozen=True)
class Traits:
    """Where a stage's tasks run and what they may read: the gpu image and GPUs, S3 and MLflow credentials, the
    state volume (mining sessions, training checkpoints that outlive a pod)."""

    gpu: bool = False
    s3: bool = False
    mlflow: bool = False
    state: bool = False


TRAITS: dict[Stage, Traits] = {
    Stage.VALIDATE_CONFIG: Traits(),
    Stage.AUGMENTATION_SHARDS: Traits(),
    Stage.DATA_PREP: Traits(s3=True),  # s3:// user audio
    Stage.BACKGROUND_MINING: Traits(s3=True, mlflow=True, state=True),  # s3:// or models:/ previous model
    Stage.AUGMENTATION: Traits(gpu=True),
    Stage.GATHER_FEATURES: Traits(),
    Stage.TEACHER_TRAINING: Traits(gpu=True, mlflow=True, state=True),
    Stage.DISTILLATION: Traits(gpu=True, mlflow=True, state=True),
    Stage.QUANTIZATION: Traits(mlflow=True),
    Stage.ESPHOME_VERIFICATION: Traits(mlflow=True),
    Stage.CASCADE_EVALUATION: Traits(mlflow=True),
    Stage.PUBLISH: Traits(s3=True, mlflow=True),  # an s3:// model store, registration
}

CONFIG = "config"  # every task but validate_config reads the config artifact validate_config writes
SHARDS = "shards"  # augmentation_shards' output: the shard indices the fan-out iterates over


@dataclass(frozen=True)
class Task:
    name: str  # the task's name in the compiled IR and kfp.local's folders (the component's, numbered if repeated)
    stage: Stage
    display_name: str
    component: str  # "module:function" of the KFP component
    entry: str | None = None  # "module:function" of the stage entry; None for the two control tasks
    inputs: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # input -> (upstream task, its output)
    outputs: tuple[str, ...] = ()  # file artifacts the entry writes (KFP Metrics go through StageResult.scalars)
    options: Mapping[str, Any] = field(default_factory=dict)  # constant parameters of this task
    roles: Mapping[str, str] = field(default_factory=dict)  # output -> the lineage node it is
    fan: Fan = Fan.ONCE
    after: tuple[str, ...] = ()  # tasks it waits for without reading their outputs

    @property
    def traits(self) -> Traits:
        return TRAITS[self.stage]

    def load_component(self) -> Any:
        return _load(self.component)

    def load_entry(self) -> StageEntry:
        if self.entry is None:
            raise ValueError(f"{self.name} is a control task: it has no stage entry")
        return _load(self.entry)


def _load(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _teacher(name: str, label: str, index: int) -> Task:
    return Task(name, Stage.TEACHER_TRAINING, f"teacher {label}",
                "components.teacher_training.component:teacher_training", "components.teacher_training.stage:run_stage",
                {"features": ("gather-features", "features")}, ("model",), {"teacher_index": index},
                {"model": f"teacher_{label}"})


TASKS: tuple[Task, ...] = (
    Task("validate-config", Stage.VALIDATE_CONFIG, "validate config",
         "components.validate_config.component:validate_config", outputs=(CONFIG,), roles={CONFIG: "config"}),
    Task("augmentation-shards", Stage.AUGMENTATION_SHARDS, "plan shards",
         "components.validate_config.component:augmentation_shards", outputs=(SHARDS,)),
    Task("data-prep", Stage.DATA_PREP, "data prep", "components.data_prep.component:data_prep",
         "components.data_prep.stage:run_stage", outputs=("dataset",), roles={"dataset": "dataset"}),
    Task("background-mining", Stage.BACKGROUND_MINING, "background mining",
         "components.background_mining.component:background_mining", "components.background_mining.stage:run_stage",
         {"dataset": ("data-prep", "dataset")}, ("hard_negatives", "report"),
         roles={"hard_negatives": "hard_negatives"}),
    Task("augmentation", Stage.AUGMENTATION, "augmentation", "components.augmentation.component:augmentation",
         "components.augmentation.stage:run_stage",
         {"dataset": ("data-prep", "dataset"), "hard_negatives": ("background-mining", "hard_negatives")},
         ("features",), fan=Fan.PER_SHARD),
    Task("gather-features", Stage.GATHER_FEATURES, "gather features",
         "components.augmentation.component:gather_features", "components.augmentation.stage:run_gather_stage",
         {"shards": ("augmentation", "features")}, ("features",), roles={"features": "features"}, fan=Fan.GATHER),
    _teacher("teacher-training", "a", 0),
    _teacher("teacher-training-2", "b", 1),
    Task("distillation", Stage.DISTILLATION, "distillation", "components.distillation.component:distillation",
         "components.distillation.stage:run_stage",
         {"features": ("gather-features", "features"), "teacher_a": ("teacher-training", "model"),
          "teacher_b": ("teacher-training-2", "model")}, ("model",), roles={"model": "student"}),
    Task("quantization", Stage.QUANTIZATION, "quantization", "components.quantization.component:quantization",
         "components.quantization.stage:run_stage",
         {"model": ("distillation", "model"), "features": ("gather-features", "features")}, ("tflite_model",),
         roles={"tflite_model": "tflite_model"}),
    Task("esphome-verification", Stage.ESPHOME_VERIFICATION, "esphome verification",
         "components.esphome_verification.component:esphome_verification",
         "components.esphome_verification.stage:run_stage",
         {"tflite_model": ("quantization", "tflite_model"), "features": ("gather-features", "features")},
         ("blessing", "report"), roles={"blessing": "blessing", "report": "report"}),
    # the shipped model as the device's sentry, a teacher (config.cascade.judge) as the server's judge
    Task("cascade-evaluation", Stage.CASCADE_EVALUATION, "cascade evaluation",
         "components.cascade_evaluation.component:cascade_evaluation",
         "components.cascade_evaluation.stage:run_stage",
         {"tflite_model": ("quantization", "tflite_model"), "teacher_a": ("teacher-training", "model"),
          "teacher_b": ("teacher-training-2", "model"), "features": ("gather-features", "features")},
         ("cascade", "report"), roles={"cascade": "cascade"}, after=("esphome-verification",)),
    Task("publish", Stage.PUBLISH, "publish", "components.publish.component:publish",
         "components.publish.stage:run_stage",
         {"dataset": ("data-prep", "dataset"), "hard_negatives": ("background-mining", "hard_negatives"),
          "features": ("gather-features", "features"), "teacher_a": ("teacher-training", "model"),
          "teacher_b": ("teacher-training-2", "model"), "student": ("distillation", "model"),
          "tflite_model": ("quantization", "tflite_model"), "blessing": ("esphome-verification", "blessing"),
          "report": ("esphome-verification", "report"), "cascade": ("cascade-evaluation", "cascade")},
         ("record",), roles={"record": "published"}, fan=Fan.IF_BLESSED),
)
BY_NAME: dict[str, Task] = {t.name: t for t in TASKS}


def task(name: str) -> Task:
    return BY_NAME[name]


def role_by_output() -> dict[tuple[str, str], str]:
    """(task, output) -> lineage node, under the task's IR name and its display name (as KFP shows it)."""
    out: dict[tuple[str, str], str] = {}
    for t in TASKS:
        for output, role in t.roles.items():
            out[(t.name, output)] = role
            out[(t.display_name.replace(" ", "-"), output)] = role
    return out


def describe_registry() -> str:
    """The registry as text, task by task (`wakeline stages`; the README's copy is checked against it)."""
    fan = {Fan.PER_SHARD: ", one per shard", Fan.GATHER: ", all shards at once", Fan.IF_BLESSED: ", if blessed"}
    lines = []
    for t in TASKS:
        traits = t.traits
        needs = ["gpu image" if traits.gpu else "cpu image"] + [n for n, on in (
            ("S3", traits.s3), ("MLflow", traits.mlflow), ("state volume", traits.state)) if on]
        lines.append(f"{t.name} ({t.stage.value}{fan.get(t.fan, '')}; {', '.join(needs)})")
        if t.inputs:
            reads = ", ".join(f"{name} <- {source}.{output}" for name, (source, output) in t.inputs.items())
            lines += textwrap.wrap(reads, 110, initial_indent="  reads   ", subsequent_indent=" " * 10)
        lines.append("  writes  " + ", ".join(t.outputs))
    return "\n".join(lines)
