"""Score a non-streaming model the way the device streams: one window per inference step (stride frames),
positives clip by clip from fresh state, ambient audio as continuous streams."""
from __future__ import annotations

from typing import Callable

import numpy as np

from components.common.artifacts import LABEL_CODES, FeatureStoreLayout, Label, Split
from components.training.batches import stream_windows
from components.common.frontend import FLOAT_SCALE
from components.common.metrics import StreamScores

Predict = Callable[[np.ndarray], np.ndarray]  # float32 [B, T, 40] -> probabilities [B]


def stream_probabilities(predict: Predict, frames: np.ndarray, input_frames: int, stride: int,
                         batch: int = 1024) -> np.ndarray:
    windows = stream_windows(frames, input_frames, stride)
    out = [predict(windows[i:i + batch].astype(np.float32) * np.float32(FLOAT_SCALE))
           for i in range(0, len(windows), batch)]
    return np.concatenate(out).reshape(-1) if out else np.zeros(0)


def split_scores(predict: Predict, store: FeatureStoreLayout, split: Split, input_frames: int,
                 stride: int) -> StreamScores:
    """Positives of the split's first epoch (each its own stream) and the split's ambient recordings."""
    clips = store.open(split, 0)
    positives = [stream_probabilities(predict, clips.clip(i), input_frames, stride)
                 for i in np.flatnonzero(clips.labels == LABEL_CODES[Label.POSITIVE])]
    ambient = [stream_probabilities(predict, raw, input_frames, stride) for raw in store.ambient(split)]
    return StreamScores(positives, ambient)
