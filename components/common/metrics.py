"""Device-like detection metrics shared by training, mining, quantization and verification.

A detector sees one probability per inference (every `stride_frames` feature frames). ESPHome fires when
the mean of the last `sliding_window` outputs is strictly above the cutoff (on uint8: the window sum above
`int(cutoff*255) * window`), then zeroes the window and ignores detections until it has seen
`refractory_slices` feature slices whose latest probability was below the cutoff (reference §5.5).

- False-reject rate: positives are scored one clip at a time from fresh state; a clip counts as detected if
  the smoothed probability exceeds the cutoff anywhere after `warmup_inferences`.
- False accepts per hour: activations on long ambient audio divided by the hours *measured* from the
  number of inferences (never a nominal duration).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

DEFAULT_CUTOFFS = np.round(np.linspace(0.0, 1.0, 101), 2)


@dataclass(frozen=True)
class DetectorSettings:
    sliding_window: int = 5
    stride_frames: int = 3
    step_ms: int = 10
    refractory_slices: int = 100  # ESPHome 2025+: MIN_SLICES_BEFORE_DETECTION
    warmup_inferences: int = 0  # skipped at the start of each positive clip (fresh state settling)

    @property
    def inference_s(self) -> float:
        return self.stride_frames * self.step_ms / 1000

    @property
    def refractory_inferences(self) -> int:
        return -(-self.refractory_slices // self.stride_frames)


ESPHOME_DETECTOR = DetectorSettings()  # ESPHome's defaults


def sliding_mean(probs: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean of the last `window` values; the ring starts zeroed, as on the device."""
    p = np.asarray(probs, dtype=np.float64)
    c = np.cumsum(np.concatenate([np.zeros(window), p]))
    return (c[window:] - c[:-window]) / window


def to_uint8(probs: np.ndarray) -> np.ndarray:
    """Probabilities as the INT8 model's uint8 output would carry them (scale 1/256)."""
    return np.clip(np.floor(np.asarray(probs, dtype=np.float64) * 256), 0, 255).astype(np.uint8)


def _threshold(cutoff: float, quantized: bool) -> float:
    return float(int(cutoff * 255)) if quantized else float(cutoff)


def activations(probs: np.ndarray, cutoff: float, settings: DetectorSettings = ESPHOME_DETECTOR,
                quantized: bool = False) -> np.ndarray:
    """Inference indices where the detector fires on one continuous stream (ESPHome's logic).

    The stream is taken as an excerpt of a device that has been listening for a while, so it starts armed.
    After each detection (at t0) the window is zeroed and the detector waits until `refractory_inferences`
    outputs after t0 were below the cutoff. `quantized=True` takes uint8 outputs
    and compares their window mean with `int(cutoff*255)`. Cost: O(n) numpy plus a loop over detections."""
    p = np.asarray(probs, dtype=np.float64)
    w, need = settings.sliding_window, settings.refractory_inferences
    thr = _threshold(cutoff, quantized)
    candidates = np.flatnonzero(sliding_mean(p, w) > thr) if p.size else np.zeros(0, np.int64)
    below = np.concatenate([[0], np.cumsum(p < thr)])  # below[i]: outputs under the cutoff in [0, i)
    fired: list[int] = []
    t0 = -1
    while candidates.size:
        # the first t with at least `need` sub-threshold outputs in (t0, t]; armed from the start
        ready = int(np.searchsorted(below, below[t0 + 1] + need)) - 1 if need and fired else t0 + 1
        k = int(np.searchsorted(candidates, max(t0 + 1, ready)))
        hit = None
        for t in candidates[k:]:
            # within one window of the reset, the zeroed ring still lowers the mean
            if t - t0 >= w or p[t0 + 1:t + 1].sum() / w > thr:
                hit = int(t)
                break
        if hit is None:
            break
        fired.append(hit)
        t0 = hit
    return np.asarray(fired, np.int64)


@dataclass
class StreamScores:
    """What evaluation needs from a model: per-positive-clip probability streams and ambient streams."""

    positives: Sequence[np.ndarray]
    ambient: Sequence[np.ndarray]
    quantized: bool = False


