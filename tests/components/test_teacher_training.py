"""Teacher training on tiny real features: it learns, validation is device-like, and a killed run resumes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from components.augmentation.stage import run as augment
from components.common.artifacts import FeatureStoreLayout, Split
from components.common.config import load_config
from components.training.models import build
from components.training.scoring import model_scorer, split_scores
from components.training.trainer import operating_point
from components.data_prep.stage import run as prepare
from components.teacher_training.stage import checkpoint_dir, run

pytestmark = pytest.mark.slow

SETS = ["data_prep.positives.espeak_clips=60", "data_prep.positives.piper_clips=10", "augmentation.epochs=2",
        "augmentation.device=cpu", "augmentation.workers=2", "training.steps=[240, 80]",
        "training.eval_every_steps=80"]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    cfg = load_config("smoke", overrides=SETS + [f"training.checkpoint_root={root / 'ck'}"])
    prepare(root / "dataset", cfg, show_progress=False)
    augment(root / "dataset", root / "features", cfg, show_progress=False)
    yield cfg, root
    mp.undo()


def test_training_lowers_loss_and_beats_an_untrained_model(features, tmp_path):
    cfg, root = features
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"profile_steps": 5})})
    md, metrics = run(root / "features", tmp_path / "model", cfg, 0, show_progress=False)
    top = (tmp_path / "model" / "profile" / "profile_top.txt").read_text()
    assert "function calls" in top and "polymorphic_function" in top  # the profiled steps ran the tf.function
    assert md["resources"]["rss_mib_peak"] > 100
    history = json.loads((tmp_path / "model" / "validation.json").read_text())["history"]
    assert [h["step"] for h in history] == [80, 160, 240, 320]
    assert history[-1]["loss"] < history[0]["loss"]
    store = FeatureStoreLayout(root / "features")
    spec = cfg.teachers[0]
    untrained = build(spec)
    before = operating_point(split_scores(model_scorer(untrained, spec), store, Split.VALIDATION),
                             cfg.target_false_accepts_per_hour)
    assert metrics["val_fa_per_hour"] <= cfg.target_false_accepts_per_hour
    assert metrics["val_frr"] < before.frr, (metrics, before)
    for name in ("model.keras", "model_spec.json", "validation.json"):
        assert (tmp_path / "model" / name).is_file()
    assert md["file_sha256"]["model.keras"] and md["validation"]["best_step"] in (80, 160, 240, 320)
    import tensorflow as tf

    logs = checkpoint_dir(cfg, cfg.teachers[0], FeatureStoreLayout(root / "features")) / "tensorboard"
    tags = {v.tag for f in logs.glob("events.out.tfevents.*") for e in tf.compat.v1.train.summary_iterator(str(f))
            for v in e.summary.value}
    assert {"loss", "learning_rate", "step_time_s", "data_time_s", "val/frr", "val/fa_per_hour"} <= tags

    from mlflow.tracking import MlflowClient  # the stage's MLflow run holds the metrics and the model

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    tracked = client.get_run(md["mlflow_run_id"])
    assert tracked.info.status == "FINISHED" and tracked.info.run_name == f"teacher_training/{cfg.teachers[0].name}"
    assert tracked.data.metrics["val_frr"] == pytest.approx(metrics["val_frr"])
    assert len(client.get_metric_history(tracked.info.run_id, "eval_fa_per_hour")) == 4
    assert "model/model.keras" in {a.path for a in client.list_artifacts(tracked.info.run_id, "model")}


def test_a_killed_run_resumes_from_its_last_checkpoint(features, tmp_path):
    cfg, root = features
    cfg = load_config("smoke", overrides=SETS + [f"training.checkpoint_root={tmp_path / 'ck'}"])
    state = checkpoint_dir(cfg, cfg.teachers[1], FeatureStoreLayout(root / "features")) / "state.json"
    overrides = SETS + [f"training.checkpoint_root={tmp_path / 'ck'}"]
    script = ("import json, sys; from pathlib import Path; from components.common.config import load_config; "
              "from components.teacher_training.stage import run; a = json.loads(sys.argv[1]); "
              "run(Path(a['features']), Path(a['out']), load_config('smoke', overrides=a['sets']), 1, "
              "show_progress=False)")
    args = json.dumps({"features": str(root / "features"), "out": str(tmp_path / "killed"), "sets": overrides})
    proc = subprocess.Popen([sys.executable, "-c", script, args], cwd=os.getcwd(), start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not state.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert state.is_file(), "the training subprocess never wrote a checkpoint"
        os.killpg(proc.pid, signal.SIGKILL)  # killed mid-training, as a pre-empted pod would be
    finally:
        proc.wait(timeout=30)
    saved_step = json.loads(state.read_text())["step"]
    assert 0 < saved_step < cfg.training.total_steps
    md, _ = run(root / "features", tmp_path / "resumed", cfg, 1, show_progress=False)
    assert md["resumed_from_step"] >= saved_step
    history = json.loads((tmp_path / "resumed" / "validation.json").read_text())["history"]
    assert [h["step"] for h in history] == [80, 160, 240, 320]  # evaluations before the kill are kept


def test_batches_are_a_function_of_the_step(features):
    from components.common.config import EpochOrder
    from components.training.batches import TrainingBatches

    cfg, root = features
    store = FeatureStoreLayout(root / "features")
    a = TrainingBatches(store, cfg.training, cfg.augmentation.spec_augment, 100, 0)
    b = TrainingBatches(store, cfg.training, cfg.augmentation.spec_augment, 100, 0)
    assert np.array_equal(a.batch(7, 100).x, b.batch(7, 100).x)
    assert not np.array_equal(a.batch(7, 100).x, a.batch(8, 100).x)
    assert a.batch(0, 100).epoch == 0 and a.batch(99, 100).epoch == len(store.epochs(Split.TRAIN)) - 1
    epochs = len(store.epochs(Split.TRAIN))
    assert epochs > 1
    mixed = cfg.training.model_copy(update={"epoch_order": EpochOrder.INTERLEAVED})
    c = TrainingBatches(store, mixed, cfg.augmentation.spec_augment, 100, 0)
    assert [c.batch(s, 100).epoch for s in range(epochs + 1)] == [*range(epochs), 0]  # every range, in turn
    assert c.batch(99, 100).epoch == 99 % epochs


def test_a_trained_mixednet_quantizes_to_a_verified_esphome_model(features, tmp_path):
    """quantization stage (issue 5, in progress): the trained teacher becomes a .tflite + v2 manifest that
    passes every contract check, with measured parity and a calibrated cutoff."""
    from components.esphome_verification.contract import verify_contract
    from components.quantization.stage import run as quantize

    cfg, root = features
    run(root / "features", tmp_path / "model", cfg, 0, show_progress=False)  # resumes: already trained above
    md = quantize(tmp_path / "model", root / "features", tmp_path / "esphome", cfg)
    checks, generation = verify_contract(tmp_path / "esphome" / md["tflite"], tmp_path / "esphome" / md["manifest"])
    assert generation == "v2" and all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert md["parity"]["float_stream_vs_keras_max_abs"] < 1e-5
    assert md["parity"]["tflm_vs_float_mean_lsb"] < 8
    assert md["tensor_arena_size"] == md["tensor_arena_min_bytes"] + md["arena_margin_bytes"]
    manifest = json.loads((tmp_path / "esphome" / md["manifest"]).read_text())
    assert manifest["micro"]["probability_cutoff"] == md["probability_cutoff"]
    assert md["validation_at_cutoff"]["worst_condition_fa_per_hour"] <= cfg.target_false_accepts_per_hour
    from mlflow.tracking import MlflowClient

    tracked = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(md["mlflow_run_id"])
    assert tracked.info.run_name == "quantization" and tracked.data.metrics["tensor_arena_size"] == md["tensor_arena_size"]

    from components.esphome_verification.stage import run as verify  # behaviour on the device's path

    verdict = verify(tmp_path / "esphome", root / "features", tmp_path / "verify",
                     target_fa_per_hour=cfg.target_false_accepts_per_hour, max_frr=1.0)
    b = verdict.behaviour
    assert 0.0 <= b["frr"] <= 1.0 and b["positives"] > 0 and b["ambient_hours"] > 0
    assert b["cutoff"] == md["probability_cutoff"] and set(b["budgets"]) == {"0.1", "0.5", "1.0", "2.0"}
    worst = b["breakdown"]["worst_fa_per_hour"]  # the gate judges the worst condition, not the pooled rate
    assert verdict.blessed == (worst <= cfg.target_false_accepts_per_hour)
    assert "<img" in (tmp_path / "verify" / "report.html").read_text()


def test_the_worst_condition_checkpoint_rule_judges_every_eval_and_the_saved_model_by_it(features, tmp_path):
    """training.checkpoint_rule=worst_condition: each eval and the validation document are the operating point
    that rule gives, recomputed here on the saved model; the rule is part of the resumable state's key."""
    import keras

    from components.common.config import CheckpointRule
    from components.training.fit import validation_point

    cfg, root = features
    cfg = load_config("smoke", overrides=SETS + [f"training.checkpoint_root={tmp_path / 'ck'}",
                                                 "training.checkpoint_rule=worst_condition"])
    store = FeatureStoreLayout(root / "features")
    assert checkpoint_dir(cfg, cfg.teachers[0], store) != checkpoint_dir(
        cfg.model_copy(update={"training": cfg.training.model_copy(
            update={"checkpoint_rule": CheckpointRule.POOLED})}), cfg.teachers[0], store)
    _, metrics = run(root / "features", tmp_path / "model", cfg, 0, show_progress=False)
    doc = json.loads((tmp_path / "model" / "validation.json").read_text())
    assert doc["checkpoint_rule"] == "worst_condition" and len(doc["history"]) == 4
    saved = keras.models.load_model(tmp_path / "model" / "model.keras", compile=False)
    again = validation_point(model_scorer(saved, cfg.teachers[0]), store, cfg)
    assert (doc["frr"], doc["cutoff"]) == pytest.approx((again.frr, again.cutoff))
    best = next(h for h in doc["history"] if h["step"] == doc["best_step"])
    assert (best["frr"], best["cutoff"]) == pytest.approx((doc["frr"], doc["cutoff"]))
    assert metrics["val_cutoff"] == pytest.approx(doc["cutoff"])
