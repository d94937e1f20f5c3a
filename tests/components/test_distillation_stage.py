"""Distillation on tiny real features: teachers are checked first, the student learns, the no-teacher baseline
(same student, steps, seed and batches) never consults the teachers."""
import json
import shutil

import numpy as np
import pytest

from components.augmentation.stage import run as augment
from components.common.config import load_config
from components.data_prep.stage import run as prepare
from components.distillation import stage as distil
from components.distillation.compat import TeacherMismatch
from components.teacher_training.stage import run as train_teacher

pytestmark = pytest.mark.slow

SETS = ["data_prep.positives.espeak_clips=60", "data_prep.positives.piper_clips=10", "augmentation.epochs=2",
        "augmentation.device=cpu", "augmentation.workers=2", "training.steps=[60, 20]",
        "training.eval_every_steps=40", "distillation.max_teacher_val_frr=1.0"]  # 80-step teachers are weak


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("distil")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    cfg = load_config("smoke", overrides=SETS + [f"training.checkpoint_root={root / 'ck'}"])
    prepare(root / "dataset", cfg, show_progress=False)
    augment(root / "dataset", root / "features", cfg, show_progress=False)
    for i in (0, 1):
        train_teacher(root / "features", root / f"teacher_{i}", cfg, i, show_progress=False)
    yield cfg, root
    mp.undo()


def _with(cfg, **distillation):
    return cfg.model_copy(update={"distillation": cfg.distillation.model_copy(update=distillation)})


def test_student_is_distilled_and_reported_beside_its_teachers(trained, tmp_path):
    cfg, root = trained
    teachers = [root / "teacher_0", root / "teacher_1"]
    md, metrics = distil.run(teachers, root / "features", tmp_path / "student", cfg, show_progress=False)
    out = tmp_path / "student"
    for name in ("model.keras", "model_spec.json", "validation.json", distil.REPORT_FILE):
        assert (out / name).is_file()
    spec = json.loads((out / "model_spec.json").read_text())
    assert spec["spec"]["name"] == cfg.distillation.student.name and spec["output"] == "sigmoid"
    report = json.loads((out / distil.REPORT_FILE).read_text())["models"]
    assert set(report) == {"teacher_a", "teacher_b", "student"}
    for label, i in (("teacher_a", 0), ("teacher_b", 1)):
        validation = json.loads((root / f"teacher_{i}" / "validation.json").read_text())
        assert metrics[f"{label}_val_frr"] == validation["frr"] == report[label]["val_frr"]
    assert report["student"]["val_frr"] == metrics["val_frr"] and 0 <= metrics["val_frr"] <= 1
    assert set(md["input_sha256"]) >= {"features_metadata", "teacher_a_model", "teacher_b_model"}

    # The baseline: soft_target_weight 0 trains the same student on the same batches without the teachers.
    calls = []
    original = distil.DistillationBatches.teacher_probabilities
    distil.DistillationBatches.teacher_probabilities = lambda self, x: calls.append(1) or original(self, x)
    try:
        _, base = distil.run(teachers, root / "features", tmp_path / "baseline", _with(cfg, soft_target_weight=0.0),
                             show_progress=False)
    finally:
        distil.DistillationBatches.teacher_probabilities = original
    assert not calls
    import keras

    w_distilled = keras.models.load_model(out / "model.keras").get_weights()
    w_baseline = keras.models.load_model(tmp_path / "baseline" / "model.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(w_distilled, w_baseline))  # the teachers changed training
    print(f"\nsmoke distillation: distilled val FRR {metrics['val_frr']:.3f} at {metrics['val_fa_per_hour']:.2f} "
          f"FA/h; no-teacher baseline {base['val_frr']:.3f} at {base['val_fa_per_hour']:.2f} FA/h")


def test_a_mismatched_teacher_fails_before_any_training(trained, tmp_path):
    cfg, root = trained
    bad = tmp_path / "bad"
    shutil.copytree(root / "teacher_1", bad)
    meta = json.loads((bad / "model_spec.json").read_text())
    meta["features"]["step_ms"] = 20
    (bad / "model_spec.json").write_text(json.dumps(meta))
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"checkpoint_root": str(tmp_path / "ck")})})
    with pytest.raises(TeacherMismatch, match=r"teacher_b \(tcn-small\): features.step_ms is 20"):
        distil.run([root / "teacher_0", bad], root / "features", tmp_path / "student", cfg, show_progress=False)
    assert not (tmp_path / "ck").exists() and not (tmp_path / "student").exists()


