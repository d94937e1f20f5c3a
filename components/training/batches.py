"""Training batches from a memory-mapped FeatureStore: per-label sampling weights, class and per-clip
weights, the SNR curriculum (augmentation epochs read in order) and SpecAugment on every batch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.artifacts import LABEL_CODES, FeatureSet, FeatureStoreLayout, Label, Split
from components.common.config import EpochOrder, SpecAugment, Training
from components.common.frontend import FLOAT_SCALE
from components.training.specaugment import spec_augment


@dataclass
class Batch:
    x: np.ndarray  # float32 [B, T, 40]
    y: np.ndarray  # float32 [B]: 1 for positives
    weight: np.ndarray  # float32 [B]: per-clip weight x class weight
    epoch: int
    clips: np.ndarray | None = None  # int64 [B]: each sample's clip index in the epoch's FeatureSet


def window(frames: np.ndarray, input_frames: int, start: int | None = None) -> np.ndarray:
    """`input_frames` frames ending at the clip's end (or from `start`), front-padded with zeros if short."""
    if start is None:
        start = len(frames) - input_frames
    out = np.zeros((input_frames, frames.shape[1]), np.float32)
    piece = frames[max(0, start):start + input_frames]
    out[input_frames - len(piece):] = piece
    return out * np.float32(FLOAT_SCALE)


class TrainingBatches:
    """Draws batches for step `s` of `total_steps` from augmentation epoch `s * K // total_steps` (the curriculum)
    or `s mod K` (`training.epoch_order: interleaved`)."""

    def __init__(self, store: FeatureStoreLayout, training: Training, spec_augment: SpecAugment,
                 input_frames: int, seed: int) -> None:
        self.sets: list[FeatureSet] = [store.open(Split.TRAIN, k) for k in store.epochs(Split.TRAIN)]
        if not self.sets:
            raise ValueError(f"{store.root}: no training epochs in the feature store")
        self.training, self.spec_cfg, self.input_frames = training, spec_augment, input_frames
        self.seed = seed
        weights = training.sampling_weights
        self.groups = []  # per epoch: [(label, indices, sampling weight)]
        for fs in self.sets:
            groups = [(label, np.flatnonzero(fs.labels == LABEL_CODES[label]), getattr(weights, label.value))
                      for label in Label if hasattr(weights, label.value)]
            self.groups.append([g for g in groups if g[1].size and g[2] > 0])
        if not any(label is Label.POSITIVE for label, _, _ in self.groups[0]):
            raise ValueError("the training split has no positive clips")

    def epoch_for(self, step: int, total_steps: int) -> int:
        if self.training.epoch_order is EpochOrder.INTERLEAVED:
            return step % len(self.sets)
        return min(len(self.sets) - 1, step * len(self.sets) // max(total_steps, 1))

    def batch(self, step: int, total_steps: int) -> Batch:
        """A function of (seed, step) only, so a resumed run sees the batches an uninterrupted one would."""
        rng = np.random.default_rng([self.seed, 7, step])
        k = self.epoch_for(step, total_steps)
        fs, groups = self.sets[k], self.groups[k]
        probs = np.array([w for _, _, w in groups], dtype=np.float64)
        picks = rng.choice(len(groups), size=self.training.batch_size, p=probs / probs.sum())
        x = np.empty((self.training.batch_size, self.input_frames, 40), np.float32)
        y = np.zeros(self.training.batch_size, np.float32)
        w = np.empty(self.training.batch_size, np.float32)
        clips = np.empty(self.training.batch_size, np.int64)
        for i, g in enumerate(picks):
            label, idx, _ = groups[g]
            clip = clips[i] = int(idx[rng.integers(idx.size)])
            frames = fs.clip(clip)
            if label in (Label.POSITIVE, Label.HARD_NEGATIVE):
                start = None  # the wake word (or the mined confusable) ends near the clip's end: keep the end
            else:
                start = int(rng.integers(0, max(1, len(frames) - self.input_frames + 1)))
            x[i] = window(frames, self.input_frames, start)
            positive = label is Label.POSITIVE
            y[i] = 1.0 if positive else 0.0
            w[i] = fs.weights[clip] * (self.training.positive_class_weight if positive
                                       else self.training.negative_class_weight)
        if self.training.spec_augment.value != "off":
            x = spec_augment(x, rng, self.spec_cfg)
        return Batch(x, y, w, k, clips)


def stream_windows(frames: np.ndarray, input_frames: int, stride: int) -> np.ndarray:
    """Every window the streaming model would see: ending at input_frames, +stride, ... (a strided view)."""
    n = len(frames)
    if n < input_frames:
        return np.zeros((0, input_frames, frames.shape[1]), frames.dtype)
    view = np.lib.stride_tricks.sliding_window_view(frames, (input_frames, frames.shape[1]))[:, 0]
    return view[::stride]
