"""data_prep ingests user recordings from `s3://bucket/prefix` on a real SeaweedFS S3 server (loopback only)."""
from __future__ import annotations

import concurrent.futures
import functools
import io
import json
import socket

import numpy as np
import pytest
import soundfile as sf

from components.common.artifacts import DatasetLayout, Label
from components.common.config import validate
from components.common.storage import StorageError, materialize
from components.data_prep import stage

BUCKET = "wakeline-test-ingest"
PREFIX = "users/positives"
URI = f"s3://{BUCKET}/{PREFIX}"
SEED = 1234
CALL_TIMEOUT_S = 60  # no S3 call in these tests may hang longer than this


def speech_like(sr: int, seed: int, channels: int = 1, duration_s: float = 1.0) -> np.ndarray:
    """~1 s of voiced syllables: harmonic bursts with a gliding pitch under a syllable envelope, a little
    breath noise, peaks around 0.5 (far above the -50 dBFS silence threshold, far below clipping)."""
    rng = np.random.default_rng(seed)
    n = int(sr * duration_s)
    t = np.arange(n) / sr
    out = np.zeros((n, channels), dtype=np.float64)
    for ch in range(channels):
        x = np.zeros(n)
        starts = np.sort(rng.uniform(0.05, duration_s - 0.3, size=3))
        for start in starts:
            length = rng.uniform(0.15, 0.25)
            f0 = rng.uniform(110, 230)
            glide = rng.uniform(-30, 30)
            inside = (t >= start) & (t < start + length)
            tau = t[inside] - start
            phase = 2 * np.pi * (f0 * tau + glide * tau ** 2 / (2 * length))
            voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
            env = np.sin(np.pi * tau / length) ** 2
            x[inside] += voiced * env
        x += 0.01 * rng.standard_normal(n)
        out[:, ch] = x
    out *= 0.5 / np.max(np.abs(out))
    return out.astype(np.float32)


def encode(samples: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@functools.cache
def make_objects() -> dict[str, bytes]:
    """Object key -> bytes. Built once: the Ogg container gets a random stream serial number on every
    encode (libsndfile does not take a seed), so the uploaded bytes are the reference for later checks."""
    return {
        f"{PREFIX}/alice/take-01.wav": encode(speech_like(16_000, SEED + 1), 16_000, "WAV", "PCM_16"),
        f"{PREFIX}/alice/take-02.flac": encode(speech_like(44_100, SEED + 2, channels=2), 44_100, "FLAC", "PCM_24"),
        f"{PREFIX}/alice/empty.wav": b"",
        f"{PREFIX}/bob/take-01.ogg": encode(speech_like(48_000, SEED + 3), 48_000, "OGG", "VORBIS"),
        f"{PREFIX}/bob/take-02.wav": encode(speech_like(22_050, SEED + 4), 22_050, "WAV", "FLOAT"),
        f"{PREFIX}/bob/notes.wav": b"this is a text file, not audio\n",
        f"{PREFIX}/loose.wav": encode(speech_like(16_000, SEED + 5), 16_000, "WAV", "PCM_16"),
        # Outside the prefix (shares its leading characters): must never be ingested.
        "users/positives-extra/carol/take-01.wav": encode(speech_like(16_000, SEED + 6), 16_000, "WAV", "PCM_16"),
    }


USABLE = {
    f"{PREFIX}/alice/take-01.wav": "speaker:alice",
    f"{PREFIX}/alice/take-02.flac": "speaker:alice",
    f"{PREFIX}/bob/take-01.ogg": "speaker:bob",
    f"{PREFIX}/bob/take-02.wav": "speaker:bob",
    f"{PREFIX}/loose.wav": f"file:s3://{BUCKET}/{PREFIX}/loose.wav",
}
BROKEN = {f"{PREFIX}/alice/empty.wav": "empty", f"{PREFIX}/bob/notes.wav": "unreadable"}
OUTSIDE = "users/positives-extra/carol/take-01.wav"


def fast_config(sources: list[str]):
    return validate({
        "wake_word": "hey jarvis",
        "seed": 0,
        "data_prep": {
            "positives": {"piper_clips": 0, "espeak_clips": 0},
            "adversarial": {"piper_clips": 0, "espeak_clips": 0},
            "speech": {"piper_clips": 0, "espeak_clips": 0},
            "min_usable_positives": 1,
            "ambient": {"synthetic_duration_s": 0},
            "rirs": {"count": 0},
            "conditions": {"duration_s": 0, "non_english": {"espeak_clips": 0}},  # no speech to build them from
            "workers": 1,
            "sources": {"positives": sources},
        },
    })


def s3_env(mp: pytest.MonkeyPatch, server, *, secret_key: str | None = None) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    mp.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key if secret_key is None else secret_key)
    mp.setenv("AWS_REGION", server.region)