def test_embedding_teacher_is_fitted_saved_and_changes_the_student(trained, tmp_path):
    """weight > 0: the head is fitted on the store's speech embeddings, saved beside the student, hashed into
    its lineage and reported; its soft targets change training. Without embeddings in the store: a clear
    error before any training."""
    from components.distillation.embedding_teacher import HEAD_FILE, NoEmbeddings

    cfg, root = trained
    teachers = [root / "teacher_0", root / "teacher_1"]
    on = _with(cfg, embedding_teacher=cfg.distillation.embedding_teacher.model_copy(
        update={"weight": 1.0, "epochs": 5}))
    with pytest.raises(NoEmbeddings, match="distillation.embedding_teacher.weight"):
        distil.run(teachers, root / "features", tmp_path / "refused", on, show_progress=False)
    assert not (tmp_path / "refused" / "model.keras").exists()
    augment(root / "dataset", tmp_path / "features", on, show_progress=False)
    md, metrics = distil.run(teachers, tmp_path / "features", tmp_path / "student", on, show_progress=False)
    out = tmp_path / "student"
    assert (out / HEAD_FILE).is_file() and "embedding_teacher_head" in md["input_sha256"]
    report = json.loads((out / distil.REPORT_FILE).read_text())["embedding_teacher"]
    assert report["train_clips"] > 0 and 0 <= report["validation"]["frr"] <= 1
    assert metrics["embedding_teacher_val_clip_frr"] == report["validation"]["frr"]
    md_plain, _ = distil.run(teachers, tmp_path / "features", tmp_path / "plain", cfg, show_progress=False)
    import keras

    w_on = keras.models.load_model(out / "model.keras").get_weights()
    w_plain = keras.models.load_model(tmp_path / "plain" / "model.keras").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(w_on, w_plain))


def test_candidate_students_are_judged_on_the_device_path_and_the_best_ships(trained, tmp_path):
    """students=2: two seeds distilled, each converted to INT8 and scored on TFLite-Micro over validation; the
    one `choose_student` picks is the Model that ships (its INT8 validation, re-measured, is the reported one),
    candidate 0 is bit for bit the student a single-student run makes, and the report lists both."""
    import keras

    from components.common.artifacts import FeatureStoreLayout
    from components.runtime import device_path

    cfg, root = trained
    teachers = [root / "teacher_0", root / "teacher_1"]
    two = _with(cfg, students=2)
    md, metrics = distil.run(teachers, root / "features", tmp_path / "chosen", two, show_progress=False)
    rows = md["students"]
    assert [r["seed"] for r in rows] == [cfg.seed + 100, cfg.seed + 110]
    assert [r["chosen"] for r in rows].count(True) == 1
    best = next(r for r in rows if r["chosen"])
    assert metrics["chosen_student"] == best["index"]
    frr = [r["device_validation"]["frr"] for r in rows]
    assert best["device_validation"]["frr"] == min(frr)
    assert json.loads((tmp_path / "chosen" / distil.REPORT_FILE).read_text())["students"] == rows

    store = FeatureStoreLayout(root / "features")
    shipped = keras.models.load_model(tmp_path / "chosen" / "model.keras")
    _, tflite = device_path.to_int8(shipped, two.distillation.student, store, cfg.seed, tmp_path / "again.tflite")
    again = device_path.validate(tflite, store, two).chosen
    assert (again.frr, again.cutoff) == (best["device_validation"]["frr"], best["device_validation"]["cutoff"])
    for r in rows:  # every candidate's judged INT8 model is kept (evaluation only) and re-validates the same
        kept = device_path.validate(tmp_path / "chosen" / r["candidate"], store, two).chosen
        assert kept.cutoff == r["device_validation"]["cutoff"]
        assert kept.frr == pytest.approx(r["device_validation"]["frr"], abs=1e-5)

    one_md, _ = distil.run(teachers, root / "features", tmp_path / "single", cfg, show_progress=False)
    assert [r["seed"] for r in one_md["students"]] == [cfg.seed + 100] and "device_validation" not in one_md["students"][0]
    w_single = keras.models.load_model(tmp_path / "single" / "model.keras").get_weights()
    if best["index"] == 0:
        assert all(np.array_equal(a, b) for a, b in zip(w_single, shipped.get_weights()))
    else:
        assert any(not np.array_equal(a, b) for a, b in zip(w_single, shipped.get_weights()))


