"""Accuracy broken down the way the world breaks models: FRR per voice family and per channel condition,
FA/h per condition with its hours and an exact Poisson upper bound, and the worst cell named.

Pure functions over probability streams (uint8 or float, as `metrics` takes them); no model, no I/O. The
verification gate, the cutoff choice on validation, `wakeline evaluate` and the accuracy benchmark all use it,
so a number means the same thing everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from components.common.metrics import (DEFAULT_CUTOFFS, ESPHOME_DETECTOR, DetectorSettings, OperatingPoint, _peak,
                                       _threshold, activations, at_fa_target)

CONFIDENCE = 0.95
ALL = "all"


def poisson_upper(count: int, confidence: float = CONFIDENCE) -> float:
    """Exact (Garwood) one-sided upper confidence limit of a Poisson mean after observing `count` events:
    0 events give 3.0 at 95 %, 1 gives 4.74. Divide by the hours for a rate bound."""
    from scipy.stats import chi2

    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return float(chi2.ppf(confidence, 2 * count + 2) / 2)


def fa_upper_per_hour(count: int, hours: float, confidence: float = CONFIDENCE) -> float:
    """Upper bound of the false-accept rate; NaN when no audio was measured (nothing measured never passes)."""
    return poisson_upper(count, confidence) / hours if hours > 0 else float("nan")


@dataclass(frozen=True)
class TaggedStream:
    """One probability stream with what it is: a positive clip (its voice family and channel condition) or a
    long ambient recording (its condition)."""

    probs: np.ndarray
    condition: str
    family: str = ""


@dataclass(frozen=True)
class FrrCell:
    family: str
    condition: str
    clips: int
    misses: int

    @property
    def frr(self) -> float:
        return self.misses / self.clips if self.clips else float("nan")


@dataclass(frozen=True)
class FaCell:
    condition: str
    hours: float
    false_accepts: int

    @property
    def fa_per_hour(self) -> float:
        return self.false_accepts / self.hours if self.hours > 0 else float("nan")

    @property
    def upper_per_hour(self) -> float:
        return fa_upper_per_hour(self.false_accepts, self.hours)


@dataclass
class Breakdown:
    """Every cell at one cutoff. `frr` has one cell per (family, condition) that has clips, plus the
    (family, "all"), ("all", condition) and ("all", "all") margins; `fa` one cell per condition plus "all"."""

    cutoff: float
    frr: list[FrrCell] = field(default_factory=list)
    fa: list[FaCell] = field(default_factory=list)
    heldout_families: tuple[str, ...] = ()

    def frr_cell(self, family: str = ALL, condition: str = ALL) -> FrrCell | None:
        return next((c for c in self.frr if c.family == family and c.condition == condition), None)

    def fa_cell(self, condition: str = ALL) -> FaCell | None:
        return next((c for c in self.fa if c.condition == condition), None)

    @property
    def families(self) -> list[str]:
        return sorted({c.family for c in self.frr if c.family != ALL})

    @property
    def frr_conditions(self) -> list[str]:
        return sorted({c.condition for c in self.frr if c.condition != ALL})

    @property
    def fa_conditions(self) -> list[str]:
        return sorted(c.condition for c in self.fa if c.condition != ALL)

    def worst_fa(self) -> FaCell | None:
        """The condition with the highest FA/h (ties: the fewer hours, i.e. the weaker evidence of safety); a
        condition with no hours measured counts as the worst (nothing measured never passes)."""
        cells = [c for c in self.fa if c.condition != ALL]
        rate = lambda c: c.fa_per_hour if c.hours > 0 else float("inf")  # noqa: E731
        return max(cells, key=lambda c: (rate(c), -c.hours, c.condition)) if cells else None

    def worst_frr(self) -> FrrCell | None:
        """The (family, condition) cell with the highest FRR."""
        cells = [c for c in self.frr if c.family != ALL and c.condition != ALL and c.clips]
        return max(cells, key=lambda c: (c.frr, c.clips)) if cells else None

    def worst_heldout(self) -> FrrCell | None:
        """The held-out family with the highest FRR over all its conditions."""
        cells = [self.frr_cell(f, ALL) for f in self.heldout_families]
        cells = [c for c in cells if c is not None]
        return max(cells, key=lambda c: c.frr) if cells else None

    def as_dict(self) -> dict[str, Any]:
        worst_fa, worst_frr, worst_ho = self.worst_fa(), self.worst_frr(), self.worst_heldout()
        return {
            "cutoff": self.cutoff,
            "heldout_families": list(self.heldout_families),
            "frr": [{"family": c.family, "condition": c.condition, "clips": c.clips, "misses": c.misses,
                     "frr": finite_or_none(c.frr)} for c in self.frr],
            "fa": [{"condition": c.condition, "hours": round(c.hours, 5), "false_accepts": c.false_accepts,
                    "fa_per_hour": finite_or_none(c.fa_per_hour), "upper_95_per_hour": finite_or_none(c.upper_per_hour)}
                   for c in self.fa],
            "worst_fa_condition": None if worst_fa is None else worst_fa.condition,
            "worst_fa_per_hour": None if worst_fa is None else finite_or_none(worst_fa.fa_per_hour),
            "worst_frr_cell": None if worst_frr is None else {"family": worst_frr.family,
                                                              "condition": worst_frr.condition,
                                                              "frr": finite_or_none(worst_frr.frr)},
            "worst_heldout_family": None if worst_ho is None else worst_ho.family,
            "worst_heldout_frr": None if worst_ho is None else finite_or_none(worst_ho.frr),
        }


def finite_or_none(x: float) -> float | None:
    """JSON- and KFP-safe: None for NaN and infinities (nothing measured), the value rounded otherwise."""
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


def breakdown(positives: Sequence[TaggedStream], ambient: Sequence[TaggedStream], cutoff: float, *,
              quantized: bool, settings: DetectorSettings = ESPHOME_DETECTOR,
              heldout_families: Iterable[str] = ()) -> Breakdown:
    """FRR per (family, condition) and FA/h per condition at `cutoff`, on the device's detection logic."""
    named = {s.family for s in positives} | {s.condition for s in positives} | {s.condition for s in ambient}
    if ALL in named:
        raise ValueError(f"{ALL!r} names the totals; a family or condition cannot be called that")
    thr = _threshold(cutoff, quantized)
    hits: dict[tuple[str, str], list[int]] = {}
    for s in positives:
        detected = int(_peak(s.probs, settings) > thr)
        for key in ((s.family, s.condition), (s.family, ALL), (ALL, s.condition), (ALL, ALL)):
            hits.setdefault(key, []).append(detected)
    frr = [FrrCell(f, c, len(v), len(v) - sum(v)) for (f, c), v in sorted(hits.items())]
    per: dict[str, list[float]] = {}
    for s in ambient:
        n = len(activations(s.probs, cutoff, settings, quantized))
        acc = per.setdefault(s.condition, [0.0, 0])
        acc[0] += len(s.probs) * settings.inference_s / 3600
        acc[1] += n
    fa = [FaCell(c, h, int(n)) for c, (h, n) in sorted(per.items())]
    if fa:
        fa.append(FaCell(ALL, sum(c.hours for c in fa), sum(c.false_accepts for c in fa)))
    return Breakdown(float(cutoff), frr, fa, tuple(sorted(set(heldout_families))))


