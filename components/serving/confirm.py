"""Judge-confirmed detections on one stream (`wakeline serve --confirm-with-judge`): the pipeline's cascade
(`components.cascade_evaluation.cascade`) run live.

The sentry (the device model, at the operating point's sentry cutoff) fires at inference t, whose audio ends at
feature frame e = (t + 1) x stride. The detection waits until the stream has produced frame e + after_frames
(`judge_after_s` of audio after the firing point), then the judge scores the stream's own feature frames
[e - context_frames, e + after_frames), clipped to the stream, and the detection is sent only if that score is
above the judge's threshold at the operating point's judge cutoff. This is the segment, the features and the
comparison the cascade evaluation measured (`SegmentWindow.bounds`, `Judge.judge_features(...).score >
Judge.threshold_at(judge_cutoff)`), so the served cascade is the measured one, not a replay with a fresh
frontend. When the stream stops first, what has arrived is judged (the evaluation clips to the stream's end too).

Only the last `max(context_frames + after_frames)` frames are kept (`FrameHistory`, 80 bytes per 10 ms).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from components.serving.catalog import ServedCascade
from components.serving.stream import Firing, FrameHistory


@dataclass(frozen=True)
class Pending:
    """A sentry firing waiting for its judge: model `index` in the stream, and the frames [start, stop) to score."""

    index: int
    firing: Firing
    start: int
    stop: int


@dataclass(frozen=True)
class Confirmation:
    """The judge's answer on one sentry firing."""

    pending: Pending
    score: float
    confirmed: bool
    frames: int  # how many feature frames the judge scored
    judge_ms: float  # wall time of the judge's call


class Confirmations:
    """The sentry firings of one stream that wait for their judge, and the feature history they are judged on."""

    def __init__(self, cascades: dict[int, ServedCascade], strides: dict[int, int]) -> None:
        if not cascades:
            raise ValueError("no judge-confirmed model on this stream")
        self.cascades = cascades
        self.strides = strides
        self.history = FrameHistory(max(c.context_frames + c.after_frames for c in cascades.values()))
        self.pending: list[Pending] = []

    def add(self, index: int, firing: Firing) -> None:
        """A sentry firing of model `index`, to be judged once its after-audio has arrived."""
        cascade = self.cascades[index]
        end = (firing.inference + 1) * self.strides[index]
        self.pending.append(Pending(index, firing, max(0, end - cascade.context_frames), end + cascade.after_frames))

    def due(self, final: bool = False) -> list[tuple[Pending, np.ndarray]]:
        """The pending firings whose segment is complete (every one, with what has arrived, when `final`), each
        with its frames; then the history is trimmed. A firing still pending has its segment start above
        `total - keep` (its end is above `total - after_frames`), so trimming never drops a frame it needs."""
        total = self.history.total
        ready = [p for p in self.pending if final or p.stop <= total]
        out = [(p, self.history.segment(p.start, p.stop)) for p in ready]
        if ready:
            self.pending = [p for p in self.pending if not (final or p.stop <= total)]
        self.history.trim()
        return out


def judge_segment(cascade: ServedCascade, pending: Pending, frames: np.ndarray) -> Confirmation:
    """The judge's verdict on one firing's segment (runs in a worker thread: `Judge` is thread-safe)."""
    t0 = time.perf_counter()
    score = cascade.judge.judge_features(frames).score
    return Confirmation(pending, float(score), bool(score > cascade.threshold), len(frames),
                   (time.perf_counter() - t0) * 1000)