def test_a_student_can_start_from_okay_nabu(trained, tmp_path, monkeypatch):
    """student_init=okay_nabu: each candidate is built with okay_nabu's convolutions (BatchNorms calibrated on
    training windows) before its first step, and after a short distillation still carries them, where the same
    student from random weights does not. distillation.learning_rates is the students' schedule, not the
    teachers'."""
    import keras

    from components.common.config import ModelSpec, StudentInit
    from components.training import fit, pretrained

    schedules = []
    trainer = fit.Trainer
    monkeypatch.setattr(fit, "Trainer", lambda model, training, *a, **kw: (
        schedules.append(training.learning_rates), trainer(model, training, *a, **kw))[1])

    cfg, root = trained
    teachers = [root / "teacher_0", root / "teacher_1"]
    big = _with(cfg, student=ModelSpec(name="student"))  # okay_nabu's shapes, default's student
    calls = []
    original = pretrained.load_into
    monkeypatch.setattr(pretrained, "load_into", lambda model, spec, windows, **kw: (
        calls.append(windows.shape), original(model, spec, windows, **kw))[1])
    distil.run(teachers, root / "features", tmp_path / "nabu",
               _with(big, student_init=StudentInit.OKAY_NABU, learning_rates=[3e-4, 1e-4]), show_progress=False)
    assert calls == [(distil.CALIBRATION_BATCHES * cfg.training.batch_size, 170, 40)]
    distil.run(teachers, root / "features", tmp_path / "random", big, show_progress=False)
    assert len(calls) == 1
    assert schedules == [[3e-4, 1e-4], cfg.training.learning_rates]

    official = pretrained.read()["conv"][0][0].transpose(1, 2, 3, 0).ravel()

    def first_conv(name):
        return keras.models.load_model(tmp_path / name / "model.keras").get_layer("first_conv").get_weights()[0].ravel()

    assert np.corrcoef(official, first_conv("nabu"))[0, 1] > 0.9
    assert abs(np.corrcoef(official, first_conv("random"))[0, 1]) < 0.3


def test_frozen_stages_ship_okay_nabus_first_convolution_unchanged(trained, tmp_path):
    """distillation.frozen_stages=1: the shipped student's first convolution is okay_nabu's, to the bit, while
    its first block learnt."""
    import keras

    from components.common.config import ModelSpec, StudentInit
    from components.training import pretrained

    cfg, root = trained
    config = _with(cfg, student=ModelSpec(name="student"), student_init=StudentInit.OKAY_NABU, frozen_stages=1)
    distil.run([root / "teacher_0", root / "teacher_1"], root / "features", tmp_path / "frozen", config,
               show_progress=False)
    shipped = keras.models.load_model(tmp_path / "frozen" / "model.keras")
    w = pretrained.read()
    assert np.array_equal(shipped.get_layer("first_conv").get_weights()[0], w["conv"][0][0].transpose(1, 2, 3, 0))
    assert not np.array_equal(shipped.get_layer("b0_pointwise").get_weights()[0], w["conv"][1][0].transpose(1, 2, 3, 0))