def within(seconds: float, fn, *args):
    """Run `fn(*args)`, failing the test (not hanging it) if it takes longer than `seconds`."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {seconds} s")
    finally:
        pool.shutdown(wait=False)


@pytest.fixture(scope="module")
def bucket(seaweedfs_s3):
    client = seaweedfs_s3.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    for key, data in make_objects().items():
        client.put_object(BUCKET, key, io.BytesIO(data), length=len(data))
    return BUCKET


@pytest.fixture(scope="module")
def dataset(seaweedfs_s3, bucket, tmp_path_factory):
    out = tmp_path_factory.mktemp("s3-dataset")
    with pytest.MonkeyPatch.context() as mp:
        s3_env(mp, seaweedfs_s3)
        metadata = within(CALL_TIMEOUT_S * 3, lambda: stage.run(out, fast_config([URI]), show_progress=False))
    layout = DatasetLayout(out)
    quarantine = [json.loads(line) for line in layout.quarantine.read_text().splitlines() if line.strip()]
    return layout, layout.read_manifest(), quarantine, metadata


@pytest.mark.slow
def test_usable_s3_files_are_in_the_manifest_with_their_s3_origin(dataset):
    _, manifest, _, _ = dataset
    by_origin = {r.origin: r for r in manifest}
    assert set(by_origin) == {f"s3://{BUCKET}/{key}" for key in USABLE}
    for key, voice in USABLE.items():
        r = by_origin[f"s3://{BUCKET}/{key}"]
        assert r.label is Label.POSITIVE
        assert r.source == "user"
        assert r.voice == voice
        assert 0.3 <= r.duration_s <= 1.05


@pytest.mark.slow
def test_clips_are_16k_mono_whatever_the_input_format(dataset):
    layout, manifest, _, _ = dataset
    for r in manifest:
        info = sf.info(str(layout.root / r.path))
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16"), r.origin
        data, sr = sf.read(str(layout.root / r.path), dtype="float32")
        assert sr == 16_000 and data.ndim == 1
        assert len(data) == pytest.approx(r.duration_s * 16_000, abs=1)
        assert 20 * np.log10(np.sqrt(np.mean(data ** 2))) > -40, f"{r.origin} lost its level"
    flac = next(r for r in manifest if r.origin.endswith("alice/take-02.flac"))
    assert sf.info(str(layout.root / flac.path)).channels == 1  # 44.1 kHz stereo in, 16 kHz mono out


@pytest.mark.slow
def test_each_speaker_stays_in_one_split(dataset):
    _, manifest, _, _ = dataset
    splits: dict[str, set[str]] = {}
    for r in manifest:
        splits.setdefault(r.voice, set()).add(r.split.value)
    assert {"speaker:alice", "speaker:bob"} <= set(splits)
    assert all(len(s) == 1 for s in splits.values()), splits


@pytest.mark.slow
def test_broken_s3_files_are_quarantined_with_their_reason(dataset):
    _, _, quarantine, metadata = dataset
    got = {q["origin"]: q for q in quarantine}
    assert set(got) == {f"s3://{BUCKET}/{key}" for key in BROKEN}
    for key, reason in BROKEN.items():
        q = got[f"s3://{BUCKET}/{key}"]
        assert q["reason"] == reason
        assert q["kind"] == "positive"
        assert q["detail"]
    assert metadata["quarantine_by_reason"] == {"empty": 1, "unreadable": 1}


@pytest.mark.slow
def test_objects_outside_the_prefix_are_not_ingested(dataset):
    layout, manifest, quarantine, _ = dataset
    origins = {r.origin for r in manifest} | {q["origin"] for q in quarantine}
    assert f"s3://{BUCKET}/{OUTSIDE}" not in origins
    assert all(o.startswith(f"{URI}/") for o in origins)
    assert "positives-extra" not in layout.manifest.read_text()


@pytest.mark.slow
def test_metadata_records_the_s3_source(dataset):
    _, manifest, _, metadata = dataset
    assert list(metadata["input_sha256"]) == [URI]
    assert len(metadata["input_sha256"][URI]) == 64
    assert metadata["counts"]["positive"] == {
        split: sum(1 for r in manifest if r.split.value == split) for split in ("train", "validation", "test")}


@pytest.mark.slow
def test_materialize_lists_sorted_and_downloads_byte_identical(seaweedfs_s3, bucket, tmp_path, monkeypatch):
    s3_env(monkeypatch, seaweedfs_s3)
    files = within(CALL_TIMEOUT_S, materialize, URI, tmp_path)
    objects = make_objects()
    inside = sorted(k for k in objects if k.startswith(f"{PREFIX}/"))
    assert [f.origin for f in files] == [f"s3://{BUCKET}/{k}" for k in inside]
    for f, key in zip(files, inside):
        assert f.local_path.read_bytes() == objects[key]
        assert str(f.relative) == key[len(PREFIX) + 1:]
    assert {f.group for f in files} == {"alice", "bob", None}


@pytest.mark.slow
def test_a_wrong_secret_key_is_a_clear_storage_error(seaweedfs_s3, bucket, tmp_path, monkeypatch):
    s3_env(monkeypatch, seaweedfs_s3, secret_key="not-the-secret")
    with pytest.raises(StorageError) as err:
        within(CALL_TIMEOUT_S, materialize, URI, tmp_path)
    assert URI in str(err.value)
    assert not any(tmp_path.rglob("*.wav")), "nothing may be downloaded without valid credentials"


@pytest.mark.slow
def test_a_missing_bucket_is_a_clear_storage_error(seaweedfs_s3, tmp_path, monkeypatch):
    s3_env(monkeypatch, seaweedfs_s3)
    uri = "s3://wakeline-no-such-bucket/users/positives"
    with pytest.raises(StorageError) as err:
        within(CALL_TIMEOUT_S, materialize, uri, tmp_path)
    assert uri in str(err.value)


@pytest.mark.slow
def test_an_unreachable_endpoint_is_a_clear_storage_error(seaweedfs_s3, tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    s3_env(monkeypatch, seaweedfs_s3)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as err:
        within(CALL_TIMEOUT_S, materialize, URI, tmp_path)
    assert URI in str(err.value)


@pytest.mark.slow
def test_an_invalid_bucket_name_is_a_storage_error(seaweedfs_s3, tmp_path, monkeypatch):
    s3_env(monkeypatch, seaweedfs_s3)
    with pytest.raises(StorageError, match="s3://b/"):
        within(CALL_TIMEOUT_S, materialize, "s3://b/x", tmp_path)


@pytest.mark.slow
def test_object_keys_cannot_escape_the_download_folder(seaweedfs_s3, tmp_path, monkeypatch):
    from components.common.storage import _materialize_s3

    class Obj:
        is_dir = False
        object_name = "users/positives/../../../../escape.wav"

    class FakeListing:  # a hostile listing; SeaweedFS itself normalises such keys on upload
        def list_objects(self, *a, **k):
            return [Obj()]

        def fget_object(self, *a, **k):
            raise AssertionError("must not download")

    with pytest.raises(StorageError, match="leaves the download folder"):
        _materialize_s3("s3://bucket/users/positives", tmp_path / "cache", FakeListing())
