"""`wakeline serve --confirm-with-judge` against the pipeline's cascade: a store whose hey_jarvis was published
with a cascade (sentry cutoff 0.5, the judge an official hey_jarvis on fresh state at 0.5) is streamed a
recording of four "hey jarvis" and four near misses ("hey marvin", "jarvis", "hey travis", "harvest") in noise,
the way Home Assistant streams. At 0.5 the sentry also fires on "hey travis"; the judge must reject that one.
Parity: the served detections are exactly the ones the cascade evaluation counts as accepted on the same audio
(`cascade.evaluate_cascade` on that one stream, and the per-activation rule it applies: `activations` at the
sentry cutoff, `SegmentWindow.bounds`, `Judge.judge_features(...).score > Judge.threshold_at(judge_cutoff)`)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from components.cascade_evaluation.cascade import SegmentWindow, Stream, evaluate_cascade
from components.common.audio import resample, to_int16
from components.common.frontend import features_uint16
from components.common.metrics import activations
from components.runtime.tflm import TflmStreamer
from components.serving.catalog import ServedModel, discover
from components.serving.server import ServeSettings, ServeThread
from components.serving.stream import inference_end_ms
from tests.components.test_serve import Streamed, ha_stream
from tests.unit.test_serving import make_cascade_store

pytestmark = pytest.mark.slow  # starts servers, synthesises speech with piper

SR = 16_000
WORD = "hey_jarvis"
PHRASES = [("hey jarvis", 1.0, 0.667), ("hey marvin", 1.0, 0.667), ("hey jarvis", 1.15, 0.5), ("jarvis", 1.0, 0.667),
           ("hey travis", 1.0, 0.667), ("hey jarvis", 0.9, 0.667), ("harvest", 1.0, 0.6), ("hey jarvis", 1.05, 0.6)]


@dataclass
class Expected:
    """What the cascade evaluation decides on one stream: the sentry's activations and the accepted ones."""

    fired: list[int]  # inferences where the sentry (at the sentry cutoff) fires
    scores: list[float]  # the judge's score on each one's segment
    confirmed: list[int]  # the inferences the judge accepts


