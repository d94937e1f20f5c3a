"""A trained (non-streaming) Keras MixedNet as the streaming model ESPHome runs: state in ring buffers
(resource variables), 3 new feature frames per call, then INT8 TFLite (reference streaming-export.md).

Each ring buffer keeps the frames the next layer still needs: `mem = concat(state, new)`, `state <- mem[-n:]`,
with a control dependency so the converter interleaves the ASSIGN_VARIABLEs as the official files do.
BatchNorm is folded and ReLUs fused by the converter; nothing outside ESPHome's 20 ops remains.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from components.common import atomic
from components.common.config import Architecture, ModelSpec
from components.training.models import HEAD_INPUT

FEATURE_MAX = 26.0  # float features lie in [0, 26]; the representative data must reach both ends


@dataclass(frozen=True)
class StreamingWeights:
    spec: ModelSpec
    first_conv: np.ndarray
    blocks: list[dict]  # per block: dw kernels per group, group sizes, pointwise kernel, bn params
    head_frames: int
    dense_kernel: np.ndarray
    dense_bias: np.ndarray


def extract(model, spec: ModelSpec) -> StreamingWeights:
    if spec.architecture is not Architecture.MIXEDNET:
        raise ValueError(f"{spec.name}: only MixedNet streams on the device (got {spec.architecture.value})")
    blocks = []
    for b, kernels in enumerate(spec.mixconv_kernels):
        bn = model.get_layer(f"b{b}_bn")
        gamma, beta, mean, var = (np.asarray(w) for w in bn.get_weights())
        dws = [np.asarray(model.get_layer(f"b{b}_dw{k}").get_weights()[0]) for k in kernels]
        blocks.append({"kernels": list(kernels), "dw": dws, "sizes": [int(w.shape[2]) for w in dws],
                       "pointwise": np.asarray(model.get_layer(f"b{b}_pointwise").get_weights()[0]),
                       "bn": (mean, var, beta, gamma, float(bn.epsilon))})
    dense = model.get_layer("probability")
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    head_frames = int(model.get_layer(HEAD_INPUT).input.shape[1])
    return StreamingWeights(spec, np.asarray(model.get_layer("first_conv").get_weights()[0]), blocks, head_frames,
                            kernel, bias)


def streaming_module(w: StreamingWeights):
    """A tf.Module whose `__call__([1, stride, 40] float) -> [1, 1]` keeps its history in tf.Variables."""
    import tensorflow as tf

    spec = w.spec
    stride = spec.stride

    class StreamingMixedNet(tf.Module):
        def __init__(self):
            super().__init__(name="streaming")
            c = lambda a: tf.constant(np.asarray(a, np.float32))  # noqa: E731
            self.first = c(w.first_conv)
            self.blocks = [{**blk, "dw": [c(k) for k in blk["dw"]], "pointwise": c(blk["pointwise"]),
                            "bn": tuple(c(x) for x in blk["bn"][:4]) + (blk["bn"][4],)} for blk in w.blocks]
            self.dense_kernel, self.dense_bias = c(w.dense_kernel), c(w.dense_bias)
            channels = [40] + [int(blk["pointwise"].shape[-1]) for blk in w.blocks]
            first_out = int(w.first_conv.shape[-1])
            lengths = [spec.first_conv_kernel - stride] + [max(k) - 1 for k in spec.mixconv_kernels]
            ins = [40, first_out] + channels[1:-1]
            shapes = [(1, n, 1, ch) for n, ch in zip(lengths, ins)] + [(1, w.head_frames - 1, 1, channels[-1])]
            self.states = [tf.Variable(tf.zeros(s), trainable=False, name=f"stream_{i}")
                           for i, s in enumerate(shapes)]

        def _ring(self, i, x):
            state = self.states[i]
            mem = tf.concat([state, x], axis=1)
            if state.shape[1] == 0:
                return mem
            with tf.control_dependencies([state.assign(mem[:, -state.shape[1]:])]):
                return tf.identity(mem)

        @tf.function(input_signature=[tf.TensorSpec([1, stride, 40], tf.float32, name="input_audio")])
        def __call__(self, features):
            x = tf.reshape(features, [1, stride, 1, 40])
            x = tf.nn.relu(tf.nn.conv2d(self._ring(0, x), self.first, strides=[1, stride, 1, 1], padding="VALID"))
            for b, blk in enumerate(self.blocks):
                mem = self._ring(b + 1, x)
                groups = tf.split(mem, blk["sizes"], axis=3) if len(blk["sizes"]) > 1 else [mem]
                outs = [tf.nn.depthwise_conv2d(g[:, -k:], dw, strides=[1, 1, 1, 1], padding="VALID")
                        for g, k, dw in zip(groups, blk["kernels"], blk["dw"])]
                x = tf.concat(outs, axis=3) if len(outs) > 1 else outs[0]
                x = tf.nn.conv2d(x, blk["pointwise"], strides=[1, 1, 1, 1], padding="VALID")
                mean, var, beta, gamma, eps = blk["bn"]
                x = tf.nn.relu(tf.nn.batch_normalization(x, mean, var, beta, gamma, eps))
            mem = self._ring(len(self.blocks) + 1, x)
            flat = tf.reshape(mem, [1, -1])
            return tf.sigmoid(tf.matmul(flat, self.dense_kernel) + self.dense_bias)

        def reset(self):
            for s in self.states:
                s.assign(tf.zeros_like(s))

    return StreamingMixedNet()


def stream(module, frames: np.ndarray, stride: int) -> np.ndarray:
    """Float streaming probabilities over `[n, 40]` float features from fresh state: one per `stride` frames."""
    module.reset()
    n = len(frames) // stride
    return np.array([float(module(frames[i * stride:(i + 1) * stride][None].astype(np.float32))[0, 0])
                     for i in range(n)])


def representative(samples: Iterable[np.ndarray], stride: int) -> Callable:
    """Calibration data: real feature windows, with the first sample pinned to 0.0 and 26.0 so the input
    scale comes out exactly 26/255 (the mapping ESPHome hard-codes)."""
    def gen():
        for i, s in enumerate(samples):
            x = np.asarray(s, np.float32).reshape(1, stride, 40).copy()
            if i == 0:
                x[0, 0, 0], x[0, 0, 1] = 0.0, FEATURE_MAX
            yield [x]
    return gen


def convert_int8(module, representative_data: Callable, out_path: Path) -> Path:
    import tensorflow as tf

    cf = module.__call__.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    conv.optimizations = {tf.lite.Optimize.DEFAULT}
    conv._experimental_variable_quantization = True  # int8 states; without it: float states + DEQUANTIZE
    conv.target_spec.supported_ops = {tf.lite.OpsSet.TFLITE_BUILTINS_INT8}
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.uint8
    conv.representative_dataset = tf.lite.RepresentativeDataset(representative_data)
    out_path = Path(out_path)
    atomic.write_bytes(out_path, conv.convert())
    return out_path
