"""Cascade evaluation, the pure core: a small on-device sentry fires, and a larger server-side judge confirms
or rejects the detection.

An ESPHome device runs the shipped INT8 model (the *sentry*). When it fires at inference `t`, it sends the
audio around the detection to the judge (by default teacher A): the `judge_context_s` before the detection and
the `judge_after_s` after it (the device keeps streaming while it sends; both clipped to the stream). The judge
accepts when its score, the peak of its sliding-window mean probability (`Judge.judge_features`), exceeds the
judge cutoff. So the sentry can run at a lower cutoff (fewer false rejects) while the judge removes most false
accepts.

Over a grid of sentry cutoffs (from `sentry_cutoff_floor` up to the shipped cutoff) x judge cutoffs this
measures, on the test split:

- the sentry alone, at each sentry cutoff: ESPHome's detector (`metrics.activations`: uint8 sliding window,
  refractory period; a positive clip from fresh state, ambient recordings as continuous streams); FRR = the
  positive clips with no activation, FA/h = activations on ambient audio / the measured hours;
- the cascade: each activation is judged; a positive clip is detected when any of its activations is
  accepted; FA/h = accepted activations on ambient audio / hours. `judge_requests_per_hour` is the judge's load:
  the sentry's activations per hour of ambient audio.

The judge is asked once per (stream, activation index): activations at a lower sentry cutoff are, in practice,
a superset of those at a higher one, and every unique index is scored once and reused across the grid.

What this does not model exactly: the judge scores the *stream's* features around each activation, so the
frontend's state (noise estimate, PCAN gain) continues from the stream. The server instead runs a fresh
frontend on the audio it receives, whose noise estimate settles during the first few hundred ms of the
segment. With `judge_context_s` well above the judge's window the difference sits in the oldest part of the
segment, but the measured cascade is the stream-features cascade, not a byte-exact replay of the server.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from components.common.metrics import ESPHOME_DETECTOR, DetectorSettings, activations

ScoreSegment = Callable[[np.ndarray], float]  # raw uint16 features [frames, 40] -> the judge's score
EPS = 1e-12


@dataclass(frozen=True)
class Stream:
    """One evaluation stream: the sentry's uint8 outputs (one per inference) and the raw uint16 features
    `[frames, 40]` they were computed from (inference `t` consumed frames `[t*stride, (t+1)*stride)`)."""

    outputs: np.ndarray
    features: np.ndarray


@dataclass(frozen=True)
class SegmentWindow:
    """Which feature frames the device sends for an activation at inference `t`."""

    context_frames: int  # before the end of inference t
    after_frames: int  # after it
    stride_frames: int

    @classmethod
    def from_seconds(cls, context_s: float, after_s: float,
                     settings: DetectorSettings = ESPHOME_DETECTOR) -> "SegmentWindow":
        if context_s <= 0 or after_s < 0:
            raise ValueError(f"judge_context_s must be > 0 and judge_after_s >= 0 (got {context_s}, {after_s})")
        return cls(int(round(context_s * 1000 / settings.step_ms)), int(round(after_s * 1000 / settings.step_ms)),
                   settings.stride_frames)

    def bounds(self, t: int, n_frames: int) -> tuple[int, int]:
        """`[start, stop)` frames for an activation at inference `t`, clipped to the stream."""
        end = (int(t) + 1) * self.stride_frames
        return max(0, end - self.context_frames), min(int(n_frames), end + self.after_frames)


@dataclass(frozen=True)
class SentryPoint:
    cutoff: float
    frr: float
    false_accepts: int
    fa_per_hour: float


@dataclass(frozen=True)
class CascadePoint:
    sentry_cutoff: float
    judge_cutoff: float
    frr: float
    false_accepts: int
    fa_per_hour: float
    judge_requests_per_hour: float  # sentry activations per hour of ambient audio: what the server must judge


@dataclass(frozen=True)
class Reduction:
    """Sentry-alone FA/h (at its shipped cutoff) / cascade FA/h, at an equal or better FRR.

    `kind`: "ratio" (both measured), "lower_bound" (the cascade made no false accept: counted as one false
    accept over the test hours, so the reduction is at least `value`), or "undefined" (`value` None: see
    `reason`)."""

    value: float | None
    kind: str
    reason: str
    point: CascadePoint | None = None


@dataclass
class CascadeResult:
    shipped_cutoff: float
    target_fa_per_hour: float
    ambient_hours: float
    positives: int
    sentry: list[SentryPoint]
    grid: list[CascadePoint]
    sentry_alone: SentryPoint
    chosen: CascadePoint | None
    chosen_reason: str
    reduction: Reduction
    judged_segments: int  # unique (stream, activation) segments the judge scored
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sentry_cutoffs(self) -> list[float]:
        return [p.cutoff for p in self.sentry]

    @property
    def judge_cutoffs(self) -> list[float]:
        return sorted({p.judge_cutoff for p in self.grid})

    def point(self, sentry_cutoff: float, judge_cutoff: float) -> CascadePoint:
        for p in self.grid:
            if math.isclose(p.sentry_cutoff, sentry_cutoff) and math.isclose(p.judge_cutoff, judge_cutoff):
                return p
        raise KeyError(f"no grid point at sentry {sentry_cutoff}, judge {judge_cutoff}")

    def as_dict(self) -> dict[str, Any]:
        r = self.reduction
        return {"shipped_cutoff": self.shipped_cutoff, "target_fa_per_hour": self.target_fa_per_hour,
                "ambient_hours": self.ambient_hours, "positives": self.positives,
                "judged_segments": self.judged_segments,
                "sentry_alone": asdict(self.sentry_alone),
                "chosen": asdict(self.chosen) if self.chosen else None, "chosen_reason": self.chosen_reason,
                "fa_per_hour_reduction": r.value, "reduction_kind": r.kind, "reduction_reason": r.reason,
                "reduction_point": asdict(r.point) if r.point else None,
                "sentry_cutoffs": self.sentry_cutoffs, "judge_cutoffs": self.judge_cutoffs,
                "sentry_points": [asdict(p) for p in self.sentry], "grid": [asdict(p) for p in self.grid], **self.extra}


def sentry_cutoff_grid(shipped: float, floor: float, step: float) -> list[float]:
    """From the shipped cutoff down in `step`s to `floor` (inclusive), ascending; the shipped cutoff is always in."""
    if step <= 0:
        raise ValueError(f"sentry_cutoff_step must be > 0, got {step}")
    n = int(math.floor((shipped - floor) / step + 1e-9)) if shipped > floor else 0
    return sorted({round(shipped - k * step, 4) for k in range(n + 1)} | {round(float(shipped), 4)})


def judge_cutoff_grid(step: float, calibrated: float | None = None) -> list[float]:
    """0, step, 2 step, ... below 1, plus the judge's own calibrated cutoff."""
    if step <= 0:
        raise ValueError(f"judge_cutoff_step must be > 0, got {step}")
    grid = {round(k * step, 4) for k in range(int(math.ceil(1 / step - 1e-9)))}
    if calibrated is not None:
        grid.add(round(float(calibrated), 4))
    return sorted(grid)


