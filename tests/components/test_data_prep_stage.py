"""The data_prep stage entry on tiny real inputs: quarantine, splits, determinism, failure messages."""
import json
from collections import defaultdict

import pytest
import soundfile as sf

from components.common.artifacts import DatasetLayout, Label, Split, sha256_file
from components.common.config import load_config
from components.data_prep import synth
from components.data_prep.stage import DataPrepError, run
from tests.factories import broken_files, speechlike, write

pytestmark = pytest.mark.slow  # synthesises datasets

TINY = ["data_prep.positives.piper_clips=2", "data_prep.positives.espeak_clips=12",
        "data_prep.adversarial.piper_clips=1", "data_prep.adversarial.espeak_clips=4",
        "data_prep.speech.piper_clips=1", "data_prep.speech.espeak_clips=8",
        "data_prep.ambient.synthetic_duration_s=30", "data_prep.ambient.file_duration_s=10",
        "data_prep.rirs.count=3", "data_prep.min_usable_positives=5"]


@pytest.fixture(scope="module")
def user_audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    pos = root / "positives"
    for spk, seed in (("alice", 10), ("bob", 20), ("carol", 30)):
        for i in range(3):
            write(pos / spk / f"{i}.wav", speechlike(1.0, seed=seed + i, lead_silence_s=0.5), subtype="PCM_16")
    write(pos / "loose.flac", speechlike(1.2, sr=44_100, seed=40), sr=44_100)
    # The same recording twice, under another name: kept once, the copy quarantined as a duplicate.
    (pos / "alice" / "copy_of_0.wav").write_bytes((pos / "alice" / "0.wav").read_bytes())
    broken = broken_files(pos / "broken")
    bg = root / "background"
    write(bg / "kitchen.wav", speechlike(8.0, seed=50, level=0.05), subtype="PCM_16")
    return root, broken


@pytest.fixture(scope="module")
def dataset(user_audio, tmp_path_factory):
    root, _ = user_audio
    cfg = load_config("smoke", overrides=TINY + [f"data_prep.sources.positives=[{root / 'positives'}]",
                                                 f"data_prep.sources.background=[{root / 'background'}]"])
    out = tmp_path_factory.mktemp("dataset")
    metadata = run(out, cfg, show_progress=False)
    return cfg, DatasetLayout(out), metadata


def test_broken_user_files_are_quarantined_with_reasons(dataset, user_audio):
    _, layout, md = dataset
    _, broken = user_audio
    rows = [json.loads(line) for line in layout.quarantine.read_text().splitlines()]
    by_name = {r["origin"].rsplit("/", 1)[-1]: r for r in rows}
    for name, (_, reason) in broken.items():
        assert by_name[name]["reason"] == reason, name
        assert by_name[name]["kind"] == "positive"
    assert by_name["copy_of_0.wav"]["reason"] == "duplicate"
    assert md["quarantined"] == len(rows)
    assert md["quarantine_by_reason"]["duplicate"] >= 1
    manifest_origins = {r.origin for r in layout.read_manifest()}
    assert not any("/broken/" in (o or "") for o in manifest_origins)


def test_user_clips_are_resampled_trimmed_and_speaker_disjoint(dataset):
    _, layout, _ = dataset
    records = layout.read_manifest()
    user = [r for r in records if r.source == "user" and r.label is Label.POSITIVE]
    assert len(user) == 10  # 9 speaker files + loose.flac; the copy is a duplicate
    for r in user:
        data, sr = sf.read(str(layout.root / r.path), dtype="int16")
        assert sr == 16_000 and data.ndim == 1
        assert r.duration_s < 1.5 and r.sha256 == __import__("hashlib").sha256(data.tobytes()).hexdigest()
    speakers = defaultdict(set)
    for r in records:
        speakers[r.voice].add(r.split)
    assert all(len(s) == 1 for s in speakers.values()), "a voice or speaker crosses splits"


def test_every_split_has_positives_and_ambient(dataset):
    _, layout, md = dataset
    for split in Split:
        assert md["counts"]["positive"][split.value] > 0
        assert md["counts"]["background"][split.value] > 0
    assert md["counts"]["rir"]["train"] >= 1
    bg_user = [r for r in layout.read_manifest() if r.label is Label.BACKGROUND and r.source == "user"]
    assert len(bg_user) == 1 and bg_user[0].duration_s == pytest.approx(8.0, abs=0.01)  # never trimmed


