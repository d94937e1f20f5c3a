"""Start a MixedNet from the official ESPHome `okay_nabu` v2 model's convolutions (Apache-2.0, vendored in
`pretrained/`, with its README and LICENSE): they were trained on real speech, music and noise that wakeline cannot
download, so a student that starts from them has heard what a home sounds like before it hears our synthetic
data. The head (the dense layer) is the wake word's own and stays freshly initialised unless asked for.

The TFLite model is INT8 with BatchNorm folded into each pointwise convolution. Loading dequantizes every
weight (scale x (q - zero point), per channel) and turns each folded bias back into a BatchNorm that passes the
pointwise output through unchanged, plus that bias, in inference and (for batches like the calibration windows)
in training mode too: gamma = sqrt(var + eps), beta = mean + bias, with mean and var measured on `windows`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from components.common.config import OKAY_NABU_SHAPES, ModelSpec

OKAY_NABU = Path(__file__).parent / "pretrained" / "okay_nabu.tflite"


class IncompatibleSpec(ValueError):
    """The model's convolutions are not okay_nabu's, so its weights cannot be loaded."""


def _dequantized(interp, index: int) -> np.ndarray:
    detail = next(t for t in interp.get_tensor_details() if t["index"] == index)
    q = detail["quantization_parameters"]
    values = interp.get_tensor(index).astype(np.float64)
    shape = [1] * values.ndim
    if len(q["scales"]) > 1:
        shape[q["quantized_dimension"]] = -1
    scales = np.asarray(q["scales"], np.float64).reshape(shape)
    zero_points = np.asarray(q["zero_points"], np.float64).reshape(shape)
    return (scales * (values - zero_points)).astype(np.float32)


def read(path: Path = OKAY_NABU) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(float weights, float bias) per op kind, in graph order: `conv` (first conv, then each block's pointwise),
    `depthwise` (each block's branches in channel order), `dense` (the head)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's "use ai_edge_litert" notice
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    kinds = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "dense"}
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in kinds.values()}
    for op in interp._get_ops_details():  # private, but in the pinned TF 2.21; the tests read the model through it
        kind = kinds.get(op["op_name"])
        if kind:
            out[kind].append((_dequantized(interp, int(op["inputs"][1])), _dequantized(interp, int(op["inputs"][2]))))
    return out


def load_into(model, spec: ModelSpec, windows: np.ndarray, *, head: bool = False, path: Path = OKAY_NABU) -> None:
    """Set `model` (components.training.models.mixednet(spec)) to okay_nabu's weights; `windows` [N, T, 40]
    (float features) calibrate the BatchNorm statistics. `head` also loads okay_nabu's dense layer (only where
    the spec's input length gives its width, 384: tests)."""
    import keras

    wrong = [k for k, v in OKAY_NABU_SHAPES.items() if getattr(spec, k) != v]
    if wrong:  # the config refuses such a student before any stage runs; this guards other callers
        raise IncompatibleSpec(f"{spec.name}: {', '.join(wrong)} differ from okay_nabu's {OKAY_NABU_SHAPES}")
    w = read(path)
    convs, depthwise = iter(w["conv"]), iter(w["depthwise"])
    kernel, bias = next(convs)
    if np.any(bias):
        raise IncompatibleSpec(f"{path}: the first convolution has a bias; wakeline's MixedNet has none")
    model.get_layer("first_conv").set_weights([kernel.transpose(1, 2, 3, 0)])  # (out,h,w,in) -> (h,w,in,out)
    folded = []
    for b, kernels in enumerate(spec.mixconv_kernels):
        dw_bias = []
        for k in kernels:
            kernel, bias = next(depthwise)  # (1, k, 1, C) -> (k, 1, C, 1)
            model.get_layer(f"b{b}_dw{k}").set_weights([kernel[0][:, :, :, None]])
            dw_bias.append(bias)
        kernel, bias = next(convs)
        pointwise = kernel.transpose(1, 2, 3, 0)
        model.get_layer(f"b{b}_pointwise").set_weights([pointwise])
        # a depthwise bias passes the linear pointwise unchanged: fold it into the BatchNorm's offset too
        folded.append(bias + np.concatenate(dw_bias) @ pointwise[0, 0])
    bns = [model.get_layer(f"b{b}_bn") for b in range(len(spec.mixconv_kernels))]
    for bn, offset in zip(bns, folded):  # identity + offset in inference mode, whatever the statistics
        bn.set_weights([np.ones_like(offset), offset, np.zeros_like(offset), np.full_like(offset, 1 - bn.epsilon)])
    probe = keras.Model(model.input, [model.get_layer(f"b{b}_pointwise").output for b in range(len(bns))])
    for bn, offset, z in zip(bns, folded, probe.predict(windows, verbose=0, batch_size=256)):
        mean = z.reshape(-1, z.shape[-1]).mean(0)
        var = z.reshape(-1, z.shape[-1]).var(0)
        bn.set_weights([np.sqrt(var + bn.epsilon), mean + offset, mean, var])
    if head:
        kernel, bias = w["dense"][0]
        model.get_layer("probability").set_weights([kernel.T, bias])


def stage_layers(model, spec: ModelSpec, stages: int) -> list:
    """The layers of the first `stages` convolution stages: the first convolution, then each MixConv block's
    depthwise convolutions, pointwise convolution and BatchNorm."""
    names = ["first_conv"][:stages]
    for b, kernels in enumerate(spec.mixconv_kernels[:max(stages - 1, 0)]):
        names += [f"b{b}_dw{k}" for k in kernels] + [f"b{b}_pointwise", f"b{b}_bn"]
    return [model.get_layer(n) for n in names]


def freeze(model, spec: ModelSpec, stages: int) -> None:
    """Keep the first `stages` convolution stages as they are: out of the gradient, and each BatchNorm in inference
    mode (Keras runs a non-trainable BatchNorm on its moving statistics, so they stay okay_nabu's)."""
    for layer in stage_layers(model, spec, stages):
        layer.trainable = False
