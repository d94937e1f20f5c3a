"""Accuracy breakdown: Poisson bounds, FRR per (family, condition), FA/h per condition, worst-condition cutoffs."""
import json
import math

import numpy as np
import pytest
import scipy.stats  # noqa: F401  (poisson_upper imports it lazily: pay for it at collection, not in a test)
from hypothesis import given, settings
from hypothesis import strategies as st

from components.common.evaluation import (ALL, TaggedStream, breakdown, choose_cutoff, fa_upper_per_hour,
                                          format_text, poisson_upper, worst_condition_points)
from components.common.metrics import StreamScores, at_fa_target, evaluate


def hours_of(n_outputs: int) -> float:
    """The device's defaults: one output every 3 frames of 10 ms (refractory: 100 slices = 34 outputs)."""
    return n_outputs * 0.03 / 3600


def positive(value, family, condition, dtype=np.uint8, length=20):
    """A positive clip whose smoothed peak is exactly `value` (a plateau of 8 outputs, longer than the window)."""
    p = np.zeros(length, dtype=dtype)
    p[6:14] = value
    return TaggedStream(p, condition, family)


def ambient(n, bursts, condition, value, dtype=np.uint8, burst_len=10):
    """A silent stream with plateaus of `value` starting at each index in `bursts`."""
    p = np.zeros(n, dtype=dtype)
    for b in bursts:
        p[b:b + burst_len] = value
    return TaggedStream(p, condition)


# --- Poisson bounds ---------------------------------------------------------------------------------------


def test_poisson_upper_known_values():
    assert poisson_upper(0) == pytest.approx(-math.log(0.05), abs=1e-4)  # 2.9957
    assert poisson_upper(0) == pytest.approx(2.9957, abs=1e-4)
    assert poisson_upper(1) == pytest.approx(4.7439, abs=1e-4)
    # at 90 %: -ln(0.10)
    assert poisson_upper(0, 0.90) == pytest.approx(-math.log(0.10), abs=1e-6)


