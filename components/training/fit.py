"""Train one model on a FeatureStore and save it as a `Model` directory: what teacher training and
distillation share (the loop itself is `trainer.Trainer`).

The Model directory's files are `components.common.artifacts.ModelLayout`: the Keras model, its spec document
(the spec, the feature config it expects, its output kind and the wake word) and its validation document
(device-like FRR / FA/h at the config's target, the calibrated cutoff, the eval history).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from components.common import xp as xpmod
from components.common.artifacts import FeatureStoreLayout, Lineage, ModelLayout, Split, code_version, sha256_file
from components.training.batches import Batch
from components.common.config import CheckpointRule, ModelSpec, Training, WakelineConfig
from components.common.evaluation import choose_cutoff, store_streams
from components.common.frontend import FEATURE_CHANNELS, FEATURE_STEP_MS, FLOAT_SCALE
from components.training.models import build
from components.common.observability import ResourceMonitor
from components.common.metrics import OperatingPoint
from components.training.scoring import Score, model_scorer, split_scores
from components.common.tracking import stage_run
from components.training.trainer import (Trainer, build_model, operating_point, training_strategy,
                                       use_mixed_precision, use_xla)
from components.common import atomic

def feature_config(spec: ModelSpec) -> dict[str, Any]:
    """What a model expects of its input, written beside it and checked before it is used."""
    return {"channels": FEATURE_CHANNELS, "step_ms": FEATURE_STEP_MS, "float_scale": FLOAT_SCALE,
            "input_frames": spec.input_frames, "stride_frames": spec.stride}


def checkpoint_dir(config: WakelineConfig, spec: ModelSpec, store: FeatureStoreLayout,
                   extra: dict[str, Any] | None = None) -> Path:
    """Where resumable state lives: keyed by everything that determines the training run."""
    key = hashlib.sha256(json.dumps({
        "spec": spec.model_dump(mode="json"), "training": config.training.model_dump(mode="json"),
        "augmentation": config.augmentation.spec_augment.model_dump(mode="json"), "seed": config.seed,
        "target": config.target_false_accepts_per_hour,
        "features": store.metadata().get("sets"), **(extra or {}),
    }, sort_keys=True).encode()).hexdigest()[:16]
    return Path(config.training.checkpoint_root).resolve() / f"{spec.name}-{key}"


def validation_point(score: Score, store: FeatureStoreLayout, config: WakelineConfig) -> OperatingPoint:
    """A float model's operating point on the validation split by `training.checkpoint_rule`: what picks the
    checkpoint during training and what the saved model's validation document reports."""
    target = config.target_false_accepts_per_hour
    if config.training.checkpoint_rule is CheckpointRule.POOLED:
        return operating_point(split_scores(score, store, Split.VALIDATION), target)
    positives, ambient = store_streams(store, Split.VALIDATION, score)
    return choose_cutoff(positives, ambient, target, config.cutoff_safety_margin, quantized=False)


@dataclass
class FitPlan:
    """How to train: the batches (a function of step), an optional custom loss, and what identifies the run."""

    spec: ModelSpec
    seed: int
    run_name: str
    next_batch: Callable[[int, int], Batch] | None = None  # default: TrainingBatches over the store
    loss_fn: Callable | None = None
    params: dict[str, Any] | None = None  # extra MLflow params and checkpoint key
    inputs: dict[str, str] | None = None  # extra lineage inputs (name -> sha256)
    prefetch: bool = False  # draw the next batch on a worker thread while a step trains (Trainer.fit)
    init: Callable[[Any], None] | None = None  # sets the freshly built model's starting weights (default: random)
    training: Training | None = None  # this model's schedule, where it is not `config.training` (the students')


