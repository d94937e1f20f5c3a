"""SpecAugment masks: fresh on every call, bounded in size and count, exact zeros, identity when off."""
import copy

import numpy as np
import pytest

from components.common.config import SpecAugment
from components.training.specaugment import draw_masks, spec_augment


def _runs(hit: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], hit, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(edges[1::2] - edges[::2])


def _masked_bands(keep: np.ndarray):
    """Per clip: the time frames masked across every bin, and the bins masked across every frame."""
    return ~keep.any(axis=2), ~keep.any(axis=1)  # [B, T], [B, F]


def _batch(rng, b=8, t=100, f=40):
    # Strictly positive values, so a zero can only come from a mask.
    return (rng.random((b, t, f)) + 0.5).astype(np.float32)


def test_masks_differ_between_consecutive_calls_with_one_generator():
    cfg = SpecAugment()
    rng = np.random.default_rng(0)
    x = _batch(np.random.default_rng(1))
    first = spec_augment(x, rng, cfg)
    second = spec_augment(x, rng, cfg)
    assert not np.array_equal(first == 0, second == 0), "the mask froze between batches"
    masks = [draw_masks(rng, 8, 100, 40, cfg) for _ in range(5)]
    assert len({m.tobytes() for m in masks}) == 5


def test_masked_values_are_exact_zeros_and_the_rest_is_unchanged():
    cfg = SpecAugment(time_mask_count=2, time_mask_max_frames=10, freq_mask_count=2, freq_mask_max_bins=8)
    x = _batch(np.random.default_rng(2))
    rng = np.random.default_rng(3)
    keep = draw_masks(copy.deepcopy(rng), *x.shape, cfg)
    out = spec_augment(x, rng, cfg)
    assert out.shape == x.shape and out.dtype == np.float32 and isinstance(out, np.ndarray)
    assert np.all(out[~keep] == 0)
    np.testing.assert_array_equal(out[keep], x[keep])
    assert (~keep).any(), "this seed should mask something"
    # The masks are whole bands: a masked cell lies in a fully masked frame or a fully masked bin.
    time_hit, freq_hit = _masked_bands(keep)
    np.testing.assert_array_equal(~keep, time_hit[:, :, None] | freq_hit[:, None, :])


@pytest.mark.parametrize("axis", ["time", "freq"])
def test_one_mask_per_axis_is_one_band_no_longer_than_the_maximum(axis):
    max_size = 7
    cfg = SpecAugment(time_mask_count=1 if axis == "time" else 0, time_mask_max_frames=max_size,
                      freq_mask_count=1 if axis == "freq" else 0, freq_mask_max_bins=max_size)
    keep = draw_masks(np.random.default_rng(4), 3000, 50, 40, cfg)
    time_hit, freq_hit = _masked_bands(keep)
    hit, other = (time_hit, freq_hit) if axis == "time" else (freq_hit, time_hit)
    assert not other.any()
    sizes = []
    for row in hit:
        runs = _runs(row)
        assert len(runs) <= 1
        sizes.append(runs[0] if runs else 0)
    assert max(sizes) <= max_size
    # Size is uniform over 0..max: every size shows up over 3000 clips.
    assert set(sizes) == set(range(max_size + 1))


def test_several_masks_stay_within_count_and_total_size():
    cfg = SpecAugment(time_mask_count=3, time_mask_max_frames=6, freq_mask_count=2, freq_mask_max_bins=4)
    keep = draw_masks(np.random.default_rng(5), 2000, 80, 40, cfg)
    time_hit, freq_hit = _masked_bands(keep)
    for hits, count, max_size in ((time_hit, 3, 6), (freq_hit, 2, 4)):
        for row in hits:
            runs = _runs(row)
            # Masks may overlap or touch, so runs merge: never more runs than masks, never more cells than
            # count x max.
            assert len(runs) <= count
            assert sum(runs) <= count * max_size
        assert hits.sum(axis=1).max() > max_size, "several masks should sometimes cover more than one can"


def test_mask_larger_than_the_axis_is_clipped_to_it():
    cfg = SpecAugment(time_mask_count=1, time_mask_max_frames=10, freq_mask_count=0, freq_mask_max_bins=0)
    keep = draw_masks(np.random.default_rng(6), 500, 3, 40, cfg)
    time_hit, _ = _masked_bands(keep)
    assert time_hit.sum(axis=1).max() <= 3
    assert time_hit.all(axis=1).any(), "a mask as long as the clip should occur"


@pytest.mark.parametrize("cfg", [
    SpecAugment(time_mask_count=0, freq_mask_count=0),
    SpecAugment(time_mask_max_frames=0, freq_mask_max_bins=0),
    SpecAugment(time_mask_count=0, time_mask_max_frames=5, freq_mask_count=2, freq_mask_max_bins=0),
])
def test_zero_counts_or_sizes_are_the_identity(cfg):
    x = _batch(np.random.default_rng(7))
    rng = np.random.default_rng(8)
    state = copy.deepcopy(rng.bit_generator.state)
    out = spec_augment(x, rng, cfg)
    np.testing.assert_array_equal(out, x)
    assert out.dtype == np.float32
    assert rng.bit_generator.state == state  # nothing drawn when nothing is masked


def test_same_seed_same_masks():
    cfg = SpecAugment()
    a = draw_masks(np.random.default_rng(9), 4, 60, 40, cfg)
    b = draw_masks(np.random.default_rng(9), 4, 60, 40, cfg)
    np.testing.assert_array_equal(a, b)