def test_poisson_upper_is_strictly_increasing_and_above_the_count():
    values = [poisson_upper(k) for k in range(60)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert all(v > k for k, v in enumerate(values))


def test_poisson_upper_rejects_negative_counts():
    with pytest.raises(ValueError):
        poisson_upper(-1)


def test_fa_upper_per_hour():
    assert fa_upper_per_hour(0, 0.5) == pytest.approx(5.9915, abs=1e-3)
    assert fa_upper_per_hour(1, 2.0) == pytest.approx(4.7439 / 2, abs=1e-4)
    assert math.isnan(fa_upper_per_hour(0, 0.0))
    assert math.isnan(fa_upper_per_hour(3, 0.0))


# --- breakdown ---------------------------------------------------------------------------------------------

JOE, KLATT = "piper:joe", "espeak:klatt"
CLEAN, TEL = "clean", "telephone"


def uint8_positives():
    # quantized cutoff 0.5 -> int(127.5) = 127: 128 is detected, 127 (not strictly above) is missed
    return [
        positive(128, JOE, CLEAN), positive(127, JOE, CLEAN), positive(200, JOE, CLEAN),
        positive(100, JOE, TEL),
        positive(255, KLATT, CLEAN),
        positive(50, KLATT, TEL), positive(60, KLATT, TEL),
    ]


def uint8_ambient():
    return [
        # three separated bursts: three false accepts
        ambient(6000, [500, 2000, 4000], CLEAN, 200),
        # two bursts only 5 outputs apart fall within one refractory period: one false accept; then one more
        ambient(3000, [100, 115, 1500], CLEAN, 200),
        # a plateau at exactly the threshold (127) never fires
        ambient(12000, [3000, 9000], TEL, 127),
    ]


def test_breakdown_frr_cells_on_uint8():
    b = breakdown(uint8_positives(), uint8_ambient(), 0.5, quantized=True)
    cells = {(c.family, c.condition): (c.clips, c.misses) for c in b.frr}
    assert cells == {
        (JOE, CLEAN): (3, 1), (JOE, TEL): (1, 1), (KLATT, CLEAN): (1, 0), (KLATT, TEL): (2, 2),
        (JOE, ALL): (4, 2), (KLATT, ALL): (3, 2),
        (ALL, CLEAN): (4, 1), (ALL, TEL): (3, 3),
        (ALL, ALL): (7, 4),
    }
    assert b.frr_cell(JOE, CLEAN).frr == pytest.approx(1 / 3)
    assert b.frr_cell().frr == pytest.approx(4 / 7)
    assert b.families == [KLATT, JOE]
    assert b.frr_conditions == [CLEAN, TEL]
    assert b.cutoff == 0.5


def test_breakdown_fa_cells_on_uint8():
    b = breakdown(uint8_positives(), uint8_ambient(), 0.5, quantized=True)
    clean, tel, total = b.fa_cell(CLEAN), b.fa_cell(TEL), b.fa_cell()
    assert clean.false_accepts == 5
    assert clean.hours == pytest.approx(hours_of(9000))
    assert clean.fa_per_hour == pytest.approx(5 / hours_of(9000))
    assert clean.upper_per_hour == pytest.approx(poisson_upper(5) / hours_of(9000))
    assert tel.false_accepts == 0
    assert tel.hours == pytest.approx(0.1)
    assert tel.fa_per_hour == 0.0
    assert tel.upper_per_hour == pytest.approx(29.957, abs=1e-3)
    assert total.false_accepts == 5 and total.hours == pytest.approx(hours_of(21000))
    assert b.fa_conditions == [CLEAN, TEL]
    assert [c.condition for c in b.fa] == [CLEAN, TEL, ALL]


def test_breakdown_worst_cells():
    b = breakdown(uint8_positives(), uint8_ambient(), 0.5, quantized=True, heldout_families=[KLATT])
    assert b.worst_fa().condition == CLEAN
    # two cells miss everything; the one with more clips is the worse evidence
    wf = b.worst_frr()
    assert (wf.family, wf.condition) == (KLATT, TEL)
    assert b.worst_heldout().family == KLATT and b.worst_heldout().frr == pytest.approx(2 / 3)
    b2 = breakdown(uint8_positives(), uint8_ambient(), 0.5, quantized=True, heldout_families=[JOE])
    assert b2.worst_heldout().family == JOE and b2.worst_heldout().frr == pytest.approx(0.5)
    assert breakdown(uint8_positives(), [], 0.5, quantized=True).worst_heldout() is None


def test_breakdown_quantized_uses_int_cutoff_not_float_probability():
    # 128/255 = 0.502 and 128/256 = 0.5: on uint8 the comparison is with int(0.5 * 255) = 127, so 128 fires
    b = breakdown([positive(128, JOE, CLEAN)], [ambient(2000, [100], CLEAN, 128)], 0.5, quantized=True)
    assert b.frr_cell().misses == 0 and b.fa_cell().false_accepts == 1
    # a higher cutoff: int(0.79 * 255) = 201, so 201 is not strictly above
    b = breakdown([positive(201, JOE, CLEAN)], [ambient(2000, [100], CLEAN, 201)], 0.79, quantized=True)
    assert b.frr_cell().misses == 1 and b.fa_cell().false_accepts == 0


def test_breakdown_on_float_streams_is_strict_and_uses_the_window_mean():
    pos = [positive(0.5, JOE, CLEAN, np.float64), positive(0.51, JOE, CLEAN, np.float64),
           # a single output of 1.0: the window mean peaks at 0.2
           TaggedStream(np.r_[np.zeros(10), 1.0, np.zeros(10)], CLEAN, KLATT)]
    amb = [ambient(4000, [100, 1000, 2000], CLEAN, 0.8, np.float64, burst_len=3),  # window mean 0.48
           ambient(4000, [100, 1000], TEL, 0.8, np.float64)]
    b = breakdown(pos, amb, 0.5, quantized=False)
    assert (b.frr_cell(JOE, CLEAN).clips, b.frr_cell(JOE, CLEAN).misses) == (2, 1)
    assert b.frr_cell(KLATT, CLEAN).misses == 1
    assert b.fa_cell(CLEAN).false_accepts == 0
    assert b.fa_cell(TEL).false_accepts == 2
    b = breakdown(pos, amb, 0.19, quantized=False)
    assert b.frr_cell().misses == 0
    assert b.fa_cell(CLEAN).false_accepts == 3


def test_worst_fa_breaks_ties_towards_fewer_hours():
    amb = [ambient(12000, [], "long", 0), ambient(6000, [], "short", 0), ambient(9000, [], "middle", 0)]
    assert breakdown([], amb, 0.5, quantized=True).worst_fa().condition == "short"


def test_worst_fa_does_not_depend_on_condition_names_when_a_condition_has_no_hours():
    def worst_role(empty, loud):
        amb = [TaggedStream(np.zeros(0, np.uint8), empty), ambient(6000, [100], loud, 200)]
        return "empty" if breakdown([], amb, 0.5, quantized=True).worst_fa().condition == empty else "loud"

    assert worst_role("a_empty", "z_loud") == worst_role("z_empty", "a_loud") == "empty"  # unmeasured is worst


@pytest.mark.parametrize("where", ["family", "positive_condition", "ambient_condition"])
def test_breakdown_rejects_the_reserved_name_all(where):
    pos = [positive(200, ALL if where == "family" else JOE, ALL if where == "positive_condition" else CLEAN)]
    amb = [ambient(1000, [], ALL if where == "ambient_condition" else CLEAN, 0)]
    with pytest.raises(ValueError):
        breakdown(pos, amb, 0.5, quantized=True)


def _no_nan(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan(v) for v in obj)
    return True


def test_as_dict_is_json_serialisable_without_nan():
    b = breakdown(uint8_positives(), uint8_ambient() + [TaggedStream(np.zeros(0, np.uint8), "unmeasured")],
                  0.5, quantized=True, heldout_families=[KLATT])
    d = b.as_dict()
    text = json.dumps(d, allow_nan=False)
    assert _no_nan(json.loads(text))
    unmeasured = next(c for c in d["fa"] if c["condition"] == "unmeasured")
    assert unmeasured["hours"] == 0.0
    assert unmeasured["fa_per_hour"] is None and unmeasured["upper_95_per_hour"] is None
    assert d["worst_frr_cell"] == {"family": KLATT, "condition": TEL, "frr": 1.0}
    assert d["worst_heldout_family"] == KLATT and d["worst_heldout_frr"] == pytest.approx(0.66667)
    assert d["heldout_families"] == [KLATT]
    assert len(d["frr"]) == 9 and len(d["fa"]) == 4


def test_as_dict_with_nothing_measured_has_none_not_nan():
    d = breakdown([], [], 0.5, quantized=False).as_dict()
    json.dumps(d, allow_nan=False)
    assert d["frr"] == [] and d["fa"] == []
    assert d["worst_fa_condition"] is None and d["worst_fa_per_hour"] is None
    assert d["worst_frr_cell"] is None
    assert d["worst_heldout_family"] is None and d["worst_heldout_frr"] is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.sampled_from([JOE, KLATT, "user:al"]),
                          st.sampled_from([CLEAN, TEL, "far"])), min_size=1, max_size=25),
       st.integers(1, 99))
