"""Mining sessions and the chunked scan over real audio and the real frontend, with a small deterministic scorer:
interrupted + resumed == uninterrupted, workers do not change the result, torn session lines are rescanned."""
import json

import numpy as np
import pytest

from components.background_mining import miner
from components.background_mining.scan import Geometry, ScanParams, plan_chunks
from components.background_mining.session import Session
from components.common.audio import write_wav
from components.common.frontend import features_uint16

SR = 16_000
BURSTS_S = [3.2, 11.0, 11.4, 19.95, 33.3]  # where a loud tone ends (11.0 and 11.4: closer than 1 s)


class LoudnessScorer:
    """Loudness of the last 10 frames of 30-frame windows every 3 frames, squashed to (0, 1). Picklable."""

    kind = "probe"
    identity = "test:loudness"
    geometry = Geometry(3, 29, 30)

    def portable(self):
        return self

    def score(self, raw):
        from components.training.batches import stream_windows

        level = stream_windows(np.asarray(raw, np.float32), 30, 3)[:, -10:].mean(axis=(1, 2))
        return (1 / (1 + np.exp(-(level - 400) / 20))).astype(np.float32)


def _recording(tmp_path, name: str, seconds: float, bursts: list[float], seed: int) -> miner.Recording:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * SR)) * 300
    burst = int(0.3 * SR)
    for end in bursts:  # a loud broadband burst
        x[int(end * SR) - burst:int(end * SR)] += rng.standard_normal(burst) * 6000
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    path = tmp_path / f"{name}.wav"
    write_wav(path, pcm)
    import hashlib

    return miner.recording(f"clips/background/{name}.wav", path, hashlib.sha256(pcm.tobytes()).hexdigest())


PARAMS = ScanParams(threshold=0.5, min_separation_s=1.0, chunk_s=5.0)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("recordings")
    return [_recording(d, "bursts", 41.0, BURSTS_S, 0), _recording(d, "quiet", 12.5, [], 1)]


def _scan(root, recordings, **kw):
    scorer = LoudnessScorer()
    session = Session(root, scorer.identity, PARAMS, scorer.geometry)
    outcome = miner.scan(recordings, scorer, PARAMS, session, show_progress=False, **kw)
    return session, outcome, outcome.hits(recordings, PARAMS, scorer.geometry)


def test_hits_are_the_loud_bursts_separated_by_the_minimum(tmp_path, recordings):
    session, outcome, hits = _scan(tmp_path, recordings, workers=1)
    assert outcome.complete and outcome.chunks_reused == 0
    assert outcome.chunks_total == outcome.chunks_scanned == 9 + 3
    assert {h.file for h in hits} == {"clips/background/bursts.wav"}  # nothing in the quiet recording
    ends = sorted(h.end_s for h in hits)
    assert len(ends) == 4  # 11.0 and 11.4 are closer than min_separation_s: one hit
    for want in (3.2, 19.95, 33.3):
        assert min(abs(e - want) for e in ends) < 0.35, (want, ends)
    assert min(abs(e - 11.2) for e in ends) < 0.6
    state = json.loads((session.dir / "state.json").read_text())
    assert all(f["complete"] for f in state["files"].values())
    assert state["files"][recordings[0].sha256]["chunks_done"] == list(range(9))


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, recordings):
    _, whole, want = _scan(tmp_path / "whole", recordings, workers=1)
    with pytest.raises(miner.ScanInterrupted, match="stopped after 4 of 12"):
        _scan(tmp_path / "resumed", recordings, workers=1, stop_after_chunks=4)
    session, resumed, got = _scan(tmp_path / "resumed", recordings, workers=1)
    assert not session.created and resumed.chunks_reused == 4 and resumed.chunks_scanned == 8
    assert got == want
    assert {k: {c: r.to_json() for c, r in v.items()} for k, v in resumed.results.items()} == \
        {k: {c: r.to_json() for c, r in v.items()} for k, v in whole.results.items()}
    _, again, hits = _scan(tmp_path / "resumed", recordings, workers=1)  # a repeated run scans nothing
    assert again.chunks_scanned == 0 and again.chunks_reused == 12 and hits == want


class MainProcessScorer(LoudnessScorer):
    """A scorer that cannot travel (like a generic Keras model): workers featurise, this process scores."""

    def portable(self):
        return None


def test_worker_processes_give_the_same_result(tmp_path, recordings):
    _, _, one = _scan(tmp_path / "one", recordings, workers=1)
    _, outcome, two = _scan(tmp_path / "two", recordings, workers=2)
    assert outcome.chunks_scanned == 12 and two == one
    scorer = MainProcessScorer()
    session = Session(tmp_path / "three", scorer.identity, PARAMS, scorer.geometry)
    three = miner.scan(recordings, scorer, PARAMS, session, workers=2, show_progress=False)
    assert three.hits(recordings, PARAMS, scorer.geometry) == one


def test_a_torn_session_line_is_dropped_and_its_chunk_scanned_again(tmp_path, recordings):
    session, _, want = _scan(tmp_path, recordings[:1], workers=1)
    log = session.log_path(recordings[0].sha256)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:5]) + lines[5][:17])  # killed while writing the sixth line
    session2, outcome, got = _scan(tmp_path, recordings[:1], workers=1)
    assert outcome.chunks_reused == 5 and outcome.chunks_scanned == 4 and got == want
    assert len(log.read_bytes().splitlines()) == 9


def test_the_session_key_is_the_scorer_and_every_parameter_that_shapes_a_chunk(tmp_path):
    g = LoudnessScorer.geometry
    base = Session(tmp_path, "a", PARAMS, g)
    assert Session(tmp_path, "a", PARAMS, g).key == base.key
    others = [Session(tmp_path, "b", PARAMS, g), Session(tmp_path, "a", ScanParams(0.6, 1.0, 5.0), g),
              Session(tmp_path, "a", ScanParams(0.5, 2.0, 5.0), g),
              Session(tmp_path, "a", ScanParams(0.5, 1.0, 6.0), g), Session(tmp_path, "a", PARAMS, Geometry(3, 2, 300))]
    assert len({s.key for s in others} | {base.key}) == 6


def test_chunked_features_match_a_continuous_frontend_after_the_warm_up(recordings):
    """The warm-up makes a chunk's features (nearly all) those of a frontend that ran since the start of the file:
    the frontend's fixed-point noise estimate converges. Checked on every chunk of the recording."""
    rec = recordings[0]
    full = features_uint16(miner.read_span(rec.local, 0, rec.n_samples))
    g = LoudnessScorer.geometry
    same = total = 0
    for plan in plan_chunks(rec.n_samples, g, PARAMS)[1:]:
        chunk = miner.chunk_features(rec.local, plan)
        owned = slice(plan.frame_start + PARAMS.warmup_frames(g), plan.frame_stop)
        got = chunk[PARAMS.warmup_frames(g):]
        same += int((got == full[owned]).all(axis=1).sum())
        total += len(got)
    assert same / total > 0.98