@pytest.fixture(scope="module")
def cascade_audio() -> np.ndarray:
    """~25 s: 2 s of noise, then each phrase of PHRASES followed by 2 s of noise (seeded)."""
    from components.synthesis.ambient import coloured_noise
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    jobs = [PiperJob(text, length, noise, 0.8) for text, length, noise in PHRASES]
    speech = [to_int16(resample(pcm.astype(np.float32) / 32768, sr)) for pcm, sr in synthesize_many(jobs, seed=11)]
    rng = np.random.default_rng(20)
    noise = lambda s: (to_int16(coloured_noise(int(s * SR), rng)) // 8).astype(np.int16)  # noqa: E731 - ~-38 dBFS
    return np.concatenate([noise(2.0)] + [part for s in speech for part in (s, noise(2.0))])


def cascade_decision(model: ServedModel, audio: np.ndarray) -> Expected:
    """The cascade evaluation's decision on `audio` as one stream, at the model's published operating point."""
    cascade = model.cascade
    assert cascade is not None
    features = features_uint16(audio)
    stream = Stream(TflmStreamer(model.tflite, model.arena)(features), features)
    window = SegmentWindow.from_seconds(cascade.context_s, cascade.after_s, model.settings)
    judge = cascade.judge
    fired = activations(stream.outputs, cascade.sentry_cutoff, model.settings, quantized=True).tolist()
    scores = []
    for t in fired:
        start, stop = window.bounds(t, len(features))
        scores.append(judge.judge_features(features[start:stop]).score)
    threshold = judge.threshold_at(cascade.judge_cutoff)
    expected = Expected(fired, scores, [t for t, s in zip(fired, scores) if s > threshold])
    # the stage's own function agrees: the stream as ambient audio, its false accepts are the accepted activations
    result = evaluate_cascade([stream], [stream], lambda f: judge.judge_features(f).score,
                              shipped_cutoff=model.cutoff, sentry_cutoffs=[cascade.sentry_cutoff],
                              judge_cutoffs=[cascade.judge_cutoff], window=window, target_fa_per_hour=1e9,
                              judge_threshold=judge.threshold_at, settings=model.settings)
    point = result.point(cascade.sentry_cutoff, cascade.judge_cutoff)
    sentry = next(p for p in result.sentry if p.cutoff == round(cascade.sentry_cutoff, 4))
    assert (sentry.false_accepts, point.false_accepts) == (len(fired), len(expected.confirmed))
    return expected


class RecordingJudge:
    """The judge, keeping every segment of features it was asked to score."""

    def __init__(self, judge) -> None:
        self.judge, self.segments = judge, []

    def judge_features(self, frames: np.ndarray):
        self.segments.append(np.array(frames))
        return self.judge.judge_features(frames)

    def __getattr__(self, name: str):
        return getattr(self.judge, name)


def serve_once(store: Path, audio: np.ndarray, confirm: bool = True, models: list[ServedModel] | None = None,
               **kw) -> tuple[list[ServedModel], Streamed]:
    models = models or discover(store, confirm=confirm)
    with ServeThread(models, ServeSettings(port=0, http_port=None)) as server:
        streamed = asyncio.run(ha_stream(server.bound.host, server.bound.port, audio, **kw))
    assert not streamed.errors, streamed.errors
    return models, streamed


def test_judge_confirmed_detections_equal_the_cascade_evaluations(tmp_path, cascade_audio):
    model = discover(make_cascade_store(tmp_path / "store"), confirm=True)[0]
    recorder = RecordingJudge(model.cascade.judge)
    model = replace(model, cascade=replace(model.cascade, judge=recorder))
    _, streamed = serve_once(tmp_path, cascade_audio, models=[model])
    served_segments = recorder.segments[ServeSettings().judge_workers:]  # after the warm-up, one per pool thread
    expected = cascade_decision(model, cascade_audio)
    # the judge saw exactly the segments the evaluation scores: the stream's features, the same frames
    features = features_uint16(cascade_audio)
    window = SegmentWindow.from_seconds(model.cascade.context_s, model.cascade.after_s, model.settings)
    assert len(served_segments) == len(expected.fired)
    for t, got in zip(expected.fired, served_segments):
        start, stop = window.bounds(t, len(features))
        np.testing.assert_array_equal(got, features[start:stop])
    # the case is not trivial: the sentry fires on the four words and on a near miss, which the judge rejects
    assert len(expected.fired) == 5 and len(expected.confirmed) == 4, expected
    assert [d.context["inference"] for d in streamed.detections] == expected.confirmed
    assert [d.timestamp for d in streamed.detections] == [inference_end_ms(t, model.settings.stride_frames)
                                                          for t in expected.confirmed]
    judged = dict(zip(expected.fired, expected.scores))
    assert [d.context["judge_score"] for d in streamed.detections] == [round(judged[t], 4) for t in expected.confirmed]
    assert all(d.context["cutoff"] == 0.5 and d.context["judge_cutoff"] == 0.5 for d in streamed.detections)
    # in 10 ms chunks (what HA sends) the same detections
    _, small = serve_once(make_cascade_store(tmp_path / "store10"), cascade_audio, chunk_bytes=320)
    assert [d.context["inference"] for d in small.detections] == expected.confirmed


def test_a_judge_that_rejects_everything_suppresses_every_detection(tmp_path, cascade_audio):
    """Judge cutoff 1.0: no score is above 255/256, so nothing is sent, though the sentry fires five times."""
    store = make_cascade_store(tmp_path / "store", judge_cutoff=1.0)
    models, streamed = serve_once(store, cascade_audio)
    expected = cascade_decision(models[0], cascade_audio)
    assert len(expected.fired) == 5 and expected.confirmed == []
    assert (streamed.detections, streamed.not_detected) == ([], 1)
    # served without the flag, the same folder is the device model alone, at the manifest's cutoff: it fires
    _, alone = serve_once(store, cascade_audio, confirm=False)
    assert len(alone.detections) == 4 and {d.context["cutoff"] for d in alone.detections} == {0.97}


def test_a_detection_pending_at_audio_stop_is_judged_on_what_arrived(tmp_path, cascade_audio):
    """The stream ends 120 ms after the sentry fires on the first word (its judge wants 300 ms after): the
    judge scores what arrived, as the evaluation clips a segment to its stream's end, and confirms."""
    store = make_cascade_store(tmp_path / "store")
    model = discover(store, confirm=True)[0]
    first = cascade_decision(model, cascade_audio).fired[0]
    cut = (inference_end_ms(first, model.settings.stride_frames) + 120) * SR // 1000
    short = cascade_audio[:cut]
    expected = cascade_decision(model, short)
    assert expected.fired == [first] and expected.confirmed == [first]
    _, streamed = serve_once(store, short)
    assert [d.context["inference"] for d in streamed.detections] == [first]
    assert streamed.detections[0].context["judge_score"] == round(expected.scores[0], 4)