@dataclass(frozen=True)
class OperatingPoint:
    cutoff: float
    frr: float
    false_accepts: int
    fa_per_hour: float
    recall: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recall", 1.0 - self.frr)


def ambient_hours(ambient: Sequence[np.ndarray], settings: DetectorSettings) -> float:
    """Hours of ambient audio measured from the number of inferences actually scored."""
    return sum(len(a) for a in ambient) * settings.inference_s / 3600


def clip_detected(probs: np.ndarray, cutoff: float, settings: DetectorSettings, quantized: bool = False) -> bool:
    p = np.asarray(probs, dtype=np.float64)
    mean = sliding_mean(p, settings.sliding_window)[settings.warmup_inferences:]
    return bool(mean.size and mean.max() > _threshold(cutoff, quantized))


def evaluate(scores: StreamScores, settings: DetectorSettings = ESPHOME_DETECTOR,
             cutoffs: np.ndarray = DEFAULT_CUTOFFS) -> list[OperatingPoint]:
    """FRR and FA/h at every cutoff."""
    hours = ambient_hours(scores.ambient, settings)
    thr_q = scores.quantized
    peaks = np.array([_peak(p, settings) for p in scores.positives]) if len(scores.positives) else np.zeros(0)
    out = []
    for c in cutoffs:
        thr = _threshold(float(c), thr_q)
        frr = float(np.mean(peaks <= thr)) if peaks.size else float("nan")
        fa = sum(len(activations(a, float(c), settings, thr_q)) for a in scores.ambient)
        out.append(OperatingPoint(float(c), frr, fa, fa / hours if hours > 0 else float("nan")))
    return out


def _peak(probs: np.ndarray, settings: DetectorSettings) -> float:
    mean = sliding_mean(np.asarray(probs, dtype=np.float64), settings.sliding_window)[settings.warmup_inferences:]
    return float(mean.max()) if mean.size else -np.inf


def at_fa_target(points: Sequence[OperatingPoint], target_fa_per_hour: float,
                 margin: float = 0.0) -> OperatingPoint | None:
    """The operating point with the lowest FRR among those meeting the FA/h target. Many cutoffs usually tie
    (a plateau between the loudest false accept and the quietest detection): take the middle of the plateau,
    the cutoff with the most margin on both sides, not its edge next to the false accepts.

    `margin` > 0 also requires the target to hold at `cutoff - margin`: the cutoff keeps that distance from
    the loudest false accept seen, so audio a little louder than the calibration audio stays below it."""
    meets = sorted((p.cutoff for p in points if p.fa_per_hour <= target_fa_per_hour))
    lowest = meets[0] if meets else None
    ok = [p for p in points if p.fa_per_hour <= target_fa_per_hour and
          (margin <= 0 or p.cutoff >= lowest + margin - 1e-9)]
    if not ok:
        return None
    measured = [p for p in ok if p.frr == p.frr]  # FRR is NaN with no positives: then every point ties
    best = min((p.frr for p in measured), default=None)
    ties = sorted((p for p in ok if best is None or p.frr == best), key=lambda p: p.cutoff)
    return ties[(len(ties) - 1) // 2]


@dataclass(frozen=True)
class Checkpoint:
    step: int
    fa_per_hour: float  # at the evaluated operating point (minimisation metric)
    recall: float  # maximisation metric


def better_checkpoint(current: Checkpoint, best: Checkpoint | None, target_fa_per_hour: float) -> bool:
    """Checkpoint selection (reference §6.4): first reach the FA/h target, then maximise recall; until the
    target is reached, prefer lower FA/h (recall breaks ties)."""
    if best is None:
        return True
    cur_ok = current.fa_per_hour <= target_fa_per_hour
    best_ok = best.fa_per_hour <= target_fa_per_hour
    if cur_ok and not best_ok:
        return True
    if cur_ok and best_ok:
        return current.recall > best.recall
    if not cur_ok and not best_ok:
        return (current.fa_per_hour, -current.recall) < (best.fa_per_hour, -best.recall)
    return False


def select_checkpoint(history: Sequence[Checkpoint], target_fa_per_hour: float) -> Checkpoint | None:
    best = None
    for c in history:
        if better_checkpoint(c, best, target_fa_per_hour):
            best = c
    return best
