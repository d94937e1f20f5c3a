"""The augmentation stage on a tiny real Dataset: determinism, shard invariance, the feature store it writes,
positive placement and splits without RIRs or background audio."""
import json
import shutil

import numpy as np
import pytest

from components.augmentation import stage
from components.augmentation.schedule import snr_range
from components.common.artifacts import (LABEL_CODES, DatasetLayout, FeatureSetWriter, FeatureStoreLayout, Label,
                                         ManifestRecord, Split, sha256_file, write_jsonl)
from components.common.audio import write_wav
from components.common.config import load_config
from components.common.frontend import n_frames
from components.common.xp import GPUUnavailableError, gpu_status
from components.data_prep.stage import run as data_prep
from tests.factories import speechlike

SR = 16_000
TINY_DATA = ["data_prep.positives.piper_clips=1", "data_prep.positives.espeak_clips=10",
             "data_prep.adversarial.piper_clips=0", "data_prep.adversarial.espeak_clips=3",
             "data_prep.speech.piper_clips=0", "data_prep.speech.espeak_clips=15",
             "data_prep.ambient.synthetic_duration_s=30", "data_prep.ambient.file_duration_s=5",
             "data_prep.rirs.count=3", "data_prep.min_usable_positives=5",
             "data_prep.conditions.duration_s=10", "data_prep.conditions.kinds=[clean_speech]"]
# Small batches so that the train split spans several of them (and both shards get some).
TINY_AUG = ["augmentation.epochs=3", "augmentation.batch_size=4", "augmentation.workers=1",
            "augmentation.device=cpu", "augmentation.eval_conditions=[clean, noisy, far_field, band_limited]"]


def config(*extra: str):
    return load_config("smoke", overrides=[*TINY_DATA, *TINY_AUG, *extra])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> DatasetLayout:
    out = tmp_path_factory.mktemp("dataset")
    data_prep(out, config(), show_progress=False)
    return DatasetLayout(out)


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory):
    """One shard-0-of-1 run, gathered: what the pipeline hands to training."""
    cfg = config()
    shard = tmp_path_factory.mktemp("shard")
    md = stage.run(dataset.root, shard, cfg, show_progress=False)
    out = tmp_path_factory.mktemp("store")
    gathered = stage.gather([shard], out)
    return cfg, FeatureStoreLayout(shard), md, FeatureStoreLayout(out), gathered


def _set_hashes(md) -> dict[str, dict[str, str]]:
    return {k: v["sha256"] for k, v in md["sets"].items()}


def _arrays(layout: FeatureStoreLayout, key: str):
    split, name = key.split("/")
    fs = layout.open_dir(layout.set_dir_named(Split(split), name))
    return np.asarray(fs.frames), fs.offsets, fs.labels, fs.weights, fs.clip_info()


# --------------------------------------------------------------------------------------------------
# determinism and shards


@pytest.mark.slow
def test_rerun_is_byte_identical_and_another_seed_differs(dataset, store, tmp_path):
    cfg, shard, md, _, _ = store
    again = stage.run(dataset.root, tmp_path / "again", cfg, show_progress=False)
    assert _set_hashes(again) == _set_hashes(md)
    for key, hashes in _set_hashes(md).items():  # the metadata describes the files on disk
        split, name = key.split("/")
        d = shard.root / split / name
        assert {f.name: sha256_file(f) for f in d.iterdir()} == hashes

    other = stage.run(dataset.root, tmp_path / "seed1", config("seed=1"), show_progress=False)
    assert other["sets"].keys() == md["sets"].keys()
    for key in md["sets"]:
        if key.endswith("/ambient"):  # unaugmented long-form audio: the same whatever the seed
            assert other["sets"][key]["sha256"] == md["sets"][key]["sha256"]
            continue
        assert other["sets"][key]["sha256"]["frames.u16"] != md["sets"][key]["sha256"]["frames.u16"], key
        assert other["sets"][key]["sha256"]["labels.npy"] == md["sets"][key]["sha256"]["labels.npy"], key


