"""Frozen speech-embedding front end (openWakeWord's TFLite models) and the NumPy head over it."""
import numpy as np
import pytest

from components.training import speech_embedding as se
from components.training.embedding_head import EmbeddingHead, HeadConfig

pytest.importorskip("pyopen_wakeword")  # ships the two models


@pytest.fixture(scope="module")
def front():
    return se.SpeechEmbedding()


def _tone(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * se.SAMPLE_RATE)) / se.SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_shapes_and_determinism(front):
    x = _tone(1.5)
    e = front.embed(x)
    n_chunks = (len(x) - se.CHUNK_SAMPLES) // se.STEP_SAMPLES + 1
    assert e.dtype == np.float32 and e.shape == (n_chunks - 9, se.EMBEDDING_DIM)
    assert np.array_equal(e, front.embed(x))
    assert np.array_equal(e, se.SpeechEmbedding().embed(x))  # a fresh interpreter gives the same bits
    assert np.isfinite(e).all() and e.std() > 0


def test_int16_and_float_inputs_agree(front):
    x = _tone(1.2)
    i16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(front.embed(i16), front.embed(x), atol=0.05)  # int16 rounding only


def test_batch_matches_one_at_a_time(front):
    clips = [_tone(1.0, 1), _tone(1.7, 2), _tone(0.3, 3)]
    many = front.embed_many(clips)
    for c, e in zip(clips, many):
        np.testing.assert_allclose(e, front.embed(c), atol=1e-5)
    assert len(many[2]) == 0  # under ~0.9 s: no full window


def test_short_clip_is_front_padded(front):
    x = _tone(0.5)
    padded = front.pad_front(x, 16)
    assert len(padded) == se.samples_for(16) and np.array_equal(padded[-len(x):], x)
    assert not padded[:-len(x)].any()
    e = se.embeddings_for_clip(x)
    assert e.shape == (16, se.EMBEDDING_DIM)
    np.testing.assert_allclose(e, front.embed(padded)[-16:], atol=1e-5)
    np.testing.assert_allclose(front.for_clips([x, _tone(3.0)])[0], e, atol=1e-5)
    assert front.for_clip(_tone(3.0)).shape == (16, se.EMBEDDING_DIM)  # long clips keep their last 16


@pytest.mark.parametrize("hidden", [0, 16])
def test_head_fits_separable_toy_and_round_trips(tmp_path, hidden):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 4, 8))
    y = (x[:, 0, 0] + x[:, 1, 2] > 0).astype(float)
    head = EmbeddingHead(HeadConfig(hidden=hidden, epochs=100, lr=0.03, seed=3)).fit(x, y)
    p = head.predict_proba(x)
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.95
    again = EmbeddingHead(HeadConfig(hidden=hidden, epochs=100, lr=0.03, seed=3)).fit(x, y)
    assert np.array_equal(again.predict_proba(x), p)  # seeded: same fit, same bits
    head.save(tmp_path / "head.npz")
    loaded = EmbeddingHead.load(tmp_path / "head.npz")
    assert loaded.config == head.config
    assert np.array_equal(loaded.predict_proba(x), p)


def test_matches_the_packages_own_streaming_features(front):
    """Same numbers as pyopen_wakeword's streaming front end (its bundled TFLite C library), which starts
    from 8 s of silence: our mels per 1760-sample chunk, windows every 8 frames."""
    from pyopen_wakeword import OpenWakeWordFeatures

    x = np.round(_tone(1.6, 4) * 32767).astype(np.int16)
    x = x[: len(x) - len(x) % se.STEP_SAMPLES]
    ref_front = OpenWakeWordFeatures.from_builtin()
    ref = np.array([e.reshape(-1) for i in range(0, len(x), se.STEP_SAMPLES)
                    for e in ref_front.process_streaming(x[i:i + se.STEP_SAMPLES].tobytes())])
    ours = front.embed(np.concatenate([np.zeros(8 * se.SAMPLE_RATE, np.int16), x]))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3)
