"""background_mining on a tiny real Dataset with planted confusable phrases: the probe and the official
hey_jarvis model find them at the right offsets and find nothing in silence or noise; sessions resume and grow;
validation and test audio is never read; a previous model from a path, S3 or MLflow is the scorer."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.background_mining import miner
from components.background_mining.stage import REPORT_HTML, REPORT_JSON, run
from components.common.artifacts import DatasetLayout, Label, ManifestRecord, Split, sha256_file, write_jsonl
from components.common.audio import read_wav_int16, resample, write_wav
from components.common.config import load_config
from components.data_prep.stage import run as data_prep

pytestmark = pytest.mark.slow  # synthesises a dataset (data_prep, piper, espeak) and trains the mining probe

SR = 16_000
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models" / "v2"
TINY = ["data_prep.positives.piper_clips=0", "data_prep.positives.espeak_clips=30",
        "data_prep.adversarial.piper_clips=0", "data_prep.adversarial.espeak_clips=8",
        "data_prep.speech.piper_clips=0", "data_prep.speech.espeak_clips=10", "data_prep.min_usable_positives=10",
        "data_prep.ambient.synthetic_duration_s=60", "data_prep.ambient.file_duration_s=10",
        "data_prep.ambient.kinds=[noise]", "data_prep.rirs.count=0"]
MINING = ["mining.chunk_s=5", "mining.top_k_per_hour=240"]
# (text, engine, end of the phrase in the planted recording): a voice the training clips never use
PLANTED = [("hey marvis", "espeak", 8.6), ("hey travis", "piper", 21.3)]


def config(session_root: Path, *extra: str):
    return load_config("smoke", overrides=[*TINY, *MINING, f"mining.session_root={session_root}", *extra])


def _speech(text: str, engine: str) -> np.ndarray:
    if engine == "piper":
        from components.synthesis.piper_tts import PiperJob, synthesize_many

        pcm, sr = next(synthesize_many([PiperJob(text, 1.0, 0.667, 0.8)], seed=0))
    else:
        from components.synthesis.espeak import EspeakJob, synthesize_many

        pcm, sr = next(synthesize_many([EspeakJob(text, "en-us+m7", 160, 50, 1)], 1))
    return resample(pcm.astype(np.float32) / 32768, sr)


def _noise(seconds: float, seed: int, dbfs: float) -> np.ndarray:
    from components.synthesis.ambient import coloured_noise

    x = coloured_noise(int(seconds * SR), np.random.default_rng(seed))  # at -20 dBFS
    return x * 10 ** ((dbfs + 20) / 20)


def _add_background(layout: DatasetLayout, name: str, samples: np.ndarray,
                    split: Split = Split.TRAIN) -> ManifestRecord:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    sha = hashlib.sha256(pcm.tobytes()).hexdigest()
    path = layout.clip_path(Label.BACKGROUND, sha)
    write_wav(path, pcm)
    record = ManifestRecord(layout.relative(path), Label.BACKGROUND, split, f"test:{name}", "user",
                            round(len(pcm) / SR, 4), sha, None, f"test:{name}")
    write_jsonl(layout.manifest, sorted([*layout.read_manifest(), record],
                                        key=lambda r: (r.label.value, r.split.value, r.path)))
    return record


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """data_prep's tiny Dataset plus three training recordings: confusable phrases in quiet noise, digital
    silence, and noise alone."""
    root = tmp_path_factory.mktemp("mining")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    cfg = config(root / "sessions")
    data_prep(root / "dataset", cfg, show_progress=False)
    layout = DatasetLayout(root / "dataset")
    bed = _noise(30.0, 1, -42.0)
    for text, engine, end in PLANTED:
        x = _speech(text, engine)
        bed[int(end * SR) - len(x):int(end * SR)] += x * 0.5
    records = {"planted": _add_background(layout, "planted", bed),
               "silence": _add_background(layout, "silence", np.zeros(20 * SR)),
               "noise": _add_background(layout, "noise", _noise(20.0, 2, -30.0))}
    yield root, layout, records
    mp.undo()


def _with_probe(src_sessions: Path, dst_sessions: Path) -> None:
    """Give a new session root the probe an earlier run trained (so only the scan starts fresh)."""
    shutil.copytree(src_sessions / "probes", dst_sessions / "probes")


@pytest.fixture(scope="module")
def first_run(planted):
    root, layout, records = planted
    cfg = config(root / "sessions")
    md = run(layout.root, root / "out", cfg, report_path=root / "report" / "report.html", show_progress=False)
    return md, json.loads((root / "out" / REPORT_JSON).read_text())


def test_the_probe_finds_the_planted_phrases_and_nothing_in_silence_or_noise(planted, first_run):
    root, layout, records = planted
    md, report = first_run
    assert md["probe_trained"] and md["scorer"]["kind"] == "probe" and report["probe"]["training_clips"] > 20
    per_file = {f["path"]: f["hits"] for f in report["files"]}
    assert per_file[records["silence"].path] == 0 and per_file[records["noise"].path] == 0
    planted_hits = [h for h in report["hits"] if h["file"] == records["planted"].path]
    for text, _, end in PLANTED:  # each phrase is a hit that ends where the phrase ends
        assert min(abs(h["end_s"] - end) for h in planted_hits) < 0.3, (text, planted_hits)
    kept = [h for h in report["kept"] if h["file"] == records["planted"].path]
    assert len(kept) >= 2 and all(h["score"] > 0.5 for h in report["kept"])
    # only the training split's recordings were scanned, every one of them
    train_bg = [r for r in layout.read_manifest() if r.label is Label.BACKGROUND and r.split is Split.TRAIN]
    assert sorted(f["path"] for f in report["files"]) == sorted(r.path for r in train_bg)
    hours = sum(r.duration_s for r in train_bg) / 3600
    assert md["hours_scanned"] == pytest.approx(hours, abs=1e-5)
    assert report["summary"]["top_k"] == int(np.ceil(240 * hours - 1e-9)) == md["top_k"]
    assert report["summary"]["windows_scored"] == sum(report["histogram"]["counts"]) > 0
    # how long the probe takes to train is a benchmark figure (probe_train_s, benchmarks/mining.py), not a test
    assert sum(report["hit_histogram"]["counts"]) == md["hits"] == len(report["hits"])


def test_the_hard_negatives_are_a_dataset_of_clips_ending_at_the_hits(planted, first_run):
    root, layout, records = planted
    md, report = first_run
    out = DatasetLayout(root / "out")
    manifest = out.read_manifest()
    assert len(manifest) == md["hard_negatives"] == md["clips"] == len(report["kept"]) > 0
    assert md["manifest_sha256"] == sha256_file(out.manifest) == md["file_sha256"]["manifest.jsonl"]
    by_clip = {h["clip"]: h for h in report["kept"]}
    for r in manifest:
        assert (r.label, r.split, r.voice, r.source) == (Label.HARD_NEGATIVE, Split.TRAIN, "mined", "mining")
        h = by_clip[r.path]
        assert r.origin == f"{h['file']}@{h['start_s']:.3f}"
        clip = read_wav_int16(out.root / r.path)
        source = read_wav_int16(layout.root / h["file"])
        start = int(round(h["start_s"] * SR))
        np.testing.assert_array_equal(clip, source[start:start + len(clip)])
        assert len(clip) == int(1.5 * SR) and r.duration_s == 1.5
        assert r.sha256 == hashlib.sha256(clip.tobytes()).hexdigest()
        assert h["end_s"] - h["start_s"] == pytest.approx(1.5)
    assert json.loads(out.summary.read_text()) == {k: v for k, v in md.items() if k != "mlflow_run_id"}
    assert md["input_sha256"] == {"dataset_manifest": sha256_file(layout.manifest)}
    assert md["config_sha256"] == config(root / "sessions").sha256()
    page = (root / "report" / "report.html").read_text()
    assert page == (out.root / REPORT_HTML).read_text()
    assert "data:image/png;base64," in page and "<audio" in page and records["planted"].path in page

    from mlflow.tracking import MlflowClient

    tracked = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(md["mlflow_run_id"])
    assert tracked.info.status == "FINISHED" and tracked.info.run_name == "background_mining"
    assert tracked.data.metrics["hits"] == md["hits"]
    assert tracked.data.metrics["hours_scanned"] == pytest.approx(md["hours_scanned"])
    assert tracked.data.params["scorer.identity"] == md["scorer"]["identity"]


def test_interrupted_and_resumed_equals_one_uninterrupted_run_and_new_audio_is_scanned_alone(planted, first_run,
                                                                                             tmp_path):
    root, layout, _ = planted
    md0, report0 = first_run
    for name in ("a", "b"):
        _with_probe(root / "sessions", tmp_path / name)
    whole = run(layout.root, tmp_path / "whole", config(tmp_path / "a"), workers=1, show_progress=False)
    assert not whole["probe_trained"] and whole["session"]["chunks_reused"] == 0
    with pytest.raises(miner.ScanInterrupted):
        run(layout.root, tmp_path / "cut", config(tmp_path / "b"), workers=2, stop_after_chunks=5,
            show_progress=False)
    resumed = run(layout.root, tmp_path / "resumed", config(tmp_path / "b"), workers=2, show_progress=False)
    assert resumed["session"]["chunks_reused"] >= 5 and not resumed["session"]["created"]
    assert resumed["session"]["chunks_reused"] + resumed["session"]["chunks_scanned"] == \
        whole["session"]["chunks_total"] == whole["session"]["chunks_scanned"]
    want = json.loads((tmp_path / "whole" / REPORT_JSON).read_text())
    got = json.loads((tmp_path / "resumed" / REPORT_JSON).read_text())
    for key in ("kept", "hits", "histogram", "hit_histogram", "summary", "files"):
        assert got[key] == want[key] == report0[key], key
    assert sha256_file(tmp_path / "resumed" / "manifest.jsonl") == sha256_file(tmp_path / "whole" / "manifest.jsonl")

    again = run(layout.root, tmp_path / "again", config(tmp_path / "b"), show_progress=False)  # nothing left to do
    assert again["session"]["chunks_scanned"] == 0 and again["manifest_sha256"] == whole["manifest_sha256"]

    # audio added later: only the new recording is scanned
    grown = tmp_path / "grown"
    shutil.copytree(layout.root, grown)
    bed = _noise(12.0, 3, -42.0)
    x = _speech("hey marvis", "espeak")
    bed[int(9.0 * SR) - len(x):int(9.0 * SR)] += x * 0.5
    new = _add_background(DatasetLayout(grown), "later", bed)
    more = run(grown, tmp_path / "more", config(tmp_path / "b"), show_progress=False)
    assert more["session"]["chunks_scanned"] == 3  # 12 s in 5 s chunks
    assert more["session"]["chunks_reused"] == whole["session"]["chunks_total"]
    later = json.loads((tmp_path / "more" / REPORT_JSON).read_text())
    assert any(h["file"] == new.path and abs(h["end_s"] - 9.0) < 0.3 for h in later["hits"])


def test_validation_and_test_background_audio_is_never_read(planted, first_run, tmp_path):
    root, layout, _ = planted
    copy = tmp_path / "dataset"
    shutil.copytree(layout.root, copy)
    held_out = [r for r in layout.read_manifest() if r.label is Label.BACKGROUND and r.split is not Split.TRAIN]
    assert {r.split for r in held_out} == {Split.VALIDATION, Split.TEST}
    for r in held_out:  # gone: reading one would fail the run
        (copy / r.path).unlink()
    _with_probe(root / "sessions", tmp_path / "sessions")
    md = run(copy, tmp_path / "out", config(tmp_path / "sessions"), show_progress=False)
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    assert not {r.path for r in held_out} & {f["path"] for f in report["files"]}
    scanned = {p.stem for p in (Path(md["session"]["dir"]) / "files").glob("*.jsonl")}
    assert scanned == {f["sha256"] for f in report["files"]} and not scanned & {r.sha256 for r in held_out}
    assert md["manifest_sha256"] == first_run[0]["manifest_sha256"]


def test_a_previous_model_is_the_scorer_and_finds_its_own_false_accepts(planted, tmp_path):
    """The official hey_jarvis model (the 'deployed' model) fires on the planted 'hey travis'; no probe is trained."""
    root, layout, records = planted
    model_dir = tmp_path / "deployed"
    model_dir.mkdir()
    for name in ("hey_jarvis.tflite", "hey_jarvis.json"):
        shutil.copy(FIXTURES / name, model_dir / name)
    sessions = tmp_path / "sessions"
    md = run(layout.root, tmp_path / "out", config(sessions, f"mining.previous_model={model_dir}"),
             show_progress=False)
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    identity = f"tflite:{sha256_file(FIXTURES / 'hey_jarvis.tflite')}"
    assert md["scorer"]["kind"] == "tflite" and md["scorer"]["identity"] == identity == report["scorer"]["identity"]
    assert md["scorer"]["source"] == str(model_dir) and not md["probe_trained"] and report["probe"] is None
    assert not (sessions / "probes").exists()
    assert md["input_sha256"]["previous_model"] == identity.split(":")[1]
    hits = [h for h in report["hits"] if h["file"] == records["planted"].path]
    assert any(abs(h["end_s"] - 21.3) < 0.3 for h in hits), hits  # "hey travis" (piper)
    per_file = {f["path"]: f["hits"] for f in report["files"]}
    assert per_file[records["silence"].path] == 0 and per_file[records["noise"].path] == 0


def test_a_previous_model_on_s3_is_the_same_scorer_and_session(planted, tmp_path, seaweedfs_s3, monkeypatch):
    root, layout, _ = planted
    client = seaweedfs_s3.client()
    client.make_bucket("deployed-models")
    client.fput_object("deployed-models", "hey_jarvis/v3/hey_jarvis.tflite", str(FIXTURES / "hey_jarvis.tflite"))
    client.fput_object("deployed-models", "hey_jarvis/v3/hey_jarvis.json", str(FIXTURES / "hey_jarvis.json"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs_s3.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs_s3.secret_key)
    monkeypatch.setenv("AWS_REGION", seaweedfs_s3.region)
    sessions = tmp_path / "sessions"
    local = run(layout.root, tmp_path / "local",
                config(sessions, f"mining.previous_model={FIXTURES / 'hey_jarvis.tflite'}"), show_progress=False)
    for i, uri in enumerate(["s3://deployed-models/hey_jarvis/v3/hey_jarvis.tflite",
                             "s3://deployed-models/hey_jarvis/v3"]):  # one object, or the folder with its manifest
        md = run(layout.root, tmp_path / f"s3-{i}", config(sessions, f"mining.previous_model={uri}"),
                 show_progress=False)
        assert md["scorer"]["identity"] == local["scorer"]["identity"] and md["scorer"]["source"] == uri
        assert md["session"]["key"] == local["session"]["key"] and md["session"]["chunks_scanned"] == 0
        assert md["manifest_sha256"] == local["manifest_sha256"]


def test_a_previous_keras_model_from_the_mlflow_registry(planted, tmp_path):
    """teacher_training's model directory logged to MLflow: `runs:/` and `models:/name@alias` give the same
    scorer (the NumPy MixedNet of that model), identified by the weights' sha256."""
    import keras
    from mlflow.tracking import MlflowClient

    from components.training.models import build
    from components.common.tracking import tracking_uri

    root, layout, _ = planted
    spec = config(root).mining.probe.model_copy(update={"name": "deployed"})
    keras.utils.set_random_seed(3)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build(spec).save(model_dir / "model.keras")
    (model_dir / "model_spec.json").write_text(json.dumps({"spec": spec.model_dump(mode="json"),
                                                           "features": {"stride_frames": spec.stride}}))
    client = MlflowClient(tracking_uri())  # the module's sqlite store (MLFLOW_TRACKING_URI)
    exp = client.create_experiment("deployed-models", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(model_dir), "model")
    client.set_terminated(run_id)
    client.create_registered_model("wakeline-hey-jarvis")
    version = client.create_model_version("wakeline-hey-jarvis", f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias("wakeline-hey-jarvis", "production", version.version)

    identity = f"keras:{sha256_file(model_dir / 'model.keras')}"
    sessions = tmp_path / "sessions"
    seen = []
    for uri in (f"runs:/{run_id}/model", "models:/wakeline-hey-jarvis@production", str(model_dir)):
        md = run(layout.root, tmp_path / f"out-{len(seen)}", config(sessions, f"mining.previous_model={uri}"),
                 show_progress=False)
        assert md["scorer"]["identity"] == identity and md["scorer"]["kind"] == "keras"
        assert md["scorer"]["window_frames"] == spec.input_frames and md["scorer"]["stride_frames"] == spec.stride
        seen.append(md["session"]["chunks_scanned"])
    assert seen[0] > 0 and seen[1:] == [0, 0]  # the same model whatever the URI: the same session
    assert not (sessions / "probes").exists()


def test_no_training_background_gives_an_empty_dataset_and_a_report(planted, first_run, tmp_path):
    root, layout, _ = planted
    copy = tmp_path / "dataset"
    shutil.copytree(layout.root, copy)
    kept = [r for r in layout.read_manifest() if not (r.label is Label.BACKGROUND and r.split is Split.TRAIN)]
    write_jsonl(DatasetLayout(copy).manifest, kept)
    _with_probe(root / "sessions", tmp_path / "sessions")
    md = run(copy, tmp_path / "out", config(tmp_path / "sessions"), show_progress=False)
    assert md["hard_negatives"] == md["hits"] == md["hours_scanned"] == md["top_k"] == 0
    assert DatasetLayout(tmp_path / "out").read_manifest() == []
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())
    assert report["files"] == [] and report["kept"] == [] and sum(report["histogram"]["counts"]) == 0
    assert "<h1>Background mining</h1>" in (tmp_path / "out" / REPORT_HTML).read_text()