@pytest.mark.slow
def test_two_shards_gather_to_the_single_shard_store(dataset, store, tmp_path):
    _, _, md1, single, gathered1 = store
    cfg2 = config("augmentation.shards=2")
    shard_dirs = [tmp_path / "s0", tmp_path / "s1"]
    metas = [stage.run(dataset.root, d, cfg2, shard_index=i, show_progress=False) for i, d in enumerate(shard_dirs)]
    # Both shards did real work on the train split (otherwise this would prove little).
    assert all(m["sets"]["train/epoch-000"]["clips"] > 0 for m in metas)
    assert metas[0]["sets"]["train/epoch-000"]["clips"] < md1["sets"]["train/epoch-000"]["clips"]
    assert not any(k.endswith("/ambient") for k in metas[1]["sets"])  # written once, by shard 0

    merged = stage.gather(list(reversed(shard_dirs)), tmp_path / "merged")  # order of the list is irrelevant
    assert merged["shards"] == 2 and gathered1["shards"] == 1
    assert merged["sets"].keys() == gathered1["sets"].keys() == md1["sets"].keys()
    assert _set_hashes(merged) == _set_hashes(gathered1)
    layout = FeatureStoreLayout(tmp_path / "merged")
    for key in gathered1["sets"]:
        a, b = _arrays(single, key), _arrays(layout, key)
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
        assert a[4] == b[4]
    assert merged["snr_schedule"] == gathered1["snr_schedule"]


@pytest.mark.slow
def test_gather_rejects_missing_shards(dataset, tmp_path):
    cfg2 = config("augmentation.shards=2")
    stage.run(dataset.root, tmp_path / "s1", cfg2, shard_index=1, show_progress=False)
    with pytest.raises(ValueError, match=r"expected shards 0..1, got \[1\]"):
        stage.gather([tmp_path / "s1"], tmp_path / "out")
    with pytest.raises(ValueError, match="outside augmentation.shards=2"):
        stage.run(dataset.root, tmp_path / "s2", cfg2, shard_index=2, show_progress=False)


@pytest.mark.slow
def test_device_gpu_without_a_gpu_fails_before_any_work(dataset, tmp_path):
    if gpu_status()[0]:
        pytest.skip("a GPU is usable here")
    with pytest.raises(GPUUnavailableError, match=r"augmentation\.device"):
        stage.run(dataset.root, tmp_path / "out", config("augmentation.device=gpu"), show_progress=False)
    assert not (tmp_path / "out" / FeatureStoreLayout.METADATA).exists()


# --------------------------------------------------------------------------------------------------
# the feature store


def test_feature_set_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 2 ** 16, (k, 40), dtype=np.uint16) for k in (5, 0, 198, 1)]
    labels = [Label.POSITIVE, Label.NEGATIVE, Label.BACKGROUND, Label.HARD_NEGATIVE]
    weights = [1.0, 0.5, 2.0, 0.25]
    infos = [{"item": i, "path": f"clips/{i}.wav", "snr_db": None if i % 2 else 1.5} for i in range(4)]
    writer = FeatureSetWriter(tmp_path / "train" / "epoch-000")
    for c, lab, w, info in zip(clips, labels, weights, infos):
        writer.add(c, lab, w, info)
    summary = writer.close()
    assert summary["clips"] == 4 and summary["frames"] == 204
    assert summary["counts"] == {"positive": 1, "negative": 1, "background": 1, "hard_negative": 1}
    d = tmp_path / "train" / "epoch-000"
    assert summary["sha256"] == {f.name: sha256_file(f) for f in d.iterdir()}

    layout = FeatureStoreLayout(tmp_path)
    assert layout.epochs(Split.TRAIN) == [0] and layout.epochs(Split.TEST) == []
    fs = layout.open(Split.TRAIN, 0)
    assert isinstance(fs.frames, np.memmap) and fs.frames.dtype == np.uint16 and fs.frames.shape == (204, 40)
    assert len(fs) == 4
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(fs.clip(i), c)
        assert fs.label(i) is labels[i]
    np.testing.assert_array_equal(fs.offsets, [0, 5, 5, 203, 204])
    assert fs.weights.dtype == np.float32 and list(fs.weights) == weights
    np.testing.assert_array_equal(fs.positives, [True, False, False, False])
    assert fs.clip_info() == infos


