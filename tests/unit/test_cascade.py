"""The cascade core on hand-made streams whose answers are known: a sentry (uint8 outputs on ESPHome's detector)
and judges that reject everything, accept everything, or accept only the true wake words."""
import math

import numpy as np
import pytest

from components.cascade_evaluation.cascade import (CascadePoint, SegmentWindow, SentryPoint, Stream, choose, evaluate_cascade,
                                        judge_cutoff_grid, reduction, sentry_cutoff_grid)
from components.common.metrics import ESPHOME_DETECTOR, StreamScores, evaluate

STRIDE = ESPHOME_DETECTOR.stride_frames
STRONG, WEAK = 250, 120  # above int(0.9*255)=229, and above int(0.4*255)=102 only
TRUE, FALSE = 900, 100  # marker in feature channel 0 where a bump is: the wake word, or something else
AMBIENT_INFERENCES = 2000  # 60 s: one false accept is 60 FA/h
SENTRY, JUDGE = [0.4, 0.9], [0.0, 0.5, 0.95]
WINDOW = SegmentWindow.from_seconds(2.0, 0.3)


def _stream(n: int, bumps: list[tuple[int, int, int]]) -> Stream:
    """`n` inferences of silence with bumps (at, output, marker) six inferences long."""
    out = np.zeros(n, np.uint8)
    feats = np.zeros((n * STRIDE, 40), np.uint16)
    for at, value, marker in bumps:
        out[at:at + 6] = value
        feats[at * STRIDE:(at + 6) * STRIDE, 0] = marker
    return Stream(out, feats)


@pytest.fixture
def streams() -> tuple[list[Stream], list[Stream]]:
    positives = [_stream(80, [(50, STRONG, TRUE)]),  # detected at both sentry cutoffs
                 _stream(80, [(50, WEAK, TRUE)]),  # only at the lower one
                 _stream(80, [])]  # never
    ambient = [_stream(AMBIENT_INFERENCES, [(200, STRONG, FALSE), (600, STRONG, FALSE), (1000, WEAK, FALSE),
                                            (1400, WEAK, FALSE), (1800, WEAK, FALSE)])]
    return positives, ambient


def marker_judge(frames: np.ndarray) -> float:
    """0.9 on a segment holding the wake word, 0.1 on one holding something else, 0 on silence."""
    return float(frames[:, 0].max()) / 1000 if len(frames) else 0.0


def _run(streams, judge, target=1.0):
    positives, ambient = streams
    return evaluate_cascade(positives, ambient, judge, shipped_cutoff=0.9, sentry_cutoffs=SENTRY, judge_cutoffs=JUDGE,
                            window=WINDOW, target_fa_per_hour=target)


def test_the_sentry_alone_is_esphomes_detector_as_verification_measures_it(streams):
    result = _run(streams, marker_judge)
    assert result.ambient_hours == pytest.approx(1 / 60)
    by_cutoff = {p.cutoff: p for p in result.sentry}
    assert by_cutoff[0.9] == SentryPoint(0.9, pytest.approx(2 / 3), 2, pytest.approx(120.0))
    assert by_cutoff[0.4] == SentryPoint(0.4, pytest.approx(1 / 3), 5, pytest.approx(300.0))
    assert result.sentry_alone.cutoff == 0.9
    positives, ambient = streams
    for point in evaluate(StreamScores([s.outputs for s in positives], [s.outputs for s in ambient], quantized=True),
                          cutoffs=np.array(SENTRY)):
        assert (point.frr, point.false_accepts) == (by_cutoff[point.cutoff].frr, by_cutoff[point.cutoff].false_accepts)


def test_a_judge_that_rejects_everything_leaves_no_false_accept_and_no_detection(streams):
    result = _run(streams, lambda frames: 0.0)
    assert all(p.false_accepts == 0 and p.fa_per_hour == 0.0 and p.frr == 1.0 for p in result.grid)
    assert len(result.grid) == len(SENTRY) * len(JUDGE)
    assert result.chosen is not None and result.chosen.frr == 1.0  # meets the FA/h target, detects nothing