def worst_condition_points(positives: Sequence[TaggedStream], ambient: Sequence[TaggedStream], *, quantized: bool,
                           settings: DetectorSettings = ESPHOME_DETECTOR,
                           cutoffs: np.ndarray = DEFAULT_CUTOFFS) -> list[OperatingPoint]:
    """One operating point per cutoff whose FA/h is the *worst condition's* (not the pooled rate) and whose
    FRR is pooled over every positive clip. Choosing a cutoff on these makes every condition meet the target."""
    peaks = np.array([_peak(s.probs, settings) for s in positives]) if positives else np.zeros(0)
    by_cond: dict[str, list[np.ndarray]] = {}
    for s in ambient:
        by_cond.setdefault(s.condition, []).append(s.probs)
    hours = {c: sum(len(p) for p in ps) * settings.inference_s / 3600 for c, ps in by_cond.items()}
    out = []
    for c in cutoffs:
        thr = _threshold(float(c), quantized)
        frr = float(np.mean(peaks <= thr)) if peaks.size else float("nan")
        worst_rate, worst_n = (float("nan"), 0) if not by_cond else (-1.0, 0)
        for cond, streams in by_cond.items():
            n = sum(len(activations(p, float(c), settings, quantized)) for p in streams)
            rate = n / hours[cond] if hours[cond] > 0 else float("inf")
            if rate > worst_rate:
                worst_rate, worst_n = rate, n
        out.append(OperatingPoint(float(c), frr, worst_n, worst_rate))
    return out