def test_empty_feature_set_round_trip(tmp_path):
    summary = FeatureSetWriter(tmp_path / "test" / "epoch-000").close()
    assert summary["clips"] == 0 and summary["frames"] == 0 and summary["counts"] == {}
    fs = FeatureStoreLayout(tmp_path).open(Split.TEST, 0)
    assert len(fs) == 0 and fs.frames.shape == (0, 40) and fs.clip_info() == []


@pytest.mark.slow
def test_store_metadata_matches_the_arrays(store, dataset):
    cfg, shard, md, gathered_layout, gathered = store
    aug = cfg.augmentation
    per_clip = n_frames(int(aug.clip_duration_s * SR))
    assert md["frames_per_clip"] == per_clip == gathered["frames_per_clip"]
    assert md["feature_channels"] == 40 and md["feature_dtype"] == "uint16" and md["array_backend"] == "numpy"
    assert md["config_sha256"] == cfg.sha256()
    assert md["input_sha256"]["dataset_manifest"] == sha256_file(dataset.manifest)
    expected_sets = {f"train/epoch-{e:03d}" for e in range(aug.epochs)} | {
        "validation/epoch-000", "test/epoch-000", "validation/ambient", "test/ambient"} | {
        f"{split}/condition-{c.value}" for split in ("validation", "test") for c in aug.eval_conditions}
    assert set(md["sets"]) == expected_sets
    records = dataset.read_manifest()
    for layout, meta in ((shard, md), (gathered_layout, gathered)):
        for key, info in meta["sets"].items():
            frames, offsets, labels, weights, clips = _arrays(layout, key)
            assert frames.dtype == np.uint16 and frames.ndim == 2 and frames.shape[1] == 40
            assert info["clips"] == len(labels) == len(weights) == len(clips) == len(offsets) - 1
            assert info["frames"] == offsets[-1] == len(frames)
            names = [list(Label)[c].value for c in labels]
            assert info["counts"] == {n: names.count(n) for n in set(names)}
            assert [c["label"] for c in clips] == names
            assert all(w == getattr(aug.sample_weights, n) for w, n in zip(weights, names))
            if key.endswith("/ambient"):
                continue
            split = Split(key.split("/")[0])
            # evaluation clips run on eval_tail_s past the window the training clips are cut to
            tail = 0 if split is Split.TRAIN else int(round(aug.eval_tail_s * SR))
            assert np.all(np.diff(offsets) == n_frames(int(aug.clip_duration_s * SR) + tail)), key
            assert np.all(np.diff(offsets) == (per_clip if split is Split.TRAIN else meta["eval_frames_per_clip"]))
            if "/condition-" in key:  # the split's positives only (checked in the conditions tests below)
                continue
            speech = [r for r in records if r.split is split and r.label in stage.SPEECH_LABELS]
            assert sorted(c["path"] for c in clips if c["path"]) == sorted(r.path for r in speech)
            assert [c["item"] for c in clips] == list(range(len(clips)))  # global item order


@pytest.mark.slow
def test_snr_targets_follow_the_schedule(store):
    cfg, _, md, _, _ = store
    aug = cfg.augmentation
    layout = store[3]
    mixed = 0
    for key, (lo, hi) in md["snr_schedule"]["epochs"].items():
        split, name = key.split("/")
        epoch = int(name.split("-")[1])
        want = snr_range(aug.snr, epoch, aug.epochs) if split == "train" else aug.eval_snr_db_range
        assert (lo, hi) == pytest.approx(want, abs=1e-3)
        for c in layout.open(Split(split), epoch).clip_info():
            if c["label"] == "background":
                assert c["snr_db"] is None  # background windows are all signal: nothing mixed in
            elif c["snr_db"] is not None:
                mixed += c["label"] == "positive"
                assert lo - 1e-3 <= c["snr_db"] <= hi + 1e-3, (key, c)
    assert mixed > 5
    assert md["snr_schedule"]["shape"] == aug.snr.shape.value


@pytest.mark.slow
def test_every_batch_and_epoch_draws_its_own_augmentation(store):
    cfg, _, _, layout, _ = store
    bs = cfg.augmentation.batch_size
    per_epoch = []
    for epoch in range(cfg.augmentation.epochs):
        gains = [c["gain_db"] for c in layout.open(Split.TRAIN, epoch).clip_info()]
        batches = [tuple(gains[i:i + bs]) for i in range(0, len(gains) - bs + 1, bs)]
        assert len(batches) >= 3 and len(set(batches)) == len(batches), "batches share their randomness"
        per_epoch.append(gains)
    assert len({tuple(g) for g in per_epoch}) == len(per_epoch), "epochs share their randomness"


