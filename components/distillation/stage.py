"""distillation stage entry: two teacher `Model`s and a FeatureStore in, the student `Model` out.

Each batch is drawn once with the longest input any model needs; every model reads the last
`input_frames` of the same windows, so teachers and student judge the same audio ending at the same frame.
The loss per sample is

    (1 - a) * BCE(label, p) + a * T^2 * g * BCE(q_T, p_T)

with `a` = soft_target_weight, `q_T` = sigmoid(weighted mean of the teachers' logits / T), `p_T` the
student's probability at temperature T and `g` an optional teacher-agreement weight (1 - |p_a - p_b|).
With `embedding_teacher.weight` > 0 a third logit joins the mean: the embedding teacher's
(`components.distillation.embedding_teacher`, fitted here on the feature store's speech embeddings).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from components.common.artifacts import FeatureStoreLayout, ModelLayout, sha256_file
from components.training.batches import Batch, TrainingBatches
from components.common.config import AgreementWeighting, Distillation, StudentInit, WakelineConfig
from components.common.stages import StageResult
from components.training import pretrained
from components.training.fit import FitPlan, fit_and_save
from components.distillation import embedding_teacher as embedding_teacher_mod
from components.distillation.compat import Teacher, check_teachers
from components.distillation.embedding_teacher import FittedEmbeddingTeacher
from components.common.evaluation import finite_or_none
from components.common.jsonio import dumps
from components.common.metrics import OperatingPoint
from components.runtime import device_path

REPORT_FILE = "distillation.json"
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def soft_targets(p_a: np.ndarray, p_b: np.ndarray, cfg: Distillation,
                 p_embedding: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(soft targets at temperature T, per-sample agreement weight) from the teachers' probabilities; the
    embedding teacher's, when given, joins the weighted mean of logits (agreement stays the two teachers')."""
    w_a, w_b = cfg.teacher_weights
    z = w_a * logit(p_a) + w_b * logit(p_b)
    total = w_a + w_b
    if p_embedding is not None:
        w_e = cfg.embedding_teacher.weight
        z, total = z + w_e * logit(p_embedding), total + w_e
    z = z / total
    q = 1.0 / (1.0 + np.exp(-z / cfg.temperature))
    agree = (1.0 - np.abs(np.asarray(p_a, np.float64) - p_b) if cfg.agreement_weighting is AgreementWeighting.AGREEMENT
             else np.ones_like(q))
    return q.astype(np.float32), agree.astype(np.float32)


def distillation_loss(cfg: Distillation, label_smoothing: float):
    """The Trainer's loss: y packs [hard label, soft target, agreement weight] per sample."""
    import keras
    import tensorflow as tf

    bce = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing, reduction="none")
    a, t = cfg.soft_target_weight, cfg.temperature

    def loss(y, p, w, total):
        hard = bce(y[:, :1], p)
        pc = tf.clip_by_value(p[:, 0], _EPS, 1 - _EPS)
        z = (tf.math.log(pc) - tf.math.log1p(-pc)) / t
        soft = tf.nn.sigmoid_cross_entropy_with_logits(labels=y[:, 1], logits=z) * y[:, 2]
        return tf.reduce_sum(((1 - a) * hard + a * t * t * soft) * w) / total

    return loss


class DistillationBatches:
    """Training batches with the teachers' soft targets attached (the student's window in `x`)."""

    def __init__(self, store: FeatureStoreLayout, config: WakelineConfig, teachers: list[Teacher], seed: int,
                 embedding_teacher: FittedEmbeddingTeacher | None = None):
        import tensorflow as tf

        self.cfg = config.distillation
        self.embedding_teacher = embedding_teacher
        self.student_frames = self.cfg.student.input_frames
        self.teachers = teachers
        frames = max([self.student_frames] + [t.spec.input_frames for t in teachers])
        self.source = TrainingBatches(store, config.training, config.augmentation.spec_augment, frames, seed)
        self.uses_teachers = self.cfg.soft_target_weight > 0
        self._predict = [tf.function(lambda x, m=t.model: m(x, training=False), reduce_retracing=True)
                         for t in teachers]

    def teacher_probabilities(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(f(x[:, -t.spec.input_frames:]))[:, 0] for f, t in zip(self._predict, self.teachers)]

    def batch(self, step: int, total_steps: int) -> Batch:
        b = self.source.batch(step, total_steps)
        if self.uses_teachers:
            p_e = None if self.embedding_teacher is None else self.embedding_teacher.probabilities(b.epoch, b.clips)
            q, agree = soft_targets(*self.teacher_probabilities(b.x), self.cfg, p_e)
        else:  # no soft term: the same batches, the teachers never consulted
            q, agree = b.y.copy(), np.zeros_like(b.y)
        y = np.stack([b.y, q, agree], axis=1).astype(np.float32)
        return replace(b, x=np.ascontiguousarray(b.x[:, -self.student_frames:]), y=y)