def test_speech_streams_are_built_from_training_speech_alone_and_mined(planted, first_run, tmp_path):
    from components.background_mining.stage import condition_streams

    root, layout, _ = planted
    copy = tmp_path / "dataset"
    shutil.copytree(layout.root, copy)
    held_out = [r for r in layout.read_manifest() if r.split is not Split.TRAIN]
    assert {r.label for r in held_out} >= {Label.NEGATIVE, Label.BACKGROUND}
    for r in held_out:  # gone: building a stream from validation or test speech would fail the run
        (copy / r.path).unlink()
    kinds = "data_prep.conditions.kinds=[clean_speech,telephone_speech,far_field_speech]"
    cfg = config(tmp_path / "sessions", kinds, "mining.condition_stream_duration_s=20", "mining.threshold=0.05")
    _with_probe(root / "sessions", tmp_path / "sessions")
    md = run(copy, tmp_path / "out", cfg, show_progress=False)
    report = json.loads((tmp_path / "out" / REPORT_JSON).read_text())

    streams = {f["path"]: f for f in report["files"] if f["source"].startswith("condition-train:")}
    assert sorted(streams) == ["condition-train/clean_speech.wav", "condition-train/telephone_speech.wav"]
    assert all(f["duration_s"] == 20.0 for f in streams.values())
    # no training room impulse responses in this dataset (data_prep.rirs.count=0): far-field is skipped, said why
    assert md["speech_streams"]["conditions"] == ["condition-train:clean_speech", "condition-train:telephone_speech"]
    assert len(md["speech_streams"]["skipped"]) == 1 and "far_field_speech" in md["speech_streams"]["skipped"][0]
    assert md["hours_scanned"] == pytest.approx(first_run[0]["hours_scanned"] + 40 / 3600, abs=1e-5)

    # the kept clips from a stream are its audio, ending at the hit: the stream is a function of dataset and seed
    again, _ = condition_streams(DatasetLayout(copy), cfg, tmp_path / "again")
    audio = {rec.path: read_wav_int16(rec.local) for rec, _ in again}
    assert {rec.path: rec.sha256 for rec, _ in again} == {p: f["sha256"] for p, f in streams.items()}
    from_streams = [h for h in report["kept"] if h["file"] in streams]
    assert from_streams and md["speech_streams"]["hits"] >= len(from_streams)
    out = DatasetLayout(tmp_path / "out")
    for h in from_streams:
        start = int(round(h["start_s"] * SR))
        clip = read_wav_int16(out.root / h["clip"])
        np.testing.assert_array_equal(clip, audio[h["file"]][start:start + len(clip)])