@pytest.mark.slow
def test_ambient_sets_hold_each_background_file_unaugmented(store, dataset):
    cfg, _, md, layout, _ = store
    records = dataset.read_manifest()
    assert not (layout.root / "train" / "ambient").exists()
    for split in (Split.VALIDATION, Split.TEST):
        bg = sorted((r for r in records if r.label is Label.BACKGROUND and r.split is split), key=lambda r: r.path)
        assert bg, f"the tiny dataset should have background audio in {split.value}"
        fs = layout.open(split, None)
        assert [c["path"] for c in fs.clip_info()] == [r.path for r in bg]
        assert all(fs.label(i) is Label.BACKGROUND for i in range(len(fs)))
        for i, r in enumerate(bg):
            frames = len(fs.clip(i))
            assert frames == n_frames(int(round(r.duration_s * SR)))
            assert abs(frames - r.duration_s * 100) <= 3


@pytest.mark.slow
def test_background_windows_per_split(store, dataset):
    cfg, _, md, _, _ = store
    aug = cfg.augmentation
    records = dataset.read_manifest()
    for split in Split:
        hours = sum(r.duration_s for r in records if r.label is Label.BACKGROUND and r.split is split
                    and r.source != "condition_stream") / 3600  # speech-condition streams are measured only
        key = f"{split.value}/epoch-000"
        assert md["sets"][key]["counts"].get("background", 0) == round(hours * aug.background_windows_per_hour)


# --------------------------------------------------------------------------------------------------
# positive placement


@pytest.mark.slow
def test_positives_end_a_margin_before_the_window_end(store, dataset):
    cfg, *_ = store
    aug = cfg.augmentation
    n = int(round(aug.clip_duration_s * SR))
    items = [it for it in stage.items_for(dataset.read_manifest(), Split.TRAIN, [], aug)
             if it.label is Label.POSITIVE]
    assert len(items) >= 5
    lo, hi = aug.positive_end_margin_s_range
    for seed in range(5):
        clean, start, end, anchor, mixable = stage._place(items, dataset, n, aug, [], np.random.default_rng(seed))
        margins = np.random.default_rng(seed).uniform(lo, hi, len(items))  # _place's first draw
        assert np.all(np.abs(end - (n - margins * SR)) <= 1)
        assert np.all((n - end >= lo * SR) & (n - end <= hi * SR + 1))
        np.testing.assert_array_equal(anchor, end)
        assert mixable.all()
        for i, it in enumerate(items):
            audio = _read(dataset, it.record)
            np.testing.assert_array_equal(clean[i, start[i]:end[i]], audio[len(audio) - (end[i] - start[i]):])
            assert not clean[i, :start[i]].any() and not clean[i, end[i]:].any()


@pytest.mark.slow
def test_evaluation_positives_keep_the_margin_and_are_followed_by_a_tail(store, dataset):
    cfg, *_ = store
    aug = cfg.augmentation
    n, tail = int(round(aug.clip_duration_s * SR)), int(round(aug.eval_tail_s * SR))
    assert tail > 0
    items = [it for it in stage.items_for(dataset.read_manifest(), Split.VALIDATION, [], aug)
             if it.label is Label.POSITIVE]
    assert items
    lo, hi = aug.positive_end_margin_s_range
    clean, start, end, anchor, _ = stage._place(items, dataset, n, aug, [], np.random.default_rng(0), tail)
    assert clean.shape == (len(items), n + tail)
    # the wake word ends where it does in training windows; the tail is what the device hears next
    assert np.all((n - end >= lo * SR) & (n - end <= hi * SR + 1))
    assert not clean[:, n:].any()


def _read(dataset, record):
    from components.common.audio import read_wav_int16

    return read_wav_int16(dataset.root / record.path).astype(np.float32) / 32768.0


