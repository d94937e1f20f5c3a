"""The mining scan's pure core: chunk geometry, exact peak picking across chunk boundaries, top K per hour."""
import numpy as np
import pytest

from components.background_mining.scan import (ChunkPlan, ChunkResult, Geometry, Hit, ScanParams, chunk_result,
                                               merge_file, owned_scores, plan_chunks, top_k)
from components.common.frontend import n_frames

WINDOW = Geometry(stride=3, first_end=97, context=98)  # the probe: 98-frame windows every 3 frames
STREAMING = Geometry(stride=3, first_end=2, context=300)  # a streaming .tflite


def brute_force_peaks(p: np.ndarray, threshold: float, r: int) -> list[tuple[int, float]]:
    """The definition: above the threshold, higher than everything within r before, >= everything within r after."""
    out = []
    for n in range(len(p)):
        if p[n] <= np.float32(threshold):
            continue
        left, right = p[max(0, n - r):n], p[n + 1:n + r + 1]
        if (left < p[n]).all() and (right <= p[n]).all():
            out.append((n, float(p[n])))
    return out


@pytest.mark.parametrize("g", [WINDOW, STREAMING])
@pytest.mark.parametrize("seconds", [0.5, 0.99, 5.0, 29.97, 61.3, 125.0])
def test_chunks_own_every_output_once_and_see_their_windows(g, seconds):
    params = ScanParams(threshold=0.5, min_separation_s=1.0, chunk_s=10.0)
    n = int(seconds * 16_000)
    plans = plan_chunks(n, g, params)
    total = n_frames(n)
    assert len(plans) == max(1, -(-total // params.chunk_frames(g)))
    assert plans[0].first_output == 0
    for a, b in zip(plans, plans[1:]):
        assert b.first_output == a.first_output + a.owned  # contiguous, no gaps, no overlaps
    assert sum(p.owned for p in plans) == g.outputs(total)
    for p in plans:
        assert p.frame_start % g.stride == 0
        assert p.sample_stop <= n or p.owned == 0
        if p.owned:
            first_window_start = g.end_frame(p.first_output) - g.context + 1
            assert p.frame_start <= max(0, first_window_start)  # every owned output sees its whole history
            assert g.end_frame(p.first_output + p.owned - 1) < p.frame_stop


def test_owned_scores_picks_the_chunks_outputs():
    g = WINDOW
    params = ScanParams(threshold=0.5, min_separation_s=1.0, chunk_s=5.0)
    plans = plan_chunks(30 * 16_000, g, params)
    everything = np.arange(g.outputs(n_frames(30 * 16_000)), dtype=np.float32)
    for p in plans:  # a fake scorer whose output is its global index: local output j is global frame_start/3 + j
        local = everything[p.frame_start // g.stride:][:g.outputs(p.frame_stop - p.frame_start)]
        np.testing.assert_array_equal(owned_scores(local, p, g), everything[p.first_output:p.first_output + p.owned])
    with pytest.raises(ValueError, match="expected the"):
        owned_scores(np.zeros(3), plans[1], g)


@pytest.mark.parametrize("seed", range(12))
def test_peaks_are_the_same_whatever_the_chunking(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    # plateaus and ties on purpose: quantised scores
    p = (np.round(rng.random(n) ** 3 * 20) / 20).astype(np.float32)
    r = int(rng.integers(0, 60))
    want = brute_force_peaks(p, 0.5, r)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(0, 8)), replace=False))
        bounds = [0, *cuts.tolist(), n]
        chunks = []
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            params = ScanParams(threshold=0.5, min_separation_s=(r + 1) * 0.03, chunk_s=5.0)
            assert params.radius(WINDOW) == r
            plan = ChunkPlan(k, 0, 0, a, b - a)
            chunks.append(chunk_result(p[a:b], plan, params, WINDOW))
        assert merge_file(chunks, r) == want
        again = [ChunkResult.from_json(c.to_json()) for c in reversed(chunks)]  # through the session's JSON
        assert merge_file(again, r) == want


def test_min_separation_keeps_the_highest_and_ties_go_to_the_earlier():
    p = np.zeros(100, np.float32)
    p[[10, 20, 21, 60, 90]] = [0.7, 0.9, 0.9, 0.8, 0.4]
    params = ScanParams(threshold=0.5, min_separation_s=0.5, chunk_s=5.0)  # 50 frames: radius 16 outputs
    r = params.radius(WINDOW)
    assert r == 16
    res = chunk_result(p, ChunkPlan(0, 0, 0, 0, 100), params, WINDOW)
    assert merge_file([res], r) == [(20, pytest.approx(0.9)), (60, pytest.approx(0.8))]
    assert sum(res.histogram) == 100


def test_top_k_per_hour_over_all_files():
    hits = [Hit(f"f{i % 3}", "s", i, 97 + 3 * i, s) for i, s in enumerate([0.6, 0.9, 0.7, 0.9, 0.55])]
    kept, k = top_k(hits, hours=0.05, per_hour=60)  # 3 per 3 minutes
    assert k == 3
    assert [(h.file, h.output) for h in kept] == [("f0", 3), ("f1", 1), ("f2", 2)]
    assert top_k(hits, hours=0.0, per_hour=60) == ([], 0)
    assert top_k(hits, hours=10.0, per_hour=60)[0] == sorted(hits, key=lambda h: (-h.score, h.file, h.output))
    h = Hit("f", "s", 0, 97, 0.9)
    assert h.end_sample == 97 * 160 + 480 and h.clip_span(24_000) == (0, h.end_sample)