def test_metadata_matches_files(dataset):
    cfg, layout, md = dataset
    records = layout.read_manifest()
    assert md["clips"] == len(records)
    assert md["manifest_sha256"] == sha256_file(layout.manifest) == md["file_sha256"]["manifest.jsonl"]
    assert md["config_sha256"] == cfg.sha256()
    total_h = sum(sum(v.values()) for v in md["hours"].values())
    assert total_h == pytest.approx(sum(r.duration_s for r in records) / 3600, rel=1e-3)
    assert json.loads(layout.summary.read_text()) == md
    for r in records:
        assert (layout.root / r.path).is_file()
    assert any(k.endswith("positives") for k in md["input_sha256"])


def test_rerun_is_identical(dataset, user_audio, tmp_path):
    cfg, layout, md = dataset
    md2 = run(tmp_path, cfg, show_progress=False)
    assert md2["manifest_sha256"] == md["manifest_sha256"]


def test_too_few_positives_fails_with_explanation(user_audio, tmp_path):
    root, _ = user_audio
    cfg = load_config("smoke", overrides=TINY + [
        "data_prep.positives.piper_clips=0", "data_prep.positives.espeak_clips=0",
        "data_prep.min_usable_positives=50", f"data_prep.sources.positives=[{root / 'positives' / 'broken'}]"])
    with pytest.raises(DataPrepError) as e:
        run(tmp_path, cfg, show_progress=False)
    msg = str(e.value)
    assert "only 0 usable positive clips (minimum 50)" in msg
    assert "0 usable of 9 files" in msg and "truncated" in msg and "silent" in msg
    assert "data_prep.min_usable_positives" in msg


HELD_OUT = TINY + ["data_prep.splits.heldout_families=[espeak:klatt]", "data_prep.splits.heldout_text_fraction=0.3",
                   "data_prep.conditions.duration_s=20",
                   "data_prep.conditions.kinds=[clean_speech, telephone_speech, far_field_speech, fast_slow_speech, "
                   "speech_over_music, non_english_speech]", "data_prep.conditions.non_english.espeak_clips=8",
                   "data_prep.conditions.non_english.languages=[de, fr]", "data_prep.speech.espeak_clips=24",
                   "data_prep.generated_sentences=40", "data_prep.positives.espeak_clips=30"]


@pytest.fixture(scope="module")
def heldout_dataset(tmp_path_factory):
    cfg = load_config("smoke", overrides=HELD_OUT)
    out = tmp_path_factory.mktemp("heldout")
    return cfg, DatasetLayout(out), run(out, cfg, show_progress=False)


def test_held_out_family_is_heard_by_test_only(heldout_dataset):
    _, layout, md = heldout_dataset
    records = layout.read_manifest()
    speech = [r for r in records if r.label in (Label.POSITIVE, Label.NEGATIVE, Label.ADVERSARIAL_NEGATIVE)]
    assert all(r.family for r in speech)  # every clip records its family
    klatt = [r for r in speech if r.family == "espeak:klatt"]
    assert klatt and {r.split for r in klatt} == {Split.TEST}
    assert md["positives_per_family"]["espeak:klatt"]["test"] > 0
    assert md["positives_per_family"]["espeak:formant"]["train"] > 0
    non_english = [r for r in speech if r.family == "espeak:non_english"]
    assert non_english and Split.TRAIN not in {r.split for r in non_english}  # evaluation only
    assert all(r.voice.split(":")[1].split("+")[0] in ("de", "fr") for r in non_english)


@pytest.mark.parametrize("key", ["greetings", "sound_alikes"])
def test_training_only_speech_is_heard_in_training_and_leaves_evaluation_audio_unchanged(key, heldout_dataset,
                                                                                        tmp_path):
    base, layout, _ = heldout_dataset
    cfg = load_config("smoke", overrides=HELD_OUT + [f"data_prep.{key}.espeak_clips=6"])
    run(tmp_path, cfg, show_progress=False)
    before, after = layout.read_manifest(), DatasetLayout(tmp_path).read_manifest()
    evaluated = lambda records: sorted((r.split, r.label, r.sha256) for r in records if r.split is not Split.TRAIN)
    assert evaluated(after) == evaluated(before)
    added = {r.text for r in after if r.split is Split.TRAIN} - {r.text for r in before if r.split is Split.TRAIN}
    assert len(added) == 6
    if key == "greetings":
        assert all(t.startswith(("Hey", "Hi ", "Hello", "Oh hey", "Morning", "Okay", "Excuse")) for t in added)
    else:
        words = synth.sound_alike_vocabulary(base.phrases)
        assert all(any(w in t.lower() for w in words) for t in added), added


