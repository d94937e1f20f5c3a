"""A Keras student as the device runs it, and judged there: INT8 streaming conversion, then the validation split
scored on TFLite-Micro's uint8 path with the cutoff at which the *worst* condition meets the FA/h target.

Quantization ships through it; distillation judges its candidate students through it, because a float score
of the same model does not order students the way the INT8 model does (measured: on one run the float score,
with the same worst-condition rule, picked a student that detects 12 real clips where the device path's pick
detects 32).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.artifacts import LABEL_CODES, FeatureStoreLayout, Label, Split
from components.common.config import ModelSpec, WakelineConfig
from components.common.evaluation import Breakdown, breakdown, choose_cutoff, store_streams
from components.common.frontend import FLOAT_SCALE
from components.common.metrics import OperatingPoint
from components.runtime.streaming import convert_int8, extract, representative, streaming_module

CALIBRATION_SAMPLES = 300
CALIBRATION_CLIPS_PER_LABEL = 8


def clips(store: FeatureStoreLayout, split: Split, label: Label, limit: int, rng: np.random.Generator):
    """Up to `limit` raw feature clips of one label from the split's first epoch, in a random order."""
    fs = store.open(split, 0)
    idx = np.flatnonzero(fs.labels == LABEL_CODES[label])
    idx = rng.permutation(idx)[:limit]
    return [np.asarray(fs.clip(int(i))) for i in idx]


def calibration_samples(store: FeatureStoreLayout, stride: int, seed: int) -> list[np.ndarray]:
    """Whole training clips replayed in order, `stride` frames at a time, so the ring buffers hold the histories
    they hold on the device (random isolated windows would calibrate the states on nonsense)."""
    rng = np.random.default_rng([seed, 56])
    train = (clips(store, Split.TRAIN, Label.POSITIVE, CALIBRATION_CLIPS_PER_LABEL, rng)
             + clips(store, Split.TRAIN, Label.NEGATIVE, CALIBRATION_CLIPS_PER_LABEL, rng))
    samples = []
    for raw in (train[i] for i in rng.permutation(len(train))):
        feats = raw.astype(np.float32) * np.float32(FLOAT_SCALE)
        samples += [feats[i:i + stride] for i in range(0, len(feats) - stride + 1, stride)]
    return samples[:CALIBRATION_SAMPLES * 2]


def to_int8(model, spec: ModelSpec, store: FeatureStoreLayout, seed: int, out_path: Path):
    """(the float streaming module, the INT8 `.tflite` written at `out_path`)."""
    module = streaming_module(extract(model, spec))
    path = convert_int8(module, representative(calibration_samples(store, spec.stride, seed), spec.stride),
                        Path(out_path))
    return module, path


@dataclass(frozen=True)
class DeviceValidation:
    """The validation split on the device's path: the chosen cutoff and every cell at it."""

    chosen: OperatingPoint
    at_cutoff: Breakdown


def validate(tflite_path: Path, store: FeatureStoreLayout, config: WakelineConfig) -> DeviceValidation:
    """Validation positives under every condition and validation ambient per condition, scored by TFLite-Micro
    with the device's input mapping; the cutoff is the one at which the worst condition meets the FA/h target (a
    pooled rate would let quiet noise hide loud speech)."""
    from components.runtime.tflm import TflmStreamer

    positives, ambient = store_streams(store, Split.VALIDATION, TflmStreamer(tflite_path))
    chosen = choose_cutoff(positives, ambient, config.target_false_accepts_per_hour, config.cutoff_safety_margin,
                           quantized=True)
    return DeviceValidation(chosen, breakdown(positives, ambient, chosen.cutoff, quantized=True))
