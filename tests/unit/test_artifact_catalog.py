"""The artifact catalog: `find` takes the main file or its folder, refuses ambiguity by naming every candidate,
says what a folder holds when the artifact is not there; each layout's writer and reader agree."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.common.artifacts import (CASCADE_FILE, CASCADE_SCHEMA, ArtifactError, BlessingLayout, EsphomeManifest,
                                         FeatureStoreLayout, HardNegativesLayout, Kind, Label, ManifestRecord,
                                         ModelInputError, ModelLayout, Split, find, read_blessing, read_cascade,
                                         read_json_object, write_jsonl)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models"


def _pair(folder: Path, name: str = "hey_jarvis") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = json.loads((FIXTURES / "v2" / "hey_jarvis.json").read_text())
    (folder / f"{name}.json").write_text(json.dumps({**doc, "model": f"{name}.tflite"}))
    shutil.copy(FIXTURES / "v2" / "hey_jarvis.tflite", folder / f"{name}.tflite")
    return folder


# -- find: the file itself or its folder ----------------------------------------------------------------------


def test_an_esphome_model_is_found_from_its_manifest_its_tflite_or_its_folder(tmp_path):
    d = _pair(tmp_path / "m")
    want = (d / "hey_jarvis.tflite", d / "hey_jarvis.json")
    for given in (d, d / "hey_jarvis.json", d / "hey_jarvis.tflite"):
        found = find(given, Kind.ESPHOME_MODEL)
        assert found.kind is Kind.ESPHOME_MODEL and found.pair == want
    assert find(d, Kind.MODEL).pair == want  # any model: the same pair


def test_ambiguity_names_every_candidate(tmp_path):
    d = _pair(_pair(tmp_path / "two"), "alexa")
    with pytest.raises(ModelInputError, match=r"holds 2 models \(alexa.json, hey_jarvis.json\); choose one by its "
                                              r"manifest"):
        find(d, Kind.ESPHOME_MODEL)
    with pytest.raises(ModelInputError, match=r"holds 2 models \(alexa.tflite, hey_jarvis.tflite\)"):
        find(d, Kind.MODEL)
    nested = tmp_path / "nested"  # a registry download: the models sit in sub-folders
    _pair(nested / "a")
    _pair(nested / "b")
    with pytest.raises(ModelInputError, match=r"holds 2 models \(a/hey_jarvis.tflite, b/hey_jarvis.tflite\)"):
        find(nested, Kind.MODEL, recursive=True)
    blessings = tmp_path / "verify"
    blessings.mkdir()
    for name in (BlessingLayout.VERDICT, BlessingLayout.PIPELINE):
        (blessings / name).write_text(json.dumps({"blessed": True}))
    with pytest.raises(ArtifactError, match=r"holds 2 blessings \(verdict.json, blessing\)"):
        find(blessings, Kind.BLESSING)


def test_a_missing_main_file_says_what_was_found(tmp_path):
    with pytest.raises(ModelInputError, match="nowhere: no such file or folder"):
        find(tmp_path / "nowhere", Kind.MODEL)
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    (d / "sub").mkdir()
    with pytest.raises(ModelInputError, match=r"no model.keras, .keras or .tflite file \(found notes.txt, sub/\)"):
        find(d, Kind.MODEL)
    with pytest.raises(ArtifactError, match=r"no blessing here \(no verdict.json or blessing or "
                                            r"verification/blessing.json; found notes.txt, sub/\)"):
        find(d, Kind.BLESSING)
    with pytest.raises(ArtifactError, match=r"no feature store here \(no metadata.json; found notes.txt, sub/\)"):
        find(d, Kind.FEATURE_STORE)
    (d / "m.tflite").write_bytes(b"x")
    with pytest.raises(ModelInputError, match="m.tflite without a manifest"):
        find(d, Kind.ESPHOME_MODEL)
    with pytest.raises(ModelInputError, match="notes.txt: neither a .tflite nor a .keras model"):
        find(d / "notes.txt", Kind.MODEL)
    keras_folder = tmp_path / "teacher"
    keras_folder.mkdir()
    (keras_folder / ModelLayout.MODEL).write_bytes(b"k")
    with pytest.raises(ModelInputError, match="a Keras model folder"):
        find(keras_folder, Kind.ESPHOME_MODEL)


def test_a_bare_tflite_is_a_model_without_a_manifest(tmp_path):
    d = tmp_path / "bare"
    d.mkdir()
    shutil.copy(FIXTURES / "v2" / "hey_jarvis.tflite", d / "m.tflite")
    found = find(d, Kind.MODEL)
    assert (found.kind, found.main, found.manifest, found.read_manifest()) == (Kind.ESPHOME_MODEL, d / "m.tflite",
                                                                              None, None)
    with pytest.raises(ModelInputError, match="no manifest beside it names it"):
        found.pair


def test_a_keras_model_folder_comes_before_the_tflite_beside_it(tmp_path):
    d = _pair(tmp_path / "both")
    (d / ModelLayout.MODEL).write_bytes(b"k")
    found = find(d, Kind.MODEL)
    assert (found.kind, found.main) == (Kind.KERAS_MODEL, d / ModelLayout.MODEL)
    assert find(d, Kind.KERAS_MODEL).main == d / ModelLayout.MODEL


# -- each layout: the writer, then the reader -----------------------------------------------------------------


def test_model_layout_round_trips(tmp_path):
    layout = ModelLayout(tmp_path)
    spec_doc = {"spec": {"name": "x"}, "features": {"stride_frames": 3}, "output": ModelLayout.OUTPUT_KIND,
                "wake_word": "hey jarvis"}
    layout.write_spec(spec_doc)
    layout.write_validation({"cutoff": 0.5, "frr": 0.1})
    assert layout.read_spec() == spec_doc and layout.read_validation()["cutoff"] == 0.5
    layout.validation.unlink()
    with pytest.raises(ModelInputError, match=f"validation.json is missing from {tmp_path}"):
        layout.read_validation()
    layout.spec.write_text("[1, 2]")
    with pytest.raises(ModelInputError, match="not a JSON object"):
        layout.read_spec()


def test_esphome_manifest_round_trips_and_reads_what_esphome_reads(tmp_path):
    m = EsphomeManifest(wake_word="Hey Jarvis", model="hey_jarvis.tflite", probability_cutoff=0.97,
                        sliding_window_size=5, tensor_arena_size=22860, minimum_esphome_version="2024.7.0",
                        author="wakeline", trained_languages=("en",))
    path = tmp_path / "hey_jarvis.json"
    m.write(path)
    back = EsphomeManifest.read(path)
    assert back == m and back.raw == m.to_doc() and back.path == path
    assert list(back.raw) == ["type", "wake_word", "author", "model", "trained_languages", "version", "micro"]
    assert (back.cutoff, back.window, back.arena, back.generation, back.languages) == (0.97, 5, 22860, "v2", ("en",))
    assert back.model_path == tmp_path / "hey_jarvis.tflite"
    official = EsphomeManifest.read(FIXTURES / "v2" / "hey_jarvis.json")
    assert (official.phrase, official.cutoff, official.arena, official.window) == ("Hey Jarvis", 0.97, 22860, 5)
    v1 = EsphomeManifest.read(FIXTURES / "v1" / "okay_nabu.json")  # the window under its v1 name
    assert v1.generation == "v1" and v1.window == v1.micro["sliding_window_average_size"]
    (tmp_path / "other.json").write_text(json.dumps({"float_stream_vs_keras_max_abs": 0.0}))
    with pytest.raises(ModelInputError, match="no `micro` section"):
        EsphomeManifest.read(tmp_path / "other.json")
    broken = EsphomeManifest.from_doc({"micro": {"tensor_arena_size": True, "probability_cutoff": 1.5}})
    assert (broken.arena, broken.cutoff, broken.window) == (None, None, None)


def test_blessing_round_trips_from_the_file_or_its_folder(tmp_path):
    verdict = {"blessed": True, "reasons": [], "checks": [{"name": "file_size", "found": 1}]}
    out = tmp_path / "verify"
    out.mkdir()
    (out / BlessingLayout.VERDICT).write_text(json.dumps(verdict))
    assert read_blessing(out) == read_blessing(out / BlessingLayout.VERDICT) == verdict
    artifact = tmp_path / "outputs" / BlessingLayout.PIPELINE  # the pipeline names the file after the output
    artifact.parent.mkdir()
    shutil.copy(out / BlessingLayout.VERDICT, artifact)
    assert find(artifact, Kind.BLESSING).main == artifact and read_blessing(artifact) == verdict


def test_hard_negatives_round_trip(tmp_path):
    layout = HardNegativesLayout(tmp_path)
    records = [ManifestRecord(layout.relative(layout.clip_path(Label.HARD_NEGATIVE, "ab" * 32)), Label.HARD_NEGATIVE,
                              Split.TRAIN, "", "mined", 1.0, "ab" * 32),
               ManifestRecord("clips/background/x.wav", Label.BACKGROUND, Split.TRAIN, "", "x", 1.0, "cd" * 32)]
    write_jsonl(layout.manifest, records)
    assert layout.read_hard_negatives() == records[:1]
    assert find(tmp_path, Kind.HARD_NEGATIVES).main == layout.manifest
    assert find(layout.manifest, Kind.DATASET).main == layout.manifest


def test_cascade_and_feature_store_round_trip(tmp_path):
    doc = {"schema": CASCADE_SCHEMA, "sentry": {"sha256": "ab"}}
    (tmp_path / CASCADE_FILE).write_text(json.dumps(doc))
    assert read_cascade(tmp_path) == read_cascade(tmp_path / CASCADE_FILE) == doc
    (tmp_path / CASCADE_FILE).write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(ArtifactError, match=r"not a cascade evaluation \(schema 'other/1'\)"):
        read_cascade(tmp_path)
    (tmp_path / FeatureStoreLayout.METADATA).write_text(json.dumps({"shards": 1}))
    main = find(tmp_path, Kind.FEATURE_STORE).main
    assert FeatureStoreLayout(main.parent).metadata() == read_json_object(main) == {"shards": 1}
    with pytest.raises(ArtifactError, match=f"{CASCADE_FILE}: not a feature store"):
        find(tmp_path / CASCADE_FILE, Kind.FEATURE_STORE)


def test_latest_published_is_the_complete_folder_latest_names(tmp_path):
    from components.common.artifacts import PublishedLayout, latest_published

    word = tmp_path / "hey-jarvis"
    word.mkdir()
    assert latest_published(word) is None  # nothing published yet
    (word / "abc").mkdir()
    (word / PublishedLayout.LATEST).write_text(json.dumps({"folder": "abc"}))
    with pytest.raises(ArtifactError, match="not a complete published model"):  # no COMPLETE marker yet
        latest_published(word)
    (word / "abc" / PublishedLayout.COMPLETE).write_text("{}")
    assert latest_published(word) == word / "abc"
    (word / PublishedLayout.LATEST).write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="not a JSON object"):
        latest_published(word)