def fit_and_save(plan: FitPlan, store: FeatureStoreLayout, output_dir: Path, config: WakelineConfig, *,
                 show_progress: bool = True, stop_after: int | None = None):
    """Train `plan.spec`, select the best checkpoint on validation, save the Model directory.
    Returns (model metadata, scalar metrics, the Keras model)."""
    import keras

    from components.training.batches import TrainingBatches

    t0 = time.monotonic()
    spec, training = plan.spec, plan.training or config.training
    backend = xpmod.select(config.training.device, key="training.device")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = ModelLayout(out)
    xla = use_xla(config.training, backend.is_gpu)
    mixed = use_mixed_precision(config.training, backend.is_gpu)
    import tensorflow as tf

    keras.utils.set_random_seed(plan.seed)  # the initial weights too, not only the batches: a run is repeatable
    if not backend.is_gpu:  # on the CPU every op has a deterministic kernel; on GPUs some would refuse
        tf.config.experimental.enable_op_determinism()
    strategy = training_strategy()
    with strategy.scope():
        model = build_model(build, spec, mixed)
        if plan.init is not None:  # before the Trainer, which restores a resumed run's own weights over these
            plan.init(model)
        trainer = Trainer(model, training, checkpoint_dir(config, spec, store, plan.params), xla=xla,
                          seed=plan.seed, loss_fn=plan.loss_fn)
    print(f"{plan.run_name}: {model.count_params()} parameters, {backend.reason}, XLA {'on' if xla else 'off'}, "
          f"{'mixed float16' if mixed else 'float32'}, {trainer.replicas} replica(s)", file=sys.stderr)
    next_batch = plan.next_batch or TrainingBatches(store, config.training, config.augmentation.spec_augment,
                                                    spec.input_frames, plan.seed).batch

    score = model_scorer(model, spec)

    def validate():
        return validation_point(score, store, config)

    params = {"model": spec.model_dump(mode="json"), "training": training.model_dump(mode="json"),
              "target_fa_per_hour": config.target_false_accepts_per_hour, "xla": xla, "mixed_precision": mixed,
              **(plan.params or {})}
    with stage_run(plan.run_name, f"wakeline/{config.wake_word}", params,
                   tags={"config_sha256": config.sha256()}) as tracker:
        with ResourceMonitor() as monitor:
            result = trainer.fit(next_batch, validate, config.target_false_accepts_per_hour,
                                 show_progress=show_progress, stop_after=stop_after, profile_dir=out / "profile",
                                 prefetch=plan.prefetch)
        resources = monitor.write(out / ModelLayout.RESOURCES)
        final = validate()
        with atomic.replaced(layout.model) as tmp:
            model.save(tmp)
        spec_doc = {"spec": spec.model_dump(mode="json"), "features": feature_config(spec), "output": ModelLayout.OUTPUT_KIND,
                    "wake_word": config.wake_word}
        layout.write_spec(spec_doc)
        validation = {"frr": final.frr, "fa_per_hour": final.fa_per_hour, "cutoff": final.cutoff,
                      "target_fa_per_hour": config.target_false_accepts_per_hour,
                      "checkpoint_rule": config.training.checkpoint_rule.value,
                      "best_step": result.best.step if result.best else None,
                      "history": [vars(h) for h in result.history]}
        layout.write_validation(validation)
        metrics = {"val_frr": final.frr, "val_recall": 1 - final.frr, "val_fa_per_hour": final.fa_per_hour,
                   "val_cutoff": final.cutoff, "parameters": float(model.count_params()),
                   "final_loss": float(result.losses[-1]) if result.losses else float("nan")}
        inputs = {"features_metadata": sha256_file(store.root / FeatureStoreLayout.METADATA), **(plan.inputs or {})}
        metadata = {"name": spec.name, "architecture": spec.architecture.value, "framework": "keras",
                    "keras_version": keras.__version__, "parameters": model.count_params(),
                    "steps": config.training.total_steps, "resumed_from_step": result.resumed_from_step,
                    "xla": xla, "mixed_precision": mixed, "replicas": trainer.replicas,
                    "recompute_gradients": config.training.recompute_gradients,
                    "validation": {k: v for k, v in validation.items() if k != "history"},
                    "resources": resources, "wall_s": round(time.monotonic() - t0, 1),
                    **Lineage(config.sha256(), code_version(), inputs,
                              {ModelLayout.MODEL: sha256_file(layout.model)}).as_metadata()}
        for h in result.history:
            tracker.log_metrics({"eval_frr": h.frr, "eval_fa_per_hour": h.fa_per_hour, "eval_train_loss": h.loss},
                                step=h.step)
        tracker.log_metrics(metrics)
        tracker.log_keras_model(out)
    metadata["mlflow_run_id"] = tracker.run_id
    return metadata, metrics, model