def test_a_judge_that_accepts_everything_is_the_sentry_alone(streams):
    result = _run(streams, lambda frames: 1.0)
    for p in result.grid:
        alone = next(s for s in result.sentry if s.cutoff == p.sentry_cutoff)
        assert (p.frr, p.false_accepts, p.fa_per_hour) == (alone.frr, alone.false_accepts, alone.fa_per_hour)
        assert p.judge_requests_per_hour == alone.fa_per_hour
    assert result.chosen is None and "no grid point meets the FA/h target 1" in result.chosen_reason
    assert (result.reduction.value, result.reduction.kind) == (pytest.approx(1.0), "ratio")  # nothing gained


def test_a_judge_that_accepts_only_the_wake_word_keeps_the_lower_cutoffs_recall_without_false_accepts(streams):
    result = _run(streams, marker_judge)
    low = result.point(0.4, 0.5)
    assert (low.frr, low.false_accepts) == (pytest.approx(1 / 3), 0)  # the sentry's FRR at 0.4, no false accept
    assert low.judge_requests_per_hour == pytest.approx(300.0)  # every activation went to the judge
    assert result.point(0.4, 0.0).false_accepts == 5 and result.point(0.4, 0.95).frr == 1.0
    assert result.chosen == low  # the lowest FRR within 1 FA/h
    # no cascade false accept in 1/60 h: counted as one (60 FA/h), so 120 FA/h is cut at least 2-fold
    r = result.reduction
    assert (r.value, r.kind, r.point) == (pytest.approx(2.0), "lower_bound", low)
    assert "no false accept in 1.0 min" in r.reason
    doc = result.as_dict()
    assert doc["fa_per_hour_reduction"] == pytest.approx(2.0) and doc["reduction_kind"] == "lower_bound"
    assert doc["chosen"]["sentry_cutoff"] == 0.4 and doc["sentry_alone"]["false_accepts"] == 2


def test_each_activation_is_judged_once_on_the_audio_around_it(streams):
    seen = []

    def judge(frames):
        seen.append(frames)
        return marker_judge(frames)

    result = _run(streams, judge)
    # positives: 2 onsets (0.4 fires two inferences earlier than 0.9) + 1; ambient: 2 x 2 strong + 3 weak
    assert result.judged_segments == len(seen) == 10
    # 2.0 s before the end of the activating inference and 0.3 s after, clipped to the stream
    # ambient, far from its ends: 200 + 30 frames; a positive clip (240 frames) from its start, onsets at 52, 54
    assert sorted(len(f) for f in seen) == [189, 195, 195] + [230] * 7
    assert WINDOW.bounds(54, 240) == (0, 195) and WINDOW.bounds(604, 6000) == (1615, 1845)
    assert WINDOW.bounds(1999, 6000) == (5800, 6000)


def test_the_reduction_needs_an_equal_or_better_frr_and_says_what_kind_it_is():
    alone = SentryPoint(0.9, 0.2, 4, 40.0)  # 4 false accepts in 0.1 h
    worse = CascadePoint(0.9, 0.5, 0.3, 0, 0.0, 40.0)  # no false accept, but more false rejects: not eligible
    equal = CascadePoint(0.9, 0.3, 0.2, 1, 10.0, 40.0)
    better = CascadePoint(0.5, 0.7, 0.1, 2, 20.0, 90.0)
    r = reduction(alone, [worse, equal, better], 0.1)
    assert (r.value, r.kind, r.point) == (pytest.approx(4.0), "ratio", equal)
    silent = CascadePoint(0.5, 0.8, 0.15, 0, 0.0, 90.0)
    r = reduction(alone, [worse, equal, better, silent], 0.1)
    assert (r.value, r.kind, r.point) == (pytest.approx(4.0), "lower_bound", silent)  # 40 / (1 / 0.1 h)
    r = reduction(SentryPoint(0.9, 0.2, 0, 0.0), [silent], 0.1)
    assert r.value is None and r.kind == "undefined" and "no false accept" in r.reason
    r = reduction(alone, [worse], 0.1)
    assert r.value is None and "no cascade point keeps the FRR at or below the sentry's 20.0%" in r.reason
    assert reduction(alone, [equal], 0.0).value is None


