"""The cascade stage on real parts: a tiny feature store of piper speech and noise through the device frontend,
the official hey_jarvis INT8 model in TFLite-Micro as the sentry, and real Keras MixedNet teachers saved as Model
directories (loaded by `load_judge`, scored by the NumPy MixedNet). The teachers' weights are set, not trained,
so their verdicts are known: one accepts every segment, the other rejects every segment."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.cascade_evaluation.stage import REPORT_FILE, run, run_stage
from components.common.artifacts import CASCADE_FILE, CASCADE_SCHEMA as SCHEMA
from components.common.artifacts import EsphomeManifest, FeatureSetWriter, FeatureStoreLayout, Label, sha256_file
from components.common.config import JudgeChoice, load_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models" / "v2"
SR = 16_000
# slow: synthesises speech with piper. MLflow 3.17's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1
# deprecates: third-party noise.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")]


def _speech(texts: list[str], seed: int) -> list[np.ndarray]:
    from components.common.audio import resample, to_int16
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    jobs = [PiperJob(text, length, 0.667, 0.8) for text, length in texts]
    return [to_int16(resample(pcm.astype(np.float32) / 32768, sr)) for pcm, sr in synthesize_many(jobs, seed=seed)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """validation and test, each: epoch-000, four "hey jarvis" clips (1 s before the word, 1 s after, as evaluation clips have a tail)
    and one negative; ambient, 40 s of quiet noise with the wake word and two confusers spoken into it."""
    from components.common.frontend import features_uint16

    root = tmp_path_factory.mktemp("cascade-store") / "features"
    words = _speech([("hey jarvis", 1.0), ("hey jarvis", 1.15), ("hey, jarvis!", 0.9), ("hey jarvis", 1.25),
                     ("turn on the lights", 1.0), ("hey jarvis", 1.0), ("hey travis", 1.0), ("jars of jam", 1.0)],
                    seed=3)
    rng = np.random.default_rng(0)
    noise = lambda seconds: rng.normal(0, 60, int(seconds * SR))  # noqa: E731 - about -55 dBFS
    for split in ("validation", "test"):  # the operating point is chosen on validation, measured on test
        clips = FeatureSetWriter(root / split / "epoch-000")
        for i, word in enumerate(words[:5]):
            audio = np.concatenate([noise(1.0), word + noise(len(word) / SR), noise(1.0)])
            clips.add(features_uint16(np.clip(audio, -32768, 32767).astype(np.int16)),
                      Label.POSITIVE if i < 4 else Label.NEGATIVE, 1.0, {"i": i})
        clips.close()
        ambient = noise(40.0)
        for at_s, word in zip((8.0, 20.0, 31.0), words[5:]):
            ambient[int(at_s * SR):int(at_s * SR) + len(word)] += word
        background = FeatureSetWriter(root / split / "ambient")
        background.add(features_uint16(np.clip(ambient, -32768, 32767).astype(np.int16)), Label.BACKGROUND, 1.0,
                       {})
        background.close()
    (root / "metadata.json").write_text(json.dumps({"frames_per_clip": 0, "shards": 1}))
    return root


def _teacher(folder: Path, spec, bias: float) -> Path:
    """A Model directory as fit.py lays it out; a zero head kernel and `bias` fix the output at sigmoid(bias)."""
    from components.common.artifacts import ModelLayout
    from components.training.fit import feature_config
    from components.training.models import build

    model = build(spec)
    head = model.get_layer("probability")
    kernel, _ = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.array([bias], np.float32)])
    folder.mkdir(parents=True)
    layout = ModelLayout(folder)
    model.save(layout.model)
    layout.write_spec({"spec": spec.model_dump(mode="json"), "features": feature_config(spec),
                       "output": ModelLayout.OUTPUT_KIND, "wake_word": "hey jarvis"})
    layout.write_validation({"cutoff": 0.5, "frr": 0.0, "fa_per_hour": 0.0})
    return folder


@pytest.fixture(scope="module")
def parts(tmp_path_factory, store):
    root = tmp_path_factory.mktemp("cascade-parts")
    config = load_config("smoke")
    sentry = root / "tflite_model"
    sentry.mkdir()
    for suffix in (".tflite", ".json"):
        shutil.copy(FIXTURES / f"hey_jarvis{suffix}", sentry)
    accept = _teacher(root / "teacher_a", config.teachers[0], 200.0)  # sigmoid = 1.0: every segment accepted
    reject = _teacher(root / "teacher_b", config.teachers[0].model_copy(update={"name": "rejecting"}), -200.0)
    return config, sentry, accept, reject


def test_an_accepting_judge_gives_the_sentry_alone_as_verification_measures_it(parts, store, tmp_path):
    from components.runtime.evaluate import EvalAudio, behaviour
    from components.common.artifacts import Split

    config, sentry, accept, _ = parts
    doc = run(config, sentry, accept, store, tmp_path)
    assert json.loads((tmp_path / CASCADE_FILE).read_text()) == json.loads(json.dumps(doc))
    assert doc["schema"] == SCHEMA and doc["sentry"]["sha256"] == sha256_file(sentry / "hey_jarvis.tflite")
    assert doc["judge"]["role"] == "teacher_a" and doc["judge"]["sha256"] == sha256_file(accept / "model.keras")
    assert doc["judge"]["kind"] == "keras" and doc["judge"]["name"] == "mixednet-small"
    assert doc["positives"] == 4 and doc["ambient_hours"] == pytest.approx(40 / 3600, rel=0.01)
    assert doc["sentry_cutoffs"][-1] == doc["shipped_cutoff"] == 0.97 and doc["sentry_cutoffs"][0] == 0.12
    assert len(doc["grid"]) == len(doc["sentry_cutoffs"]) * len(doc["judge_cutoffs"]) == 18 * 20
    # the sentry alone at the shipped cutoff is what verification reports for this model and audio
    manifest = EsphomeManifest.read(sentry / "hey_jarvis.json")
    verified, _, _ = behaviour(sentry / "hey_jarvis.tflite", EvalAudio.from_store(FeatureStoreLayout(store),
                                                                                  Split.TEST), manifest)
    alone = doc["sentry_alone"]
    assert (alone["frr"], alone["false_accepts"]) == (verified["frr"], verified["false_accepts"])
    assert alone["frr"] < 1.0  # the official model hears piper's "hey jarvis"
    sentry_by_cutoff = {p["cutoff"]: p for p in doc["sentry_points"]}
    for p in doc["grid"]:  # a judge that accepts everything changes nothing
        s = sentry_by_cutoff[p["sentry_cutoff"]]
        assert (p["frr"], p["false_accepts"]) == (s["frr"], s["false_accepts"])
    # the spoken "hey jarvis" in the ambient audio (and a confuser) fire even at the shipped cutoff: 180 FA/h
    assert all(p["false_accepts"] == 2 for p in doc["sentry_points"]) and alone["fa_per_hour"] > 100
    assert doc["judged_segments"] >= 2 + 4  # at least one onset per positive clip and per ambient activation
    # with a judge that accepts everything, nothing meets the target, and nothing is gained
    assert doc["chosen"] is None and doc["operating_point"] is None
    assert doc["chosen_reason"].startswith("on validation: no grid point meets the FA/h target 2 (lowest cascade FA/h 180")
    assert (doc["fa_per_hour_reduction"], doc["reduction_kind"]) == (pytest.approx(1.0), "ratio")
    report = (tmp_path / REPORT_FILE).read_text()
    assert "<h1>Cascade evaluation</h1>" in report and "data:image/png;base64," in report
    assert "sentry alone (shipped cutoff)" in report and "fresh frontend" in report
    assert "No cascade operating point was chosen" in report and "cuts false accepts 1.0-fold" in report


def test_the_pipeline_view_takes_the_configured_judge_and_writes_metadata_and_metrics(parts, store, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config, sentry, accept, reject = parts
    config = config.model_copy(update={"cascade": config.cascade.model_copy(update={"judge": JudgeChoice.TEACHER_B})})
    result = run_stage({"tflite_model": sentry, "teacher_a": accept, "teacher_b": reject, "features": store},
                       {"cascade": tmp_path / "out" / "cascade", "report": tmp_path / "out" / "report"}, config)
    metadata, metrics = result.metadata["cascade"], result.scalars
    doc = json.loads((tmp_path / "out" / "cascade").read_text())
    assert doc["judge"]["role"] == "teacher_b" and doc["judge"]["sha256"] == sha256_file(reject / "model.keras")
    assert all(p["frr"] == 1.0 and p["false_accepts"] == 0 for p in doc["grid"])  # it rejects everything
    # every point meets the FA/h target at FRR 1: the highest sentry cutoff, the middle of the judge cutoffs
    assert doc["operating_point"] == {"sentry_cutoff": 0.97, "judge_cutoff": 0.45, "judge_context_s": 2.0,
                                      "judge_after_s": 0.3, "judge": "judge/", "frr": 1.0, "fa_per_hour": 0.0}
    assert doc["fa_per_hour_reduction"] is None and doc["reduction_kind"] == "undefined"
    assert "no cascade point keeps the FRR at or below the sentry's 25.0%" in doc["reduction_reason"]
    assert "<h1>Cascade evaluation</h1>" in (tmp_path / "out" / "report").read_text()
    assert metadata["file_sha256"] == {CASCADE_FILE: sha256_file(tmp_path / "out" / "cascade")}
    assert metadata["input_sha256"] == {"tflite_model": sha256_file(sentry / "hey_jarvis.tflite"),
                                        "judge_model": sha256_file(reject / "model.keras"),
                                        "features_metadata": sha256_file(store / "metadata.json")}
    assert metadata["judge"] == "teacher_b" and metadata["config_sha256"] == config.sha256()
    assert metrics["cascade_frr"] == 1.0 and metrics["cascade_fa_per_hour"] == 0.0
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"sentry_frr", "sentry_fa_per_hour", "cascade_sentry_cutoff", "cascade_judge_cutoff"} <= set(metrics)
    assert "fa_per_hour_reduction" not in metrics  # undefined here: left out, not NaN
