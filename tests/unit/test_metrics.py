"""Device-like metrics: ESPHome's detection logic, FRR, FA/h from measured duration, checkpoint selection."""
import numpy as np
import pytest

from components.common.metrics import (Checkpoint, DetectorSettings, StreamScores, activations, ambient_hours,
                                       at_fa_target, evaluate, select_checkpoint, sliding_mean, to_uint8)

S = DetectorSettings(sliding_window=5, stride_frames=3, step_ms=10, refractory_slices=30)  # 10 inferences


def reference_activations(p, cutoff, s=S, quantized=False):
    """A literal per-inference transcription of ESPHome's loop, to check the vectorised version against."""
    thr = int(cutoff * 255) if quantized else cutoff
    ring, ignore, fired = [0.0] * s.sliding_window, 0, []  # armed at the start of an excerpt
    for t, x in enumerate(p):
        ring = ring[1:] + [float(x)]
        if x < thr and ignore < 0:
            ignore += 1
        if ignore >= 0 and sum(ring) / s.sliding_window > thr:
            fired.append(t)
            ring, ignore = [0.0] * s.sliding_window, -s.refractory_inferences
    return fired


def test_sliding_mean_starts_from_a_zeroed_ring():
    assert sliding_mean(np.ones(7), 5).tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1, 1, 1])


@pytest.mark.parametrize("seed", range(20))
def test_activations_match_a_literal_transcription(seed):
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(0.3, 2.0, 3000) + (rng.random(3000) < 0.01) * 0.8, 0, 1)
    for cutoff in (0.3, 0.5, 0.8):
        assert activations(p, cutoff, S).tolist() == reference_activations(p, cutoff)
    q = to_uint8(p)
    assert activations(q, 0.5, S, quantized=True).tolist() == reference_activations(q.astype(float), 0.5,
                                                                                     quantized=True)


def test_refractory_period_suppresses_repeats():
    p = np.zeros(200)
    p[50:120] = 1.0  # one long event: fires once, then again only after 10 sub-threshold outputs
    assert activations(p, 0.5, S).tolist() == [52]
    p[130:140] = 1.0
    assert activations(p, 0.5, S).tolist() == [52, 132]


def test_uint8_comparison_is_strict_and_uses_int_cutoff():
    q = np.full(100, 247, np.uint8)  # int(0.97 * 255) == 247: a mean of exactly 247 must not fire
    assert activations(q, 0.97, S, quantized=True).size == 0
    q[50] = 248  # one step above: the mean is 247.2 > 247
    assert activations(q, 0.97, S, quantized=True).tolist() == [50]


def test_fa_per_hour_uses_measured_duration():
    rng = np.random.default_rng(0)
    ambient = [np.zeros(4000), np.zeros(2000)]
    for a in ambient:
        a[rng.choice(len(a) - 20, 3, replace=False)] = 1.0
    hours = ambient_hours(ambient, S)
    assert hours == pytest.approx(6000 * 0.03 / 3600)
    pts = {p.cutoff: p for p in evaluate(StreamScores([np.ones(10)], ambient), S)}
    fa = sum(len(activations(a, 0.1, S)) for a in ambient)
    assert fa > 0 and pts[0.1].fa_per_hour == pytest.approx(fa / hours)
    # Twice the audio with the same events: half the FA/h, because hours are measured, not assumed.
    longer = [np.concatenate([a, np.zeros(len(a))]) for a in ambient]
    pts2 = {p.cutoff: p for p in evaluate(StreamScores([np.ones(10)], longer), S)}
    assert pts2[0.1].fa_per_hour == pytest.approx(pts[0.1].fa_per_hour / 2)


def test_frr_counts_clips_whose_smoothed_peak_stays_under_the_cutoff():
    loud = np.r_[np.zeros(30), np.full(10, 0.9)]
    short_blip = np.r_[np.zeros(30), [0.9], np.zeros(9)]  # mean over 5 never exceeds 0.18
    quiet = np.full(40, 0.2)
    pts = {p.cutoff: p for p in evaluate(StreamScores([loud, short_blip, quiet], [np.zeros(100)]), S)}
    assert pts[0.5].frr == pytest.approx(2 / 3)
    assert pts[0.19].frr == pytest.approx(1 / 3)  # the blip peaks at 0.18, the quiet clip at 0.2
    assert pts[0.0].frr == 0.0


def test_operating_point_at_fa_target():
    pts = evaluate(StreamScores([np.full(20, 0.6)], [np.r_[np.zeros(500), np.full(20, 0.7), np.zeros(500)]]), S)
    best = at_fa_target(pts, target_fa_per_hour=0.0)
    assert best.fa_per_hour == 0.0 and best.cutoff >= 0.7 - 1e-9
    assert at_fa_target(pts, 1e6).frr == 0.0


def test_operating_point_takes_the_middle_of_the_plateau_not_its_edge():
    """Positives peak at 0.9, the ambient audio at 0.3: every cutoff in [0.3, 0.9) detects all with no false
    accept; the chosen one sits in the middle, as far from the false accepts as from the misses."""
    pts = evaluate(StreamScores([np.full(20, 0.9)], [np.r_[np.zeros(500), np.full(20, 0.3), np.zeros(500)]]), S)
    best = at_fa_target(pts, target_fa_per_hour=0.0)
    assert best.frr == 0.0 and best.fa_per_hour == 0.0
    assert best.cutoff == pytest.approx(0.59, abs=0.011)


def test_a_safety_margin_keeps_the_cutoff_away_from_the_loudest_false_accept():
    """Positives peak at 0.4 and 0.6, ambient at 0.3: without a margin the best FRR (0) is at 0.3..0.39; with
    a 0.15 margin no cutoff below 0.45 qualifies, so FRR 0.5 at 0.45..0.59 (the middle: 0.52)."""
    pts = evaluate(StreamScores([np.full(20, 0.4), np.full(20, 0.6)],
                                [np.r_[np.zeros(500), np.full(20, 0.3), np.zeros(500)]]), S)
    assert at_fa_target(pts, 0.0).frr == 0.0
    safe = at_fa_target(pts, 0.0, margin=0.15)
    assert safe.frr == 0.5 and safe.cutoff == pytest.approx(0.52, abs=0.011)
    assert at_fa_target(pts, 0.0, margin=0.8) is None  # nothing meets the target that far up


def test_checkpoint_selection_reaches_target_then_maximises_recall():
    hist = [Checkpoint(100, 5.0, 0.9), Checkpoint(200, 2.0, 0.6), Checkpoint(300, 0.4, 0.5),
            Checkpoint(400, 0.3, 0.7), Checkpoint(500, 0.6, 0.95), Checkpoint(600, 0.1, 0.65)]
    assert select_checkpoint(hist, target_fa_per_hour=0.5).step == 400  # first meets target, then best recall
    assert select_checkpoint(hist[:2], target_fa_per_hour=0.5).step == 200  # none meets it: lowest FA/h
    assert select_checkpoint(hist, target_fa_per_hour=10).step == 500  # all meet it: best recall
    assert select_checkpoint([], 0.5) is None