def test_long_positive_keeps_its_end(tmp_path):
    cfg = config("augmentation.clip_duration_s=1.2")  # still shorter than the 2.5 s clip; fits the smoke teachers
    aug = cfg.augmentation
    layout = DatasetLayout(tmp_path)
    audio = (speechlike(2.5, seed=3) * 32767).astype(np.int16)
    audio[-50:] = 12345  # a marker at the very end of the wake word
    path = layout.clip_path(Label.POSITIVE, "f" * 64)
    write_wav(path, audio)
    neg_audio = (speechlike(1.7, seed=4) * 32767).astype(np.int16)
    neg_path = layout.clip_path(Label.NEGATIVE, "e" * 64)
    write_wav(neg_path, neg_audio)
    recs = [ManifestRecord(layout.relative(path), Label.POSITIVE, Split.TRAIN, "v", "user", 2.5, "f" * 64),
            ManifestRecord(layout.relative(neg_path), Label.NEGATIVE, Split.TRAIN, "v", "user", 1.7, "e" * 64)]
    items = stage.items_for(recs, Split.TRAIN, [], aug)
    n = SR
    clean, start, end, anchor, _ = stage._place(items, layout, n, aug, [], np.random.default_rng(0))
    pos = [i for i, it in enumerate(items) if it.label is Label.POSITIVE][0]
    neg = 1 - pos
    margin = np.random.default_rng(0).uniform(*aug.positive_end_margin_s_range, 2)[pos]
    assert start[pos] == 0 and end[pos] == n - int(margin * SR)
    np.testing.assert_array_equal(clean[pos, :end[pos]], audio[-end[pos]:].astype(np.float32) / 32768)
    assert np.all(clean[pos, end[pos] - 50:end[pos]] == np.float32(12345 / 32768))
    assert not clean[pos, end[pos]:].any()
    # A long non-positive is cropped to the window somewhere inside it.
    assert start[neg] == 0 and end[neg] == n
    window = (clean[neg] * 32768).round().astype(np.int16)
    offsets = [o for o in range(len(neg_audio) - n + 1) if window[0] == neg_audio[o]
               and np.array_equal(window, neg_audio[o:o + n])]
    assert offsets


# --------------------------------------------------------------------------------------------------
# splits without room impulse responses or background audio