def run(teacher_dirs: list[Path], features_dir: Path, output_dir: Path, config: WakelineConfig, *,
        show_progress: bool = True, stop_after: int | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Check the teachers, distil the student, save it as a Model directory; return (metadata, metrics)."""
    cfg = config.distillation
    store = FeatureStoreLayout(Path(features_dir))
    teachers = check_teachers({f"teacher_{'ab'[i]}": Path(d) for i, d in enumerate(teacher_dirs)}, cfg.student,
                              store.metadata(), cfg.max_teacher_val_frr)
    seed = student_seed(config, 0)
    teacher_hashes = {f"{t.label}_model": sha256_file(ModelLayout(t.path).model) for t in teachers}
    embedding_teacher = None
    if cfg.embedding_teacher.weight > 0 and cfg.soft_target_weight > 0:
        t0 = time.monotonic()
        embedding_teacher = embedding_teacher_mod.fit(store, cfg.embedding_teacher, seed)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        teacher_hashes["embedding_teacher_head"] = sha256_file(embedding_teacher.save(output_dir))
        embedding_teacher.report["wall_s"] = round(time.monotonic() - t0, 1)
        val = embedding_teacher.report.get("validation", {})
        print(f"distillation: embedding teacher fitted on {embedding_teacher.report['train_clips']} clips in "
              f"{embedding_teacher.report['wall_s']} s; validation clip FRR {val.get('frr', float('nan')):.1%} at "
              f"{embedding_teacher_mod.CUTOFF}", file=sys.stderr)
    batches = lambda k: DistillationBatches(store, config, teachers, student_seed(config, k), embedding_teacher)
    metadata, metrics, candidates = distil_students(batches, store, Path(output_dir), config, teacher_hashes,
                                                    show_progress=show_progress, stop_after=stop_after)
    side_by_side = {t.label: {"name": t.spec.name, "val_frr": t.validation["frr"],
                              "val_fa_per_hour": t.validation["fa_per_hour"]} for t in teachers}
    side_by_side["student"] = {"name": cfg.student.name, "val_frr": metrics["val_frr"],
                               "val_fa_per_hour": metrics["val_fa_per_hour"]}
    report = {"models": side_by_side, "target_fa_per_hour": config.target_false_accepts_per_hour,
              "distillation": cfg.model_dump(mode="json"), "students": candidates}
    if embedding_teacher is not None:
        report["embedding_teacher"] = embedding_teacher.report
        val = embedding_teacher.report.get("validation", {})
        if "frr" in val:
            metrics["embedding_teacher_val_clip_frr"] = float(val["frr"])
    (Path(output_dir) / REPORT_FILE).write_text(dumps(report, indent=2))
    for t in teachers:
        metrics[f"{t.label}_val_frr"] = float(t.validation["frr"])
        metrics[f"{t.label}_val_fa_per_hour"] = float(t.validation["fa_per_hour"])
    metadata["teachers"] = side_by_side
    metadata["students"] = candidates
    return metadata, metrics


def student_seed(config: WakelineConfig, k: int) -> int:
    """Candidate k's seed; candidate 0's is the one a single student has always had."""
    return config.seed + 100 + 10 * k


def choose_student(judged: Sequence[OperatingPoint], target_fa_per_hour: float) -> int:
    """The candidate that meets the FA/h target with the lowest validation FRR (then the lowest worst-condition
    FA/h, then the first): a candidate that cannot meet the target at any cutoff only wins when none can."""
    return min(range(len(judged)), key=lambda k: (not judged[k].fa_per_hour <= target_fa_per_hour, judged[k].frr,
                                                  judged[k].fa_per_hour, k))


def distil_students(batches: Callable[[int], DistillationBatches], store: FeatureStoreLayout, output_dir: Path,
                    config: WakelineConfig, teacher_hashes: dict[str, str], *, show_progress: bool = True,
                    stop_after: int | None = None) -> tuple[dict[str, Any], dict[str, float], list[dict[str, Any]]]:
    """Distil `distillation.students` candidates and save the chosen one in `output_dir`; a single student is
    saved there directly and not judged (there is nothing to choose). Returns (its metadata, its metrics, one
    row per candidate)."""
    cfg = config.distillation
    if cfg.students == 1:
        metadata, metrics, _ = _fit(batches(0), 0, store, output_dir, config, teacher_hashes, show_progress,
                                    stop_after)
        return metadata, metrics, [{"index": 0, "seed": student_seed(config, 0), "chosen": True,
                                    "float_validation": _float_validation(metrics)}]
    fitted, judged, rows = [], [], []
    layout = ModelLayout(Path(output_dir))
    with tempfile.TemporaryDirectory(prefix="wakeline-students-") as scratch:
        for k in range(cfg.students):
            t0 = time.monotonic()
            folder = Path(scratch) / f"student-{k}"
            metadata, metrics, model = _fit(batches(k), k, store, folder, config, teacher_hashes, show_progress,
                                            stop_after)
            _, tflite = device_path.to_int8(model, cfg.student, store, config.seed, folder / "judged.tflite")
            on_device = device_path.validate(tflite, store, config).chosen
            kept = layout.candidate(k)  # outside the student's folder, so the copy below leaves it out
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(tflite, kept)
            fitted.append((folder, metadata, metrics))
            judged.append(on_device)
            rows.append({"index": k, "seed": student_seed(config, k), "float_validation": _float_validation(metrics),
                         "candidate": kept.relative_to(layout.root).as_posix(),
                         "device_validation": {"cutoff": on_device.cutoff, "frr": finite_or_none(on_device.frr),
                                               "worst_condition_fa_per_hour": finite_or_none(on_device.fa_per_hour)},
                         "wall_s": round(time.monotonic() - t0, 1)})
            print(f"distillation: student {k + 1}/{cfg.students} (seed {student_seed(config, k)}): validation FRR "
                  f"{on_device.frr:.1%} on the device path at cutoff {on_device.cutoff:.2f}, worst condition "
                  f"{on_device.fa_per_hour:.1f} FA/h ({rows[-1]['wall_s']:.0f} s)", file=sys.stderr)
        best = choose_student(judged, config.target_false_accepts_per_hour)
        folder, metadata, metrics = fitted[best]
        shutil.copytree(folder, output_dir, dirs_exist_ok=True)
    for row in rows:
        row["chosen"] = row["index"] == best
    print(f"distillation: student {best + 1} of {cfg.students} ships (seed {student_seed(config, best)})",
          file=sys.stderr)
    metrics = {**metrics, "students": float(cfg.students), "chosen_student": float(best),
               "chosen_student_device_val_frr": float(judged[best].frr)}
    return metadata, metrics, rows


def _fit(batches: DistillationBatches, k: int, store: FeatureStoreLayout, output_dir: Path, config: WakelineConfig,
         teacher_hashes: dict[str, str], show_progress: bool, stop_after: int | None):
    cfg = config.distillation
    seed = student_seed(config, k)
    plan = FitPlan(cfg.student, seed=seed,
                   run_name=f"distillation/{cfg.student.name}" + (f"/candidate-{k}" if cfg.students > 1 else ""),
                   next_batch=batches.batch, loss_fn=distillation_loss(cfg, config.training.label_smoothing),
                   params={"distillation": cfg.model_dump(mode="json"), "student_seed": seed, **teacher_hashes},
                   inputs=teacher_hashes, prefetch=batches.uses_teachers,  # a batch runs the teachers
                   init=_student_init(batches, config), training=config.student_training())
    return fit_and_save(plan, store, output_dir, config, show_progress=show_progress, stop_after=stop_after)


CALIBRATION_BATCHES = 4  # training batches whose windows set a pretrained student's BatchNorm statistics


def _student_init(batches: DistillationBatches, config: WakelineConfig) -> Callable[[Any], None] | None:
    """`distillation.student_init`: None (random weights) or what loads okay_nabu's convolutions (and freezes the
    first `distillation.frozen_stages`)."""
    if config.distillation.student_init is StudentInit.RANDOM:
        return None
    total = config.training.total_steps
    windows = np.concatenate([batches.source.batch(total + k, total).x[:, -batches.student_frames:]
                              for k in range(CALIBRATION_BATCHES)])  # steps past the schedule: not trained on
    cfg = config.distillation

    def init(model) -> None:
        pretrained.load_into(model, cfg.student, windows)
        pretrained.freeze(model, cfg.student, cfg.frozen_stages)
    return init


def _float_validation(metrics: dict[str, float]) -> dict[str, float | None]:
    """What training's own validation says (float Keras, by `training.checkpoint_rule`): reported, not used."""
    return {"frr": finite_or_none(metrics["val_frr"]), "fa_per_hour": finite_or_none(metrics["val_fa_per_hour"]),
            "cutoff": finite_or_none(metrics["val_cutoff"])}


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              show_progress: bool = True) -> StageResult:
    """The stage entry (components.common.stages): `features`, `teacher_a`, `teacher_b` in; the student `model`
    out."""
    metadata, scalars = run([inputs["teacher_a"], inputs["teacher_b"]], inputs["features"], outputs["model"], config,
                            show_progress=show_progress)
    return StageResult({"model": metadata}, scalars)
