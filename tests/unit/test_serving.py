"""The pieces of `wakeline serve` without a server: the incremental device detector against the batch rule
(`metrics.activations`), the streaming frontend, converter and TFLite-Micro stream against their one-shot
counterparts, model discovery in a store, the HTTP answers, the ESPHome snippet and the settings."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from components.common.audio import resample, to_int16
from components.common.frontend import features_uint16, n_frames
from components.common.metrics import DetectorSettings, activations
from components.judge.audio import PcmFormat, StreamConverter, to_judge_input
from components.runtime.tflm import TflmStreamer
from components.serving.catalog import CatalogError, discover, esphome_config
from components.serving.server import ModelFiles, ServeSettings, wake_info
from components.serving.stream import DeviceDetector, DeviceStream, FeatureStream, ModelStream
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "esphome-models" / "v2"
SR = 16_000


def make_store(root: Path, words: tuple[str, ...] = ("hey_jarvis",)) -> Path:
    """A store as `publish` lays it out: <slug>/latest.json naming <digest>/ with the pair and published.json."""
    from components.common.artifacts import sha256_file

    for word in words:
        digest = sha256_file(MODELS / f"{word}.tflite")[:16]
        folder = root / word.replace("_", "-") / digest
        folder.mkdir(parents=True)
        for ext in ("json", "tflite"):
            shutil.copy(MODELS / f"{word}.{ext}", folder / f"{word}.{ext}")
        (folder / "published.json").write_text(json.dumps({"sha256": sha256_file(folder / f"{word}.tflite")}))
        (folder.parent / "latest.json").write_text(json.dumps({"folder": digest}))
    return root


def make_cascade_store(root: Path, sentry_cutoff: float = 0.5, judge_cutoff: float = 0.5, context_s: float = 2.0,
                       after_s: float = 0.3, judge: str = "hey_jarvis") -> Path:
    """A store whose hey_jarvis was published with a cascade, as publish lays it out: cascade.json (the schema,
    the sentry's sha256, the operating point) and the judge under judge/. The judge here is an official model
    (`judge`, a .tflite + its manifest), which `load_judge` opens as it opens a teacher."""
    from components.common.artifacts import CASCADE_FILE, CASCADE_SCHEMA, sha256_file

    make_store(root)
    folder = next((root / "hey-jarvis").glob("*/published.json")).parent
    (folder / "judge").mkdir()
    for ext in ("json", "tflite"):
        shutil.copy(MODELS / f"{judge}.{ext}", folder / "judge" / f"{judge}.{ext}")
    point = {"sentry_cutoff": sentry_cutoff, "judge_cutoff": judge_cutoff, "judge_context_s": context_s,
             "judge_after_s": after_s, "judge": "judge/", "frr": 0.0, "fa_per_hour": 0.0}
    (folder / CASCADE_FILE).write_text(json.dumps({
        "schema": CASCADE_SCHEMA, "wake_word": "hey jarvis", "operating_point": point,
        "sentry": {"tflite": "hey_jarvis.tflite", "sha256": sha256_file(folder / "hey_jarvis.tflite")}}))
    return root


@pytest.mark.parametrize("window,refractory,cutoff", [(5, 100, 0.9), (3, 9, 0.5), (1, 0, 0.7), (5, 30, 0.97)])
def test_the_incremental_detector_fires_where_the_batch_rule_does(window, refractory, cutoff):
    rng = np.random.default_rng(window * 1000 + refractory)
    settings = DetectorSettings(sliding_window=window, stride_frames=3, refractory_slices=refractory)
    # bursts of high outputs in low noise: detections, refractory periods and re-arming all happen
    probs = rng.integers(0, 120, 3000)
    for start in rng.integers(0, 2990, 60):
        probs[start:start + rng.integers(1, 12)] = rng.integers(200, 256)
    probs = probs.astype(np.uint8)
    expected = activations(probs, cutoff, settings, quantized=True)
    detector = DeviceDetector(cutoff, settings)
    got = [i for i, p in enumerate(probs) if detector.push(int(p)) is not None]
    assert len(expected) > 5
    assert got == expected.tolist()


def _noise(seconds: float, seed: int) -> np.ndarray:
    from components.synthesis.ambient import coloured_noise

    return to_int16(coloured_noise(int(seconds * SR), np.random.default_rng(seed)))


def test_streamed_features_equal_the_one_shot_frontend():
    audio = _noise(2.0, 3)
    stream = FeatureStream()
    sizes = np.random.default_rng(4).integers(1, 2000, 100)
    pieces, pos = [], 0
    for n in sizes:
        pieces.append(stream.feed(audio[pos:pos + n]))
        pos += n
    pieces.append(stream.feed(audio[pos:]))
    np.testing.assert_array_equal(np.concatenate(pieces), features_uint16(audio))


def test_the_streaming_converter_passes_native_audio_through_and_resamples_others_like_the_judge():
    audio = _noise(1.0, 5)
    native = StreamConverter(PcmFormat(16_000, 2, 1))
    out = np.concatenate([native.feed(audio.tobytes()[i:i + 333]) for i in range(0, 2 * len(audio), 333)])
    np.testing.assert_array_equal(out, audio)
    # 48 kHz stereo 32-bit, fed in odd-sized chunks (frames split across chunks)
    up = resample(audio.astype(np.float32) / 32768, SR, 48_000)
    pcm = np.repeat(np.clip(np.round(up.astype(np.float64) * (2 ** 31 - 1)), -2 ** 31, 2 ** 31 - 1).astype("<i4")[:, None], 2, axis=1).tobytes()
    fmt = PcmFormat(48_000, 4, 2)
    conv = StreamConverter(fmt)
    streamed = np.concatenate([conv.feed(pcm[i:i + 1001]) for i in range(0, len(pcm), 1001)] + [conv.flush()])
    whole = to_judge_input(pcm, fmt)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    err = np.abs(streamed[:n].astype(np.int32) - whole[:n].astype(np.int32))[200:-200]
    assert err.max() <= 64  # soxr's streaming and one-shot resamplers agree to within a few LSB of 16-bit


def test_the_model_streamed_in_chunks_detects_as_the_verified_runtime_does():
    # the official VAD model on noise bursts, with a cutoff low enough (uint8 threshold 2) to fire many times:
    # every firing, refractory period and re-arming must land on the same inference
    model = discover(MODELS, ["vad"])[0]
    noise = _noise(8.0, 6)
    bursts = np.repeat(np.random.default_rng(1).random(40) > 0.5, len(noise) // 40 + 1)[:len(noise)]
    audio = (noise * bursts).astype(np.int16)
    settings = model.settings
    probs = TflmStreamer(model.tflite, model.arena)(features_uint16(audio))
    cutoff = 0.01
    frontend, stream = FeatureStream(), ModelStream(model.tflite, model.arena, cutoff, settings)
    got = []
    for i in range(0, len(audio), 1024):
        got += [f.inference for f in stream.feed(frontend.feed(audio[i:i + 1024]))]
    expected = activations(probs, cutoff, settings, quantized=True).tolist()
    assert len(expected) >= 2
    assert got == expected


def test_the_device_stream_runs_each_stride_as_soon_as_its_audio_is_in_and_detects_as_the_verified_runtime():
    """10 ms chunks (what HA sends), two models: after every chunk each model has run exactly the inferences
    that the audio so far completes (waiting for a stride adds no delay), and the detections are the verified
    runtime's, in the order of the audio."""
    vad, jarvis = discover(MODELS, ["vad"])[0], discover(MODELS, ["hey_jarvis"])[0]
    noise = _noise(6.0, 7)
    bursts = np.repeat(np.random.default_rng(2).random(30) > 0.5, len(noise) // 30 + 1)[:len(noise)]
    audio = (noise * bursts).astype(np.int16)
    cutoffs = [0.01, jarvis.cutoff]
    streams = [ModelStream(m.tflite, m.arena, c, m.settings) for m, c in zip((vad, jarvis), cutoffs)]
    device = DeviceStream(streams)
    fired, pcm = [], audio.astype("<i2").tobytes()
    for i in range(0, len(pcm), 320):
        fired += device.feed(pcm[i:i + 320])
        received = min(len(pcm), i + 320) // 2
        assert [s.inferences for s in streams] == [n_frames(received) // s.stride for s in streams]
    fired += device.flush()
    features = features_uint16(audio)
    for k, (m, cutoff) in enumerate(zip((vad, jarvis), cutoffs)):
        probs = TflmStreamer(m.tflite, m.arena)(features)
        assert [f.inference for i, f in fired if i == k] == activations(probs, cutoff, m.settings,
                                                                         quantized=True).tolist()
    assert sum(i == 0 for i, _ in fired) >= 2
    ends = [f.end_ms for _, f in fired]
    assert ends == sorted(ends)


def test_esphome_input_table_equals_the_formula():
    from components.runtime.tflm import _esphome_mapping, esphome_input

    raw = np.arange(1 << 16, dtype=np.uint16).reshape(-1, 64)
    np.testing.assert_array_equal(esphome_input(raw), _esphome_mapping(raw))
    np.testing.assert_array_equal(esphome_input(raw.astype(np.int64)), _esphome_mapping(raw))


def test_discovery_finds_the_latest_published_model_per_wake_word_and_flat_pairs(tmp_path):
    store = make_store(tmp_path / "store", ("hey_jarvis", "okay_nabu"))
    models = discover(store)
    assert sorted(m.name for m in models) == ["hey_jarvis", "okay_nabu"]
    jarvis = discover(store, ["Hey Jarvis"])[0]
    assert (jarvis.phrase, jarvis.cutoff, jarvis.languages) == ("Hey Jarvis", 0.97, ("en",))
    assert jarvis.version == jarvis.manifest_path.parent.name  # the published folder's digest
    assert [m.name for m in discover(MODELS, ["alexa"])] == ["alexa"]
    with pytest.raises(CatalogError, match="no model named"):
        discover(store, ["alexa"])
    with pytest.raises(CatalogError, match="no published model"):
        discover(_empty(tmp_path))
    shutil.copy(MODELS / "hey_jarvis.json", store / "hey_jarvis.json")
    shutil.copy(MODELS / "hey_jarvis.tflite", store / "hey_jarvis.tflite")
    with pytest.raises(CatalogError, match="two models named 'hey_jarvis'"):
        discover(store)


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_info_lists_every_model_with_name_phrase_language_and_version(tmp_path):
    models = discover(make_store(tmp_path, ("hey_jarvis", "okay_nabu")))
    info = wake_info(models)
    listed = {m.name: m for m in info.wake[0].models}
    assert set(listed) == {"hey_jarvis", "okay_nabu"}
    assert listed["hey_jarvis"].phrase == "Hey Jarvis" and listed["hey_jarvis"].languages == ["en"]
    assert listed["hey_jarvis"].version == models[[m.name for m in models].index("hey_jarvis")].version


def test_the_http_answers_serve_the_manifest_and_the_model_it_names():
    from urllib.parse import urljoin

    model = discover(MODELS, ["hey_jarvis"])[0]
    files = ModelFiles([model])
    status, body, ctype = files.answer("GET", "/hey_jarvis.json")
    manifest = json.loads(body)
    assert (status, ctype) == (200, "application/json")
    assert manifest["micro"] == json.loads((MODELS / "hey_jarvis.json").read_text())["micro"]
    model_url = urljoin("http://10.0.0.2:10401/hey_jarvis.json", manifest["model"])  # as ESPHome resolves it
    assert model_url == "http://10.0.0.2:10401/hey_jarvis.tflite"
    status, body, _ = files.answer("GET", "/hey_jarvis.tflite")
    assert status == 200 and body == (MODELS / "hey_jarvis.tflite").read_bytes()
    assert json.loads(files.answer("GET", "/")[1])["models"][0]["manifest"] == "/hey_jarvis.json"
    assert files.answer("GET", "/../hey_jarvis.json")[0] == 404
    assert files.answer("POST", "/hey_jarvis.json")[0] == 405


def test_esphome_config_prints_the_micro_wake_word_snippet(tmp_path, capsys):
    import yaml

    store = make_store(tmp_path)
    assert main(["esphome-config", "hey jarvis", "--store", str(store), "--host", "192.168.1.5"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc == {"micro_wake_word": {"models": [{"model": "http://192.168.1.5:10401/hey_jarvis.json"}]}}
    assert esphome_config(discover(store)[0], "h", 8080).endswith("- model: http://h:8080/hey_jarvis.json\n")
    assert main(["esphome-config", "alexa", "--store", str(store), "--host", "h"]) == 2
    assert "no model named alexa" in capsys.readouterr().err


def test_settings_reject_unknown_keys_and_bad_values():
    assert ServeSettings().port == 10400
    with pytest.raises(ValidationError):
        ServeSettings(prot=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ServeSettings(read_timeout_s=0)
    with pytest.raises(ValidationError):
        ServeSettings(port=70000)


def _published_folder(store: Path) -> Path:
    return next((store / "hey-jarvis").glob("*/published.json")).parent


def test_with_confirm_a_published_cascade_is_loaded_and_listed_and_other_models_are_served_as_they_are(tmp_path):
    store = make_cascade_store(tmp_path / "store", sentry_cutoff=0.4, judge_cutoff=0.6, context_s=1.5, after_s=0.2)
    shutil.copy(MODELS / "okay_nabu.json", store / "okay_nabu.json")  # an official model: no cascade
    shutil.copy(MODELS / "okay_nabu.tflite", store / "okay_nabu.tflite")
    models = {m.name: m for m in discover(store, confirm=True)}
    jarvis, nabu = models["hey_jarvis"], models["okay_nabu"]
    assert nabu.cascade is None and nabu.sentry_cutoff == nabu.cutoff
    cascade = jarvis.cascade
    assert cascade is not None and jarvis.sentry_cutoff == 0.4 and jarvis.cutoff == 0.97
    assert (cascade.judge_cutoff, cascade.context_frames, cascade.after_frames) == (0.6, 150, 20)
    assert cascade.threshold == cascade.judge.threshold_at(0.6) == int(0.6 * 255) / 256
    described = {m.name: m.description for m in wake_info(list(models.values())).wake[0].models}
    assert "judge-confirmed: sentry cutoff 0.4" in described["hey_jarvis"] and "judge" not in described["okay_nabu"]
    assert all(m.cascade is None for m in discover(store))  # without the flag: the device models alone


@pytest.mark.parametrize("breakage,message", [
    (lambda doc, folder: doc.update(schema="something/1"), "not a cascade evaluation"),
    (lambda doc, folder: doc["sentry"].update(sha256="0" * 64), "evaluated the model"),
    (lambda doc, folder: doc["operating_point"].update(judge_cutoff=1.5), "judge_cutoff must be a number"),
    (lambda doc, folder: doc["operating_point"].update(judge_context_s=0), "judge_context_s must be > 0"),
    (lambda doc, folder: doc["operating_point"].update(judge="../../.."), "outside the published folder"),
    (lambda doc, folder: shutil.rmtree(folder / "judge"), "its judge does not load"),
])
def test_a_broken_published_cascade_is_refused_with_the_reason(tmp_path, breakage, message):
    store = make_cascade_store(tmp_path / "store")
    folder = _published_folder(store)
    doc = json.loads((folder / "cascade.json").read_text())
    breakage(doc, folder)
    (folder / "cascade.json").write_text(json.dumps(doc))
    with pytest.raises(CatalogError, match=message):
        discover(store, confirm=True)
    assert discover(store)[0].cascade is None  # without the flag cascade.json is not read
    assert main(["serve", "--store", str(store), "--confirm-with-judge", "--port", "0", "--no-http"]) == 2


def test_a_cascade_evaluation_without_an_operating_point_serves_the_device_model(tmp_path):
    store = make_cascade_store(tmp_path / "store")
    folder = _published_folder(store)
    doc = json.loads((folder / "cascade.json").read_text())
    (folder / "cascade.json").write_text(json.dumps({**doc, "operating_point": None}))
    assert discover(store, confirm=True)[0].cascade is None


def test_the_judge_gets_the_segments_the_cascade_evaluation_scores_and_the_history_stays_bounded():
    """Sentry firings at random inferences, frames arriving in random batches: each firing is due once its
    `after` frames are in (or at the end), its frames are `SegmentWindow.bounds` of the whole stream, and the
    history never holds more than what pending firings need plus one batch."""
    from components.cascade_evaluation.cascade import SegmentWindow
    from components.serving.catalog import ServedCascade
    from components.serving.confirm import Confirmations
    from components.serving.stream import Firing

    rng = np.random.default_rng(8)
    features = rng.integers(0, 1 << 12, (6000, 40)).astype(np.uint16)
    cascade = ServedCascade(judge=None, sentry_cutoff=0.5, judge_cutoff=0.5, context_s=2.0, after_s=0.3,  # type: ignore[arg-type]
                            context_frames=200, after_frames=30, source=Path("cascade.json"))
    window = SegmentWindow.from_seconds(2.0, 0.3)
    confirm = Confirmations({0: cascade}, {0: 3})
    fired = sorted(int(t) for t in rng.choice(len(features) // 3, 60, replace=False))
    seen, pos = {}, 0
    while pos < len(features):
        n = int(rng.integers(1, 400))
        confirm.history.extend(features[pos:pos + n])
        prev, pos = pos, min(len(features), pos + n)
        for t in [t for t in fired if prev < (t + 1) * 3 <= pos]:  # the firings this batch completes
            confirm.add(0, Firing(t, 0, 0.5))
        for pending, frames in confirm.due(final=pos == len(features)):
            assert pending.stop <= pos or pos == len(features)
            seen[pending.firing.inference] = frames
        assert len(confirm.history.frames) <= 230
    assert sorted(seen) == fired
    for t in fired:
        start, stop = window.bounds(t, len(features))
        np.testing.assert_array_equal(seen[t], features[start:stop])