@pytest.mark.slow
def test_split_without_rirs_or_background(dataset, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(dataset.root, root)
    layout = DatasetLayout(root)
    dropped = (Label.RIR, Label.BACKGROUND)
    kept = [r for r in layout.read_manifest() if not (r.split is Split.VALIDATION and r.label in dropped)]
    write_jsonl(layout.manifest, kept)
    cfg = config("augmentation.ops.rir_probability=1.0", "augmentation.ops.background_probability=1.0",
                 "augmentation.ops.colored_noise_probability=0.0")
    md = stage.run(root, tmp_path / "out", cfg, show_progress=False)
    out = FeatureStoreLayout(tmp_path / "out")
    assert "validation/ambient" not in md["sets"] and "test/ambient" in md["sets"]
    val = out.open(Split.VALIDATION, 0)
    speech = [r for r in kept if r.split is Split.VALIDATION and r.label in stage.SPEECH_LABELS]
    assert len(val) == len(speech) > 0
    info = val.clip_info()
    assert all(c["rir"] == -1 and c["snr_db"] is None for c in info)  # nothing to convolve or mix with
    assert Label.BACKGROUND.value not in md["sets"]["validation/epoch-000"]["counts"]
    assert np.all(np.diff(val.offsets) == md["eval_frames_per_clip"])
    # The other splits still get both.
    test = out.open(Split.TEST, 0).clip_info()
    assert all(c["rir"] >= 0 for c in test)
    assert all(c["snr_db"] is not None for c in test if c["label"] != "background")
    assert val.labels.tolist() == sorted(val.labels.tolist(), key=lambda c: list(Label)[c].value)
    assert LABEL_CODES[Label.POSITIVE] in val.labels.tolist()


@pytest.mark.slow
def test_dataset_without_any_rirs_or_background(dataset, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(dataset.root, root)
    layout = DatasetLayout(root)
    kept = [r for r in layout.read_manifest() if r.label not in (Label.RIR, Label.BACKGROUND)]
    write_jsonl(layout.manifest, kept)
    md = stage.run(root, tmp_path / "out", config(), show_progress=False)
    assert not any(k.endswith("/ambient") for k in md["sets"])
    for key, info in md["sets"].items():
        assert "background" not in info["counts"]
        out = FeatureStoreLayout(tmp_path / "out")
        for c in out.open_dir(out.set_dir_named(Split(key.split("/")[0]), key.split("/")[1])).clip_info():
            assert c["rir"] == -1
    assert json.loads((tmp_path / "out" / "metadata.json").read_text())["sets"] == md["sets"]
    # without rooms or background a far-field or noisy set would be mislabelled: left out, and said so
    for split in ("validation", "test"):
        assert set(md["skipped_conditions"][split]) == {"far_field", "noisy"}
        assert f"{split}/condition-clean" in md["sets"] and f"{split}/condition-far_field" not in md["sets"]


# --------------------------------------------------------------------------------------------------
# hard negatives from background_mining


def _hard_negatives(root, n: int = 5) -> DatasetLayout:
    """A background_mining Dataset: its clips relative to *its* directory, not the data_prep dataset's."""
    layout = DatasetLayout(root)
    records = []
    for i in range(n):
        audio = (speechlike(1.5, seed=100 + i) * 32767).astype(np.int16)
        import hashlib

        sha = hashlib.sha256(audio.tobytes()).hexdigest()
        path = layout.clip_path(Label.HARD_NEGATIVE, sha)
        write_wav(path, audio)
        records.append(ManifestRecord(layout.relative(path), Label.HARD_NEGATIVE, Split.TRAIN, "mined", "mining",
                                      1.5, sha, None, f"clips/background/x.wav@{i}.000"))
    write_jsonl(layout.manifest, sorted(records, key=lambda r: r.path))
    return layout


@pytest.mark.slow
def test_hard_negatives_join_the_training_split_from_their_own_directory(dataset, store, tmp_path):
    cfg, _, md_plain, _, _ = store
    cfg = config("augmentation.sample_weights.hard_negative=2.5")
    hn = _hard_negatives(tmp_path / "mined")
    md = stage.run(dataset.root, tmp_path / "s", cfg, show_progress=False, hard_negatives_dir=hn.root)
    assert md["hard_negatives"] == 5
    assert md["input_sha256"] == {"dataset_manifest": sha256_file(dataset.manifest),
                                  "hard_negatives_manifest": sha256_file(hn.manifest)}
    out = FeatureStoreLayout(tmp_path / "s")
    per_clip = md["frames_per_clip"]
    for epoch in range(cfg.augmentation.epochs):
        fs = out.open(Split.TRAIN, epoch)
        info = fs.clip_info()
        mined = [i for i, c in enumerate(info) if c["label"] == "hard_negative"]
        assert sorted(info[i]["path"] for i in mined) == sorted(r.path for r in hn.read_manifest())
        assert all(info[i]["dataset"] == "hard_negatives" for i in mined)
        assert all(fs.label(i) is Label.HARD_NEGATIVE and fs.weights[i] == 2.5 for i in mined)
        assert all(len(fs.clip(i)) == per_clip for i in mined)
        assert md["sets"][f"train/epoch-{epoch:03d}"]["counts"]["hard_negative"] == 5
    for key in ("validation/epoch-000", "test/epoch-000"):  # training data only
        assert "hard_negative" not in md["sets"][key]["counts"]
        assert md["sets"][key]["sha256"] == md_plain["sets"][key]["sha256"]

    # placed like positives: a mined clip ends where the detector fired, so it ends a margin before the window end
    items = [it for it in stage.items_for(dataset.read_manifest(), Split.TRAIN, [], cfg.augmentation,
                                          hn.read_manifest(), hn.root) if it.label is Label.HARD_NEGATIVE]
    assert len(items) == 5 and all(it.root == hn.root for it in items)
    n = int(round(cfg.augmentation.clip_duration_s * SR))
    lo, hi = cfg.augmentation.positive_end_margin_s_range
    clean, start, end, anchor, mixable = stage._place(items, dataset, n, cfg.augmentation, [],
                                                      np.random.default_rng(0))
    assert np.all((n - end >= lo * SR) & (n - end <= hi * SR + 1)) and np.array_equal(anchor, end) and mixable.all()
    for i, it in enumerate(items):
        audio = _read(hn, it.record)
        np.testing.assert_array_equal(clean[i, start[i]:end[i]], audio[len(audio) - (end[i] - start[i]):])

    # shards still gather to the single-shard store
    cfg2 = config("augmentation.sample_weights.hard_negative=2.5", "augmentation.shards=2")
    dirs = [tmp_path / "h0", tmp_path / "h1"]
    for i, d in enumerate(dirs):
        stage.run(dataset.root, d, cfg2, shard_index=i, show_progress=False, hard_negatives_dir=hn.root)
    merged = stage.gather(dirs, tmp_path / "merged")
    single = stage.gather([tmp_path / "s"], tmp_path / "single")
    assert _set_hashes(merged) == _set_hashes(single)


# --------------------------------------------------------------------------------------------------
# evaluation conditions


@pytest.mark.slow
def test_each_condition_set_holds_the_splits_positives_with_their_family(store, dataset):
    cfg, _, md, layout, _ = store
    records = dataset.read_manifest()
    assert layout.conditions(Split.TRAIN) == []
    for split in (Split.VALIDATION, Split.TEST):
        assert layout.conditions(split) == sorted(c.value for c in cfg.augmentation.eval_conditions)
        positives = sorted((r for r in records if r.label is Label.POSITIVE and r.split is split), key=lambda r: r.path)
        for condition in layout.conditions(split):
            fs = layout.open_condition(split, condition)
            info = fs.clip_info()
            assert [c["path"] for c in info] == [r.path for r in positives]
            assert [c["family"] for c in info] == [r.family for r in positives]
            assert all(c["condition"] == condition for c in info)
            assert len(fs.clip(0)) == md["eval_frames_per_clip"]
        clean = layout.open_condition(split, "clean").clip_info()
        assert all(c["snr_db"] is None and c["rir"] == -1 and c["speed"] == 1.0 for c in clean)
        far = layout.open_condition(split, "far_field").clip_info()
        assert all(c["rir"] >= 0 and c["snr_db"] is not None for c in far)
        noisy = layout.open_condition(split, "noisy").clip_info()
        assert all(c["rir"] == -1 and c["snr_db"] is not None for c in noisy)


@pytest.mark.slow
def test_band_limited_positives_lose_the_high_channels(store):
    _, _, _, layout, _ = store
    clean, phone = (layout.open_condition(Split.TEST, c) for c in ("clean", "band_limited"))
    high = slice(32, 40)  # the frontend's channels above ~4 kHz: the telephone band ends at 3.4 kHz
    for i in range(len(clean)):
        assert np.asarray(phone.clip(i))[:, high].mean() < np.asarray(clean.clip(i))[:, high].mean()


@pytest.mark.slow
def test_speech_condition_streams_are_measured_not_mixed(store, dataset):
    _, _, _, layout, _ = store
    for split in (Split.VALIDATION, Split.TEST):
        tagged = layout.ambient_tagged(split)
        assert "clean_speech" in {c for _, c in tagged}
        assert len(layout.ambient(split)) == len(tagged) - 1  # training's checkpoint choice leaves it out
    streams = {r.path for r in dataset.read_manifest() if r.source == "condition_stream"}
    for split in Split:
        for c in layout.open(split, 0).clip_info():
            assert c["path"] not in streams


@pytest.mark.slow
def test_channels_reach_every_training_label_and_only_training(dataset, tmp_path):
    """With channel_probability 1 every training clip, positive, negative or background window, goes through a
    channel, drawn from all of them; validation and test clips never do; and the run is still deterministic."""
    cfg = config("augmentation.ops.channel_probability=1.0", "augmentation.epochs=1")
    md = stage.run(dataset.root, tmp_path / "a", cfg, show_progress=False)
    layout = FeatureStoreLayout(tmp_path / "a")
    train = layout.open(Split.TRAIN, 0).clip_info()
    by_label = {}
    for info in train:
        by_label.setdefault(info["label"], set()).add(info.get("channel"))
    assert set(by_label) >= {"positive", "negative", "adversarial_negative", "background"}
    assert all(None not in used for used in by_label.values())
    assert len(set().union(*by_label.values())) >= 4
    assert all("channel" not in info for info in layout.open(Split.TEST, 0).clip_info())
    again = stage.run(dataset.root, tmp_path / "b", cfg, show_progress=False)
    assert _set_hashes(md) == _set_hashes(again)


# --------------------------------------------------------------------------------------------------
# the embedding teacher's speech embeddings


@pytest.mark.slow
def test_embedding_teacher_gets_embeddings_of_the_augmented_train_and_validation_clips(dataset, store, tmp_path):
    """With distillation.embedding_teacher.weight > 0 every training and validation clip carries the speech
    embedding of the very audio its features came from; the test split never does, the features are unchanged,
    and gather keeps them aligned with the clips."""
    cfg, plain, md, _, _ = store
    on = config("distillation.embedding_teacher.weight=1.0", "distillation.embedding_teacher.embedded_epochs=2")
    shard = FeatureStoreLayout(tmp_path / "shard")
    md_on = stage.run(dataset.root, shard.root, on, show_progress=False)
    assert md_on["speech_embeddings"] is True and md["speech_embeddings"] is False
    for key in md["sets"]:  # same augmentation, same features: embeddings are an addition, not a change
        assert md_on["sets"][key]["sha256"].get("frames.u16") == md["sets"][key]["sha256"].get("frames.u16")
    assert shard.epochs(Split.TRAIN) == [0, 1, 2]
    for epoch in (0, 1):
        fs = shard.open(Split.TRAIN, epoch)
        emb = fs.embeddings()
        assert emb.shape == (len(fs), 16, 96) and emb.dtype == np.float16 and np.isfinite(emb).all()
        assert not plain.open(Split.TRAIN, epoch).has_embeddings
    assert not shard.open(Split.TRAIN, 2).has_embeddings  # beyond embedded_epochs
    val = shard.open(Split.VALIDATION, 0)
    assert val.has_embeddings and len(val.embeddings()) == len(val)
    assert not shard.open(Split.TEST, 0).has_embeddings
    # clips differ, so do their embeddings (far more than float16 rounding)
    fs = shard.open(Split.TRAIN, 0)
    emb = np.asarray(fs.embeddings(), np.float32)
    assert np.abs(emb[0] - emb[1]).max() > 0.1
    gathered = FeatureStoreLayout(tmp_path / "gathered")
    stage.gather([shard.root], gathered.root)
    np.testing.assert_array_equal(gathered.open(Split.TRAIN, 0).embeddings(), fs.embeddings())


def test_the_worker_embeds_the_audio_it_featurises():
    """The pool's worker function gives each clip's frontend features and its front end's embedding."""
    from components.augmentation.features import _featurise_and_embed
    from components.training import speech_embedding
    from components.common.frontend import features_uint16

    clips = [(speechlike(2.0, seed=k) * 32767).astype(np.int16) for k in range(3)]
    out = _featurise_and_embed(clips)
    expected = speech_embedding.default().for_clips(clips)
    for (frames, emb), clip, want in zip(out, clips, expected):
        np.testing.assert_array_equal(frames, features_uint16(clip))
        np.testing.assert_array_equal(emb, want.astype(np.float16))
    # an evaluation clip is embedded without its tail (the word ends near the window's end, as in training)
    cut = _featurise_and_embed(clips, embed_samples=24_000)
    for (frames, emb), clip in zip(cut, clips):
        np.testing.assert_array_equal(frames, features_uint16(clip))  # features keep the whole clip
        np.testing.assert_array_equal(emb, speech_embedding.default().for_clip(clip[:24_000]).astype(np.float16))


def test_a_set_holds_embeddings_for_every_clip_or_none(tmp_path):
    writer = FeatureSetWriter(tmp_path / "set")
    writer.add(np.zeros((3, 40)), Label.NEGATIVE, 1.0, {"item": 0}, np.zeros((16, 96)))
    with pytest.raises(ValueError, match="every clip of a set or for none"):
        writer.add(np.zeros((3, 40)), Label.NEGATIVE, 1.0, {"item": 1})
    writer = FeatureSetWriter(tmp_path / "other")
    writer.add(np.zeros((3, 40)), Label.NEGATIVE, 1.0, {"item": 0})
    with pytest.raises(ValueError, match="every clip of a set or for none"):
        writer.add(np.zeros((3, 40)), Label.NEGATIVE, 1.0, {"item": 1}, np.zeros((16, 96)))
