"""`wakeline evaluate` on real files: piper's "hey jarvis" and seeded noise written as wav/flac, decoded, run
through the TFLite-Micro frontend and the official v2 hey_jarvis model in TFLite-Micro; no mocks. Bad input
(missing, empty, corrupt, truncated, silent, non-finite folders and files) is skipped with its reason or refused
with the folder's name, never a pass."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.common.audio import read_audio, resample, to_int16, to_mono
from components.common.evaluation import poisson_upper
from components.common.frontend import features_uint16
from components.runtime import folders
from components.runtime.folders import (EvaluationInputError, evaluate_folders, folder_labels,
                                                     load_file, load_folder, load_model)

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "esphome-models"
MANIFEST = MODELS / "v2" / "hey_jarvis.json"
SR = 16_000


@pytest.fixture(scope="module")
def jarvis() -> tuple[np.ndarray, int]:
    """piper's "hey jarvis" at piper's own rate (22.05 kHz int16), which the official model detects."""
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    pcm, sr = next(synthesize_many([PiperJob("hey jarvis", 1.0, 0.667, 0.8)], seed=11))
    assert len(pcm) > sr // 2
    return pcm, sr


def _noise(seconds: float, seed: int, gain: float = 1.0) -> np.ndarray:
    from components.synthesis.ambient import coloured_noise

    return coloured_noise(int(seconds * SR), np.random.default_rng(seed)) * gain


def _write(path: Path, samples: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sr, subtype=subtype)
    return path


def _corrupt(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    return path


@pytest.fixture
def positives(tmp_path, jarvis) -> Path:
    pcm, sr = jarvis
    return _write(tmp_path / "me" / "jarvis.wav", pcm, sr).parent


@pytest.fixture
def ambient(tmp_path) -> Path:
    return _write(tmp_path / "kitchen" / "noise.flac", _noise(60.0, seed=3)).parent


# --- files ----------------------------------------------------------------------------------------------------


def test_block_reading_gives_exactly_the_one_shot_features(tmp_path, monkeypatch):
    """Decoded in 1 s blocks (stereo 22.05 kHz resampled by a stream), padded with silence: the same features,
    bit for bit, as the whole file through the project's one-shot path."""
    n = int(3.3 * 22050)
    stereo = np.stack([_noise(n / SR, 1, 0.5)[:n], np.random.default_rng(5).uniform(-0.2, 0.2, n)], axis=1)
    path = _write(tmp_path / "x.wav", stereo.astype(np.float32), 22050)
    monkeypatch.setattr(folders, "BLOCK_SECONDS", 1)
    data, sr = read_audio(path)
    samples = to_int16(resample(to_mono(data), sr))
    feats, seconds = load_file(path)
    assert np.array_equal(feats, features_uint16(samples))
    assert seconds == pytest.approx(3.3, abs=1e-3)
    pad = np.zeros(SR // 2, np.int16)
    padded, seconds_padded = load_file(path, pad_s=0.5)
    assert np.array_equal(padded, features_uint16(np.concatenate([pad, samples, pad])))
    assert seconds_padded == seconds  # a file's duration is its own, without the padding


@pytest.mark.parametrize("make, reason", [
    (lambda p: _corrupt(p), "unreadable: "),
    (lambda p: p.write_bytes(b"") and p, "empty file (0 bytes)"),
    (lambda p: _write(p, np.zeros(0, np.int16)), "empty: no audio samples"),
    (lambda p: _write(p, np.zeros(SR, np.int16)), "silent: every sample is zero"),
    (lambda p: _write(p, _noise(0.02, 1)), "too short: 0.020 s"),
    (lambda p: _write(p, np.where(np.arange(SR) == 100, np.nan, _noise(1.0, 1)).astype(np.float32),
                      subtype="FLOAT"), "non-finite samples"),
    (lambda p: p.write_bytes(_write(p, _noise(1.0, 1)).read_bytes()[:20_000]), "truncated: "),
])
def test_an_unusable_file_says_why(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(ValueError) as e:
        load_file(path)
    assert str(e.value).startswith(reason), e.value


# --- folders --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_folder_is_read_recursively_and_bad_files_are_listed_not_fatal(tmp_path, jarvis):
    pcm, sr = jarvis
    root = tmp_path / "living room"
    good = _write(root / "a" / "jarvis.ogg", pcm.astype(np.float32) / 32768, sr, subtype="VORBIS")
    bad = _corrupt(root / "b" / "broken.wav")
    (root / "notes.txt").write_text("not audio")
    folder = load_folder(root, pad_s=1.0)
    assert folder.label == "living room" and folder.files == [good]
    assert folder.durations == [pytest.approx(len(pcm) / sr, abs=0.01)]
    assert folder.skipped == [(bad, "unreadable: Format not recognised.")]
    assert folder.ignored == [root / "notes.txt"]
    # 1 s of silence either side: about 200 frames more than the word alone
    assert len(folder.features[0]) == pytest.approx(len(pcm) / sr * 100 + 200, abs=3)


def test_folders_that_cannot_be_measured_are_errors_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationInputError, match=f"{empty}: no usable audio \\(no wav/flac/ogg files\\)"):
        load_folder(empty)
    broken = tmp_path / "broken"
    _corrupt(broken / "random.wav")
    (broken / "nothing.wav").write_bytes(b"")
    (broken / "cover.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(EvaluationInputError) as e:
        load_folder(broken)
    msg = str(e.value)
    assert msg.startswith(f"{broken}: no usable audio (2 audio file(s) skipped: ")
    assert "nothing.wav: empty file (0 bytes)" in msg and "random.wav: unreadable: " in msg
    assert "1 other file(s) ignored (.jpg)" in msg
    with pytest.raises(EvaluationInputError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        load_folder(tmp_path / "nowhere")
    with pytest.raises(EvaluationInputError, match="not a folder"):
        load_folder(_write(tmp_path / "file.wav", _noise(1.0, 1)))


def test_labels_are_folder_names_made_unique_by_their_parents():
    assert folder_labels([Path("/h/up/kitchen"), Path("/h/down/kitchen"), Path("/h/hall")]) == \
        ["up/kitchen", "down/kitchen", "hall"]
    assert folder_labels([Path("/a/x/kitchen"), Path("/b/x/kitchen")]) == ["a/x/kitchen", "b/x/kitchen"]
    assert folder_labels([Path("/rec/all")]) == ["rec/all"]  # "all" is the name of the totals


# --- the model on the device runtime --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wake_word_is_detected_and_the_noise_hours_are_measured(positives, ambient):
    report = evaluate_folders(MANIFEST, [positives], [ambient])
    b = report.breakdown
    assert report.cutoff_source == "manifest" and b.cutoff == 0.97
    cell = b.frr_cell("me", "recorded")
    assert (cell.clips, cell.misses) == (1, 0) and report.missed == {}
    fa = b.fa_cell("kitchen")
    # 60 s at 16 kHz: 5998 frontend frames, 1999 inferences of 30 ms = 59.97 s measured
    assert 60 - 0.06 <= fa.hours * 3600 <= 60
    assert fa.false_accepts == 0 and report.false_accepts == {}
    assert fa.upper_per_hour == pytest.approx(poisson_upper(0) / fa.hours)
    assert fa.upper_per_hour == pytest.approx(3.0 * 60, rel=0.003)
    assert [f.label for f in report.positives] == ["me"] and [f.label for f in report.ambient] == ["kitchen"]


@pytest.mark.slow
def test_false_accepts_are_counted_and_located_and_the_cutoff_can_be_overridden(tmp_path, jarvis):
    """The wake word said three times in a quiet room recording: three false accepts (ambient must not hold
    it), each found within a second after the word ends; at --cutoff 1.0 nothing fires and the word is missed."""
    pcm, sr = jarvis
    word = to_int16(resample(pcm.astype(np.float32) / 32768, sr)).astype(np.float64) / 32768
    room = _noise(20.0, seed=7, gain=0.05)
    ends = []
    for start_s in (3.0, 9.0, 15.0):
        i = int(start_s * SR)
        room[i:i + len(word)] += word
        ends.append((i + len(word)) / SR)
    amb = _write(tmp_path / "tv" / "room.wav", room).parent
    report = evaluate_folders(MANIFEST, [], [amb])
    fa = report.breakdown.fa_cell("tv")
    assert fa.false_accepts == 3
    assert fa.upper_per_hour == pytest.approx(poisson_upper(3) / fa.hours)
    times = [t for _, t in report.false_accepts["tv"]]
    assert all(end - 0.5 <= t <= end + 1.0 for t, end in zip(times, ends)), (times, ends)
    assert report.breakdown.frr == []

    pos = _write(tmp_path / "me" / "jarvis.wav", pcm, sr).parent
    strict = evaluate_folders(MANIFEST, [pos], [amb], cutoff=1.0)
    assert strict.cutoff_source == "--cutoff" and strict.breakdown.cutoff == 1.0
    assert strict.breakdown.fa_cell("tv").false_accepts == 0
    assert strict.breakdown.frr_cell("me", "recorded").misses == 1
    assert strict.missed == {"me": [pos / "jarvis.wav"]}


@pytest.mark.slow
def test_folders_with_the_same_name_are_told_apart(tmp_path, positives):
    a = _write(tmp_path / "upstairs" / "kitchen" / "n.wav", _noise(5.0, 1)).parent
    b = _write(tmp_path / "downstairs" / "kitchen" / "n.wav", _noise(5.0, 2)).parent
    report = evaluate_folders(MANIFEST, [positives], [a, b])
    assert report.breakdown.fa_conditions == ["downstairs/kitchen", "upstairs/kitchen"]
    assert report.breakdown.fa_cell().hours == pytest.approx(10 / 3600, abs=0.1 / 3600)


@pytest.mark.slow
def test_bad_requests_are_refused_before_any_audio_is_read(tmp_path, positives, ambient):
    with pytest.raises(EvaluationInputError, match="at least one --positives DIR or --ambient DIR"):
        evaluate_folders(MANIFEST, [], [])
    with pytest.raises(EvaluationInputError, match=f"--ambient {tmp_path / 'gone'}: no such folder"):
        evaluate_folders(MANIFEST, [positives], [tmp_path / "gone"])
    with pytest.raises(EvaluationInputError, match="the same folder is given twice"):
        evaluate_folders(MANIFEST, [], [ambient, ambient])
    with pytest.raises(EvaluationInputError, match="as both --positives and --ambient"):
        evaluate_folders(MANIFEST, [positives], [positives])
    with pytest.raises(EvaluationInputError, match=f"--ambient {tmp_path}: inside|inside --ambient {tmp_path}"):
        evaluate_folders(MANIFEST, [], [tmp_path, ambient])
    with pytest.raises(EvaluationInputError, match="--cutoff must be a number from 0 to 1, got 1.5"):
        evaluate_folders(MANIFEST, [positives], [], cutoff=1.5)


def test_the_model_is_found_and_checked(tmp_path):
    model = load_model(MODELS / "v2" / "hey_jarvis.tflite")  # the .tflite with its manifest beside it
    assert model.manifest == MANIFEST and model.cutoff == 0.97 and model.arena == 22860
    assert (model.settings.sliding_window, model.settings.stride_frames) == (5, 3)
    with pytest.raises(EvaluationInputError, match="holds 5 models .*choose one by its manifest"):
        load_model(MODELS / "v2")
    with pytest.raises(EvaluationInputError, match="missing.json: no such file or folder"):
        load_model(tmp_path / "missing.json")
    published = tmp_path / "published"  # a published folder: the manifest beside other JSON files
    published.mkdir()
    for name in ("hey_jarvis.json", "hey_jarvis.tflite"):
        (published / name).write_bytes((MODELS / "v2" / name).read_bytes())
    for name in ("cascade.json", "lineage.json", "parity.json"):
        (published / name).write_text(json.dumps({"not": "a manifest"}))
    assert load_model(published).manifest == published / "hey_jarvis.json"
    (tmp_path / "x.json").write_text(json.dumps({"model": "x.tflite", "micro": {"probability_cutoff": 0.5}}))
    with pytest.raises(EvaluationInputError, match="its model file x.tflite is missing"):
        load_model(tmp_path / "x.json")
    (tmp_path / "x.tflite").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(EvaluationInputError, match="does not load in TFLite-Micro"):
        load_model(tmp_path / "x.json")


# --- the CLI --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_json(tmp_path, positives, ambient, capsys):
    from pipeline.cli import main

    _corrupt(positives / "broken.wav")
    out = tmp_path / "report" / "eval.json"
    rc = main(["evaluate", str(MANIFEST), "--positives", str(positives), "--ambient", str(ambient),
               "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "at cutoff 0.97" in text and "95% upper" in text
    assert "kitchen" in text and "0.0% (0/1)" in text
    assert f"me: {positives / 'broken.wav'}: unreadable: Format not recognised." in text
    data = json.loads(out.read_text())
    assert data["cutoff"] == 0.97 and data["cutoff_source"] == "manifest"
    assert data["positives"][0]["skipped"] == [{"file": str(positives / "broken.wav"),
                                                "reason": "unreadable: Format not recognised."}]
    kitchen = next(c for c in data["breakdown"]["fa"] if c["condition"] == "kitchen")
    assert kitchen["false_accepts"] == 0 and kitchen["upper_95_per_hour"] > 170
    me = next(c for c in data["breakdown"]["frr"] if (c["family"], c["condition"]) == ("me", "recorded"))
    assert (me["clips"], me["misses"]) == (1, 0)


def test_cli_exits_2_with_one_line_on_bad_input(tmp_path, ambient, capsys):
    from pipeline.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["--ambient", str(empty)], f"wakeline: --ambient {empty}: no usable audio"),
             ([], "wakeline: evaluate needs at least one --positives DIR or --ambient DIR")]
    for extra, expected in cases:
        capsys.readouterr()
        assert main(["evaluate", str(MANIFEST), *extra]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("wakeline: reading")]
        assert err == [err[0]] and err[0].startswith(expected), err
    assert main(["evaluate", str(tmp_path / "nope.json"), "--ambient", str(ambient)]) == 2
    assert capsys.readouterr().err.strip() == f"wakeline: {tmp_path / 'nope.json'}: no such file or folder"
