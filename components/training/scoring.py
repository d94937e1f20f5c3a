"""Score a non-streaming model the way the device streams: one window per inference step (stride frames),
positives clip by clip from fresh state, ambient audio as continuous streams."""
from __future__ import annotations

from typing import Callable

import numpy as np

from components.common.artifacts import LABEL_CODES, FeatureStoreLayout, Label, Split
from components.common.config import Architecture, ModelSpec
from components.training.batches import stream_windows
from components.common.frontend import FLOAT_SCALE
from components.common.metrics import StreamScores

Predict = Callable[[np.ndarray], np.ndarray]  # float32 [B, T, 40] -> probabilities [B]
Score = Callable[[np.ndarray], np.ndarray]  # raw uint16 features [frames, 40] -> one probability per window


def stream_probabilities(predict: Predict, frames: np.ndarray, input_frames: int, stride: int,
                         batch: int = 1024) -> np.ndarray:
    windows = stream_windows(frames, input_frames, stride)
    out = [predict(windows[i:i + batch].astype(np.float32) * np.float32(FLOAT_SCALE))
           for i in range(0, len(windows), batch)]
    return np.concatenate(out).reshape(-1) if out else np.zeros(0)


def model_scorer(model, spec: ModelSpec) -> Score:
    """The Keras model's probability for every window of a stream (inference mode).

    A MixedNet's body has valid convolutions only and strides only in its first, so it runs once over the
    whole stream; its head (flatten + dense over the last frames) becomes one convolution over time. Output w
    is then window w of `stream_probabilities` (the same numbers up to float rounding) for about
    input_frames / stride times less work. Other architectures are scored window by window."""
    if spec.architecture is not Architecture.MIXEDNET:
        return lambda raw: stream_probabilities(lambda x: model(x, training=False).numpy(), raw, spec.input_frames,
                                                spec.stride)
    import tensorflow as tf

    from components.training.models import HEAD_INPUT

    head_frames = int(model.get_layer(HEAD_INPUT).input.shape[1])
    dense = model.get_layer("probability")
    first, blocks = model.get_layer("first_conv"), [
        ([model.get_layer(f"b{b}_dw{k}") for k in kernels], model.get_layer(f"b{b}_pointwise"),
         model.get_layer(f"b{b}_bn")) for b, kernels in enumerate(spec.mixconv_kernels)]

    @tf.function(input_signature=[tf.TensorSpec([1, None, 1, 40], tf.float32)], reduce_retracing=True)
    def forward(x):
        x = tf.nn.relu(first(x))
        for dws, pointwise, bn in blocks:
            sizes = [int(dw.kernel.shape[2]) for dw in dws]
            groups = tf.split(x, sizes, axis=3) if len(dws) > 1 else [x]
            branches = [dw(g) for dw, g in zip(dws, groups)]
            shortest = tf.reduce_min([tf.shape(br)[1] for br in branches])
            branches = [br[:, tf.shape(br)[1] - shortest:] for br in branches]  # drop the oldest frames
            x = tf.concat(branches, axis=3) if len(branches) > 1 else branches[0]
            x = tf.nn.relu(bn(pointwise(x), training=False))
        kernel = tf.reshape(tf.cast(dense.kernel, tf.float32), [head_frames, 1, -1, 1])  # flatten order: (t, 1, c)
        logits = tf.nn.conv2d(tf.cast(x, tf.float32), kernel, strides=1, padding="VALID") + tf.cast(dense.bias,
                                                                                                     tf.float32)
        return tf.sigmoid(tf.reshape(logits, [-1]))

    def score(raw: np.ndarray) -> np.ndarray:
        if len(raw) < spec.input_frames:
            return np.zeros(0)
        x = np.asarray(raw, np.float32)[None, :, None, :] * np.float32(FLOAT_SCALE)
        return forward(tf.constant(x)).numpy().astype(np.float64)

    return score


def split_scores(score: Score, store: FeatureStoreLayout, split: Split) -> StreamScores:
    """Positives of the split's first epoch (each its own stream) and the split's ambient recordings."""
    clips = store.open(split, 0)
    positives = [score(clips.clip(i)) for i in np.flatnonzero(clips.labels == LABEL_CODES[Label.POSITIVE])]
    ambient = [score(raw) for raw in store.ambient(split)]
    return StreamScores(positives, ambient)