def test_frr_margins_add_up(clips, cutoff_pct):
    b = breakdown([positive(v, f, c) for v, f, c in clips], [], cutoff_pct / 100, quantized=True)
    thr = int(cutoff_pct / 100 * 255)
    assert b.frr_cell().clips == len(clips)
    assert b.frr_cell().misses == sum(v <= thr for v, _, _ in clips)
    inner = [c for c in b.frr if c.family != ALL and c.condition != ALL]
    for f in b.families:
        assert b.frr_cell(f).misses == sum(c.misses for c in inner if c.family == f)
    for cond in b.frr_conditions:
        assert b.frr_cell(condition=cond).clips == sum(c.clips for c in inner if c.condition == cond)


# --- cutoff choice on the worst condition ------------------------------------------------------------------

def two_condition_case():
    """Condition A fires up to 0.625 (3 bursts in 0.1 h), condition B up to 0.875 (1 burst in 0.05 h).
    Positives all peak at 1.0. Pooled, one B burst in 0.15 h is 6.7 FA/h and meets a 10 FA/h target; B alone
    is 20 FA/h and does not."""
    pos = [positive(1.0, JOE, CLEAN, np.float64) for _ in range(4)]
    amb = [ambient(12000, [1000, 5000, 9000], "A", 0.625, np.float64),
           ambient(6000, [3000], "B", 0.875, np.float64)]
    return pos, amb


def test_worst_condition_points_take_the_worst_condition_rate():
    pos, amb = two_condition_case()
    pts = {p.cutoff: p for p in worst_condition_points(pos, amb, quantized=False)}
    assert pts[0.5].false_accepts == 3 and pts[0.5].fa_per_hour == pytest.approx(30.0)  # A: 3 / 0.1 h
    assert pts[0.7].false_accepts == 1 and pts[0.7].fa_per_hour == pytest.approx(20.0)  # B: 1 / 0.05 h
    assert pts[0.87].fa_per_hour == pytest.approx(20.0)
    assert pts[0.88].false_accepts == 0 and pts[0.88].fa_per_hour == 0.0
    assert all(pts[c].frr == 0.0 for c in (0.0, 0.5, 0.99))
    assert pts[1.0].frr == 1.0  # nothing is strictly above 1.0
    # pooled, the same streams meet 10 FA/h from 0.63 on
    pooled = {p.cutoff: p for p in evaluate(StreamScores([p.probs for p in pos], [a.probs for a in amb]))}
    assert pooled[0.7].fa_per_hour == pytest.approx(1 / hours_of(18000))
    assert pooled[0.7].fa_per_hour < 10