def _pick(points: Sequence[CascadePoint], key: Callable[[CascadePoint], tuple]) -> CascadePoint | None:
    """The point with the smallest key; among points tied on it (they differ only in the judge cutoff), the
    middle judge cutoff: the most margin on both sides, as `metrics.at_fa_target` takes a plateau's middle."""
    if not points:
        return None
    best = min(key(p) for p in points)
    ties = sorted((p for p in points if key(p) == best), key=lambda p: p.judge_cutoff)
    return ties[(len(ties) - 1) // 2]


def choose(grid: Sequence[CascadePoint], target_fa_per_hour: float) -> tuple[CascadePoint | None, str]:
    """Among grid points with cascade FA/h <= the target, the lowest FRR; ties: lower FA/h, then the higher
    sentry cutoff (fewer requests to the judge), then the middle of the tied judge cutoffs."""
    ok = [p for p in grid if p.fa_per_hour <= target_fa_per_hour + EPS]
    point = _pick(ok, lambda p: (p.frr, p.fa_per_hour, -p.sentry_cutoff))
    if point is None:
        best = min(grid, key=lambda p: p.fa_per_hour, default=None)
        return None, (f"no grid point meets the FA/h target {target_fa_per_hour:g} (lowest cascade FA/h "
                      f"{best.fa_per_hour:.2f})" if best else "the grid is empty")
    return point, (f"the lowest FRR among the {len(ok)} of {len(grid)} grid points with cascade FA/h <= "
                   f"{target_fa_per_hour:g}; ties: lower FA/h, then the higher sentry cutoff")


def reduction(sentry_alone: SentryPoint, grid: Sequence[CascadePoint], hours: float) -> Reduction:
    """How much the judge cuts the false accepts without giving up recall: sentry-alone FA/h at its shipped
    cutoff / the lowest cascade FA/h among grid points whose FRR is equal or better (lower)."""
    if hours <= 0:
        return Reduction(None, "undefined", "no test ambient audio: FA/h is not measured")
    if sentry_alone.false_accepts == 0:
        return Reduction(None, "undefined", f"the sentry alone made no false accept in {hours * 60:.1f} min of "
                                            f"test ambient audio at its shipped cutoff {sentry_alone.cutoff:g}: "
                                            f"nothing to reduce, and no ratio to measure")
    ok = [p for p in grid if p.frr <= sentry_alone.frr + EPS]
    point = _pick(ok, lambda p: (p.fa_per_hour, p.frr, -p.sentry_cutoff))
    if point is None:
        return Reduction(None, "undefined", f"no cascade point keeps the FRR at or below the sentry's "
                                            f"{sentry_alone.frr:.1%}")
    if point.false_accepts == 0:
        floor = 1.0 / hours  # one false accept over the test hours
        return Reduction(sentry_alone.fa_per_hour / floor, "lower_bound",
                         f"the cascade made no false accept in {hours * 60:.1f} min of test ambient audio; counted "
                         f"as one ({floor:.2f} FA/h), so the reduction is at least this", point)
    return Reduction(sentry_alone.fa_per_hour / point.fa_per_hour, "ratio",
                     "sentry-alone FA/h / cascade FA/h, at an equal or better FRR", point)


def evaluate_cascade(positives: Sequence[Stream], ambient: Sequence[Stream], score_segment: ScoreSegment, *,
                     shipped_cutoff: float, sentry_cutoffs: Sequence[float], judge_cutoffs: Sequence[float],
                     window: SegmentWindow, target_fa_per_hour: float,
                     judge_threshold: Callable[[float], float] = float,
                     settings: DetectorSettings = ESPHOME_DETECTOR) -> CascadeResult:
    """FRR and FA/h of the sentry alone and of the cascade over the grid (see the module docstring).

    `score_segment` is the judge (e.g. `lambda f: judge.judge_features(f).score`); `judge_threshold` maps a
    judge cutoff to the score it must exceed (`Judge.threshold_at`: the cutoff itself for float outputs)."""
    if not positives:
        raise ValueError("no positive test clips: the cascade's FRR cannot be measured")
    cutoffs = sorted({round(float(c), 4) for c in sentry_cutoffs} | {round(float(shipped_cutoff), 4)})
    judge_cutoffs = sorted({round(float(c), 4) for c in judge_cutoffs})
    if not judge_cutoffs:
        raise ValueError("no judge cutoffs to evaluate")
    hours = sum(len(s.outputs) for s in ambient) * settings.inference_s / 3600
    streams = {"positive": list(positives), "ambient": list(ambient)}
    fired = {(kind, i, c): activations(s.outputs, c, settings, quantized=True)
             for c in cutoffs for kind, group in streams.items() for i, s in enumerate(group)}

    scores: dict[tuple[str, int, int], float] = {}
    for kind, i, t in sorted({(k, i, int(t)) for (k, i, _), ts in fired.items() for t in ts}):
        features = streams[kind][i].features
        start, stop = window.bounds(t, len(features))
        scores[(kind, i, t)] = float(score_segment(np.asarray(features[start:stop])))

    n_pos = len(positives)
    per_hour = (lambda n: n / hours) if hours > 0 else (lambda n: float("nan"))
    sentry, grid = [], []
    for c in cutoffs:
        pos_best = np.array([max((scores[("positive", i, int(t))] for t in fired[("positive", i, c)]),
                                 default=-np.inf) for i in range(n_pos)])
        amb = np.array([scores[("ambient", i, int(t))] for i in range(len(ambient))
                        for t in fired[("ambient", i, c)]], np.float64)
        sentry.append(SentryPoint(c, float(np.mean(np.isneginf(pos_best))), int(amb.size), per_hour(amb.size)))
        for jc in judge_cutoffs:
            thr = judge_threshold(jc)
            fa = int(np.sum(amb > thr))
            grid.append(CascadePoint(c, jc, float(np.mean(~(pos_best > thr))), fa, per_hour(fa), per_hour(amb.size)))
    alone = next(p for p in sentry if math.isclose(p.cutoff, round(float(shipped_cutoff), 4)))
    chosen, why = choose(grid, target_fa_per_hour)
    return CascadeResult(float(shipped_cutoff), float(target_fa_per_hour), hours, n_pos, sentry, grid, alone,
                         chosen, why, reduction(alone, grid, hours), len(scores))
