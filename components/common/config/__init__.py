"""Typed configuration for the whole pipeline, validated once before the first stage runs, split by concern:

- run.py: the run's parameters, what decides the model (hashed into every artifact's lineage), and
  `WakelineConfig`, the whole config a user writes;
- deployment.py: where the model goes (`publish`) and where the stages run (`kubernetes`), never hashed;
- loading.py: presets, YAML files, `--set` overrides, the config artifact and error messages;
- base.py: the strict base model and shared field types; espeak_voices.py: the voices validation checks against.

Every public name is re-exported here, so `from components.common.config import X` is the one import to use.
"""
from components.common.config.base import ConfigError, FloatRange, IntRange, Probability, Strict, Toggle
from components.common.config.deployment import (DEFAULT_CLUSTER, CpuQuantity, EnvName, KubernetesSettings, LabelKey,
                                                 LabelValue, MemoryQuantity, Publish, RegistryMode, SecretEnv, Stage,
                                                 StageResources, StageResourceTable, StateVolume, TaintEffect,
                                                 Toleration, TolerationOperator, cpu_cores, memory_bytes)
from components.common.config.loading import (PRESETS_DIR, apply_override, deep_merge, format_errors, load_config,
                                              load_preset, merge_layer, parse_config, preset_names,
                                              read_config_artifact, resolve_pipeline_config, validate,
                                              write_config_artifact)
from components.common.config.run import (OKAY_NABU_SHAPES, Accent, Adversarial, AgreementWeighting, Ambient,
                                          AmbientKind, Architecture, AugmentOps, Augmentation, Cascade, Channel,
                                          CheckpointRule, ClipCounts, DataPrep, DeviceBudget, Distillation,
                                          EmbeddingTeacher, EpochOrder, EspeakSettings, EvalConditions,
                                          HibariSettings, JudgeChoice, KokoroSettings, LabelWeights, Mining, ModelSpec,
                                          NonEnglish, PerturbationMethod, PiperSettings, PositiveCondition, Quality,
                                          RoomImpulseResponses, RoomSplit, RunParameters, SamplingWeights,
                                          ScheduleShape, SnrSchedule, SpeakerClass, SpeakerPerturbation, SpecAugment,
                                          SpeechCondition, Splits, StudentInit, Training, TrainingLanguages,
                                          TTSSettings, UserSources, WakelineConfig, WeightAveraging)

__all__ = [
    # base
    "ConfigError", "FloatRange", "IntRange", "Probability", "Strict", "Toggle",
    # the run's parameters
    "Accent", "Adversarial", "AgreementWeighting", "Ambient", "AmbientKind", "Architecture", "AugmentOps",
    "Augmentation", "Cascade", "Channel", "CheckpointRule", "ClipCounts", "DataPrep", "DeviceBudget", "Distillation",
    "EmbeddingTeacher", "EpochOrder", "EspeakSettings", "EvalConditions", "HibariSettings", "JudgeChoice",
    "KokoroSettings", "LabelWeights", "Mining", "ModelSpec", "NonEnglish", "PerturbationMethod", "PiperSettings", "PositiveCondition",
    "Quality", "RoomImpulseResponses", "RoomSplit", "RunParameters", "SamplingWeights", "ScheduleShape", "SnrSchedule",
    "SpeakerClass", "SpeakerPerturbation", "SpecAugment", "SpeechCondition", "Splits", "StudentInit", "TTSSettings",
    "Training", "TrainingLanguages", "OKAY_NABU_SHAPES", "UserSources", "WakelineConfig", "WeightAveraging",
    # deployment settings
    "DEFAULT_CLUSTER", "CpuQuantity", "EnvName", "KubernetesSettings", "LabelKey", "LabelValue", "MemoryQuantity",
    "Publish", "RegistryMode", "SecretEnv", "Stage", "StageResourceTable", "StageResources", "StateVolume",
    "TaintEffect", "Toleration", "TolerationOperator", "cpu_cores", "memory_bytes",
    # loading
    "PRESETS_DIR", "apply_override", "deep_merge", "format_errors", "load_config", "load_preset", "merge_layer",
    "parse_config", "preset_names", "read_config_artifact", "resolve_pipeline_config", "validate",
    "write_config_artifact",
]