def test_choose_cutoff_puts_the_worst_condition_under_the_target():
    pos, amb = two_condition_case()
    pooled_choice = at_fa_target(evaluate(StreamScores([p.probs for p in pos], [a.probs for a in amb])), 10.0)
    assert pooled_choice.cutoff < 0.875  # the pooled rate would accept a cutoff at which B still fires
    chosen = choose_cutoff(pos, amb, 10.0, 0.0, quantized=False)
    assert 0.88 <= chosen.cutoff < 1.0
    assert chosen.frr == 0.0 and chosen.fa_per_hour == 0.0
    # the middle of the plateau 0.88..0.99
    assert chosen.cutoff == pytest.approx(0.93)
    b = breakdown(pos, amb, chosen.cutoff, quantized=False)
    assert all(c.fa_per_hour <= 10.0 for c in b.fa)
    # a margin of 0.05 from the lowest passing cutoff (0.88): the plateau 0.93..0.99
    assert choose_cutoff(pos, amb, 10.0, 0.05, quantized=False).cutoff == pytest.approx(0.96)


def test_choose_cutoff_pools_frr_over_all_positives():
    amb = [ambient(6000, [], "A", 0.0, np.float64)]
    pos = [positive(v, f, c, np.float64) for v, f, c in
           [(0.25, JOE, CLEAN), (0.625, JOE, TEL), (0.625, KLATT, CLEAN), (0.875, KLATT, TEL)]]
    pts = {p.cutoff: p for p in worst_condition_points(pos, amb, quantized=False)}
    assert pts[0.24].frr == 0.0
    assert pts[0.25].frr == pytest.approx(0.25)  # not strictly above
    assert pts[0.62].frr == pytest.approx(0.25)
    assert pts[0.63].frr == pytest.approx(0.75)
    assert pts[0.88].frr == 1.0
    # no false accepts anywhere: the lowest FRR plateau is 0.00..0.24, its middle 0.12
    assert choose_cutoff(pos, amb, 1.0, 0.0, quantized=False).cutoff == pytest.approx(0.12)


def test_choose_cutoff_returns_the_highest_cutoff_when_nothing_meets_the_target():
    pos, amb = two_condition_case()
    # an ambient condition with no audio measured never passes (its rate is infinite at every cutoff)
    amb = amb + [TaggedStream(np.zeros(0), "unmeasured")]
    pts = worst_condition_points(pos, amb, quantized=False)
    assert all(math.isinf(p.fa_per_hour) for p in pts)
    assert choose_cutoff(pos, amb, 10.0, 0.0, quantized=False).cutoff == 1.0
    # a target nothing can meet
    pos, amb = two_condition_case()
    assert choose_cutoff(pos, amb, -1.0, 0.05, quantized=False).cutoff == 1.0


def test_choose_cutoff_on_uint8():
    pos = [positive(250, JOE, CLEAN) for _ in range(3)]
    amb = [ambient(12000, [1000, 5000, 9000], "A", 150), ambient(6000, [3000], "B", 220)]
    chosen = choose_cutoff(pos, amb, 10.0, 0.0, quantized=True)
    # B stops firing once int(c * 255) >= 220, i.e. c >= 0.87 (int(221.85) = 221); positives stop at 250
    assert int(chosen.cutoff * 255) >= 220
    assert chosen.frr == 0.0 and int(chosen.cutoff * 255) < 250
    assert breakdown(pos, amb, chosen.cutoff, quantized=True).fa_cell("B").false_accepts == 0


# --- text ---------------------------------------------------------------------------------------------------

def test_format_text_names_conditions_worst_and_heldout():
    amb = uint8_ambient() + [ambient(3000, [], "far_field", 0)]
    b = breakdown(uint8_positives(), amb, 0.5, quantized=True, heldout_families=[KLATT])
    text = format_text(b)
    for cond in (CLEAN, TEL, "far_field"):
        assert cond in text
    assert "worst condition: clean" in text
    lines = text.splitlines()
    assert any(line.startswith(KLATT + " *") for line in lines)
    assert not any(line.startswith(JOE + " *") for line in lines)
    assert any(line.startswith(JOE) for line in lines)
    assert "held out" in text
    assert "0.50" in lines[0]
    assert f"worst FRR cell: {KLATT} / {TEL}" in text


def test_format_text_without_heldout_families_has_no_marks():
    text = format_text(breakdown(uint8_positives(), uint8_ambient(), 0.5, quantized=True))
    assert " *" not in text and "held out" not in text