def test_the_chosen_point_is_the_lowest_frr_within_the_target_then_lower_fa_then_higher_sentry_cutoff():
    grid = [CascadePoint(0.3, 0.5, 0.05, 30, 3.0, 200.0),  # the best FRR, but over the target
            CascadePoint(0.5, 0.5, 0.10, 1, 1.0, 50.0),
            CascadePoint(0.6, 0.5, 0.10, 0, 0.0, 40.0),  # same FRR, lower FA/h
            CascadePoint(0.7, 0.5, 0.10, 0, 0.0, 30.0),  # same again: the higher sentry cutoff wins
            CascadePoint(0.7, 0.4, 0.10, 0, 0.0, 30.0),  # ... and of the tied judge cutoffs, the middle one
            CascadePoint(0.7, 0.6, 0.10, 0, 0.0, 30.0),
            CascadePoint(0.9, 0.5, 0.20, 0, 0.0, 10.0)]
    point, why = choose(grid, 2.0)
    assert (point.sentry_cutoff, point.judge_cutoff) == (0.7, 0.5) and "6 of 7 grid points" in why
    point, _ = choose(grid, 0.5)  # only the silent points are left: the same choice
    assert (point.sentry_cutoff, point.judge_cutoff, point.fa_per_hour) == (0.7, 0.5, 0.0)
    none, why = choose(grid[:1], 2.0)
    assert none is None and why == "no grid point meets the FA/h target 2 (lowest cascade FA/h 3.00)"


def test_grids():
    sentry = sentry_cutoff_grid(0.9, 0.1, 0.05)
    assert sentry[0] == 0.1 and sentry[-1] == 0.9 and len(sentry) == 17 and sentry == sorted(sentry)
    assert sentry_cutoff_grid(0.93, 0.8, 0.05) == [0.83, 0.88, 0.93]  # from the shipped cutoff down
    assert sentry_cutoff_grid(0.05, 0.1, 0.05) == [0.05]  # below the floor: the shipped cutoff alone
    judge = judge_cutoff_grid(0.25, calibrated=0.62)
    assert judge == [0.0, 0.25, 0.5, 0.62, 0.75]
    assert all(math.isclose(a, b) for a, b in zip(judge_cutoff_grid(0.05), np.arange(20) * 0.05))
    with pytest.raises(ValueError, match="judge_context_s must be > 0"):
        SegmentWindow.from_seconds(0.0, 0.3)


def test_no_positive_clips_is_a_clear_error(streams):
    with pytest.raises(ValueError, match="no positive test clips"):
        evaluate_cascade([], streams[1], marker_judge, shipped_cutoff=0.9, sentry_cutoffs=SENTRY,
                         judge_cutoffs=JUDGE, window=WINDOW, target_fa_per_hour=1.0)


def test_the_operating_point_is_chosen_on_validation_and_measured_on_test(streams):
    from components.cascade_evaluation.stage import chosen_on_validation

    positives, ambient = streams
    validation = _run(streams, marker_judge)
    # test: the weak true detection is gone, so test's own best point would differ from validation's choice
    test = _run(([positives[0], _stream(80, []), positives[2]], ambient), marker_judge)
    picked = validation.chosen
    result = chosen_on_validation(validation, test)
    assert result is test and result.extra["chosen_on_validation"]["sentry_cutoff"] == picked.sentry_cutoff
    assert (result.chosen.sentry_cutoff, result.chosen.judge_cutoff) == (picked.sentry_cutoff, picked.judge_cutoff)
    assert result.chosen == test.point(picked.sentry_cutoff, picked.judge_cutoff)
    assert result.chosen.frr == pytest.approx(2 / 3) and picked.frr == pytest.approx(1 / 3)
    assert result.chosen_reason.endswith("measured on test")