def test_validation_speech_is_heard_by_validation_only_in_sentences_no_other_clip_says(heldout_dataset, tmp_path):
    _, layout, _ = heldout_dataset
    cfg = load_config("smoke", overrides=HELD_OUT + ["data_prep.validation_speech.espeak_clips=6"])
    md = run(tmp_path, cfg, show_progress=False)
    before, after = layout.read_manifest(), DatasetLayout(tmp_path).read_manifest()
    unchanged = lambda records: sorted((r.split, r.label, r.sha256) for r in records if r.split is not Split.VALIDATION)
    assert unchanged(after) == unchanged(before)  # training and test audio, streams included, are the same
    clips = lambda records: {r.sha256: r for r in records if r.split is Split.VALIDATION and r.label in
                             (Label.POSITIVE, Label.NEGATIVE, Label.ADVERSARIAL_NEGATIVE)}
    added = [r for sha, r in clips(after).items() if sha not in clips(before)]
    assert len(added) == 6 and set(clips(before)) <= set(clips(after))
    assert all(r.label is Label.NEGATIVE and r.family == "espeak:formant" for r in added)
    training_voices = {r.voice for r in before if r.split is Split.TRAIN}
    assert {r.voice for r in added} <= training_voices
    others = {r.text for r in after if r.text and r.sha256 not in {a.sha256 for a in added}}
    assert len({r.text for r in added}) == 6 and not {r.text for r in added} & others
    assert md["speech_per_family"]["espeak:formant"]["validation"] == \
        sum(r.label is Label.NEGATIVE and r.family == "espeak:formant" and r.split is Split.VALIDATION for r in after)


def test_rooms_split_by_rt60_change_only_the_rooms_and_the_streams_they_reverberate(heldout_dataset, tmp_path):
    from components.data_prep.splits import assign_by_value

    base, layout, _ = heldout_dataset
    cfg = load_config("smoke", overrides=HELD_OUT + ["data_prep.rirs.count=20", "data_prep.rirs.split=by_rt60"])
    run(tmp_path, cfg, show_progress=False)
    after = DatasetLayout(tmp_path).read_manifest()
    rooms = {r.origin.split(":")[0]: (r.split, json.loads(r.origin.split(":", 1)[1])["rt60_s"])
             for r in after if r.label is Label.RIR}
    assert len(rooms) == 20
    expected = assign_by_value({n: rt for n, (_, rt) in rooms.items()}, cfg.data_prep.splits, cfg.seed)
    assert {n: split for n, (split, _) in rooms.items()} == expected
    # smoke's 0.15 each of 20 rooms: 3 bands (the 6 driest, the next 7, the 7 most reverberant), one room of each
    # for validation and for test
    driest = sorted(rooms, key=lambda n: rooms[n][1])
    for split in (Split.VALIDATION, Split.TEST):
        bands = sorted(sum(driest.index(n) >= edge for edge in (6, 13)) for n, (s, _) in rooms.items() if s is split)
        assert bands == [0, 1, 2], (split, bands)
    unchanged = lambda records: sorted((r.split, r.label, r.sha256) for r in records if r.label is not Label.RIR
                                       and r.condition != "far_field_speech")
    assert unchanged(after) == unchanged(layout.read_manifest())


def test_test_speech_says_texts_training_never_says(heldout_dataset):
    _, layout, _ = heldout_dataset
    english = [r for r in layout.read_manifest() if r.label is Label.NEGATIVE and r.family != "espeak:non_english"]
    by_split = defaultdict(set)
    for r in english:
        by_split[r.split].add(r.text)
    assert by_split[Split.TEST] and by_split[Split.TRAIN]
    assert not by_split[Split.TEST] & (by_split[Split.TRAIN] | by_split[Split.VALIDATION])


def test_condition_streams_exist_for_validation_and_test_only(heldout_dataset):
    cfg, layout, md = heldout_dataset
    streams = [r for r in layout.read_manifest() if r.source == "condition_stream"]
    kinds = {k.value for k in cfg.data_prep.conditions.kinds}
    assert len(kinds) == 6
    for split in (Split.VALIDATION, Split.TEST):
        got = {r.condition for r in streams if r.split is split}
        assert got == kinds, split
    assert all(r.split is not Split.TRAIN and r.label is Label.BACKGROUND for r in streams)
    assert all(abs(r.duration_s - 20) < 0.01 for r in streams)
    ambient = [r for r in layout.read_manifest() if r.source == "synthetic_ambient"]
    assert ambient and all(r.condition in ("noise", "music", "babble") for r in ambient)
    assert md["condition_hours"]["telephone_speech"]["test"] == pytest.approx(20 / 3600, abs=1e-4)


def test_a_held_out_family_without_positives_is_a_config_error(tmp_path):
    cfg = load_config("smoke", overrides=TINY + ["data_prep.splits.heldout_families=[espeak:breathy]"])
    with pytest.raises(DataPrepError, match=r"data_prep.splits.heldout_families: \['espeak:breathy'\]"):
        run(tmp_path / "d", cfg, show_progress=False)
