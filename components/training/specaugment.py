"""SpecAugment for feature batches `[B, T, F]`, xp-generic, for training to call on every batch.

Masks come from a stateful generator that advances on every call, so no two batches share a mask (a
fixed stateless seed that froze the mask was a bug in an earlier trainer).
"""
from __future__ import annotations

import numpy as np

from components.common.config import SpecAugment


def draw_masks(rng: np.random.Generator, batch: int, frames: int, bins: int, cfg: SpecAugment) -> np.ndarray:
    """Boolean keep-mask `[B, T, F]` (False where masked): per mask, a size uniform in [0, max] at a
    uniform start, as in microWakeWord's spec_augment."""
    keep = np.ones((batch, frames, bins), bool)
    for axis, count, max_size, length in ((1, cfg.time_mask_count, cfg.time_mask_max_frames, frames),
                                          (2, cfg.freq_mask_count, cfg.freq_mask_max_bins, bins)):
        if count == 0 or max_size == 0:
            continue
        sizes = rng.integers(0, min(max_size, length) + 1, (batch, count))
        starts = (rng.random((batch, count)) * (length - sizes + 1)).astype(np.int64)
        pos = np.arange(length)
        hit = ((pos[None, None, :] >= starts[..., None]) & (pos[None, None, :] < (starts + sizes)[..., None])).any(1)
        keep &= ~hit[:, :, None] if axis == 1 else ~hit[:, None, :]
    return keep


def spec_augment(features, rng: np.random.Generator, cfg: SpecAugment, xp=np):
    """Zero random time and frequency bands of a `[B, T, F]` batch (NumPy or CuPy array)."""
    b, t, f = features.shape
    keep = xp.asarray(draw_masks(rng, b, t, f, cfg))
    return features * keep.astype(features.dtype)