def choose_cutoff(positives: Sequence[TaggedStream], ambient: Sequence[TaggedStream], target_fa_per_hour: float,
                  margin: float, *, quantized: bool, settings: DetectorSettings = ESPHOME_DETECTOR) -> OperatingPoint:
    """The cutoff with the lowest pooled FRR at which the worst condition meets the FA/h target (keeping
    `margin` from the loudest false accept when possible); the highest cutoff when none meets it."""
    points = worst_condition_points(positives, ambient, quantized=quantized, settings=settings)
    return (at_fa_target(points, target_fa_per_hour, margin) or at_fa_target(points, target_fa_per_hour)
            or max(points, key=lambda p: p.cutoff))


def frr_table_rows(b: Breakdown) -> tuple[list[str], list[tuple[str, list[FrrCell | None]]]]:
    """(columns, rows) of the FRR table: families (held-out ones marked) down, conditions across, margins last."""
    cols = b.frr_conditions + [ALL]
    rows = [(f, [b.frr_cell(f, c) for c in cols]) for f in b.families] + [(ALL, [b.frr_cell(ALL, c) for c in cols])]
    return cols, rows


def format_text(b: Breakdown) -> str:
    """The breakdown as plain text for a terminal: FA/h per condition, then FRR per family x condition."""
    lines = [f"at cutoff {b.cutoff:.2f}", "",
             f"{'ambient condition':<24}{'hours':>8}{'FA':>5}{'FA/h':>9}{'95% upper':>11}"]
    for c in b.fa:
        lines.append(f"{c.condition:<24}{c.hours:>8.3f}{c.false_accepts:>5}{c.fa_per_hour:>9.2f}"
                     f"{c.upper_per_hour:>11.2f}")
    if b.frr:
        cols, rows = frr_table_rows(b)
        width = max(20, *(len(f) + 3 for f, _ in rows))
        lines += ["", f"{'FRR (misses/clips)':<{width}}" + "  ".join(f"{c:>16}" for c in cols)]
        for fam, cells in rows:
            mark = " *" if fam in b.heldout_families else ""
            lines.append(f"{(fam + mark):<{width}}" + "  ".join(
                f"{'' if c is None else f'{c.frr:6.1%} ({c.misses}/{c.clips})':>16}" for c in cells))
        if b.heldout_families:
            lines.append("* held out: never in training or validation")
    worst = b.worst_fa()
    if worst is not None:
        lines.append(f"\nworst condition: {worst.condition} ({worst.fa_per_hour:.2f} FA/h, "
                     f"95% upper {worst.upper_per_hour:.2f})")
    wf = b.worst_frr()
    if wf is not None:
        lines.append(f"worst FRR cell: {wf.family} / {wf.condition} ({wf.frr:.1%} of {wf.clips})")
    return "\n".join(lines)


MIXED = "mixed"  # the split's epoch-0 positives: every augmentation at once, as validation has always used


def store_streams(store, split, score) -> tuple[list[TaggedStream], list[TaggedStream]]:
    """A feature store split scored clip by clip: the positives of its epoch-0 set (condition "mixed") and of
    every positive condition set, each tagged with its voice family, and every ambient recording with its
    condition. `score` maps raw uint16 features [frames, 40] to a probability stream."""
    from components.common.artifacts import LABEL_CODES, Label

    positive = LABEL_CODES[Label.POSITIVE]
    sets = [(MIXED, store.open(split, 0))] + [(c, store.open_condition(split, c)) for c in store.conditions(split)]
    pos = []
    for condition, fs in sets:
        info = fs.clip_info()
        for i in np.flatnonzero(fs.labels == positive):
            pos.append(TaggedStream(score(np.asarray(fs.clip(int(i)))), condition,
                                    info[int(i)].get("family") or "unknown"))
    amb = [TaggedStream(score(np.asarray(raw)), condition) for raw, condition in store.ambient_tagged(split)]
    return pos, amb
