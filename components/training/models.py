"""The model zoo: MixedNet (microWakeWord's streaming architecture, what ESPHome runs) and a wider
temporal-convolution teacher. Keras 3 functional models over `[batch, frames, 40]` float features
(raw uint16 x 0.0390625); the output is one sigmoid probability per window.

MixedNet keeps what streaming needs: valid padding only, no look-ahead, branches aligned by dropping their
*oldest* frames, so the last output frame always depends on the newest input frames.
"""
from __future__ import annotations

from components.common.config import Architecture, ModelSpec


HEAD_INPUT = "body_output"  # every model: body (convolutions) -> this layer -> head (dropout, dense)


def split_body_head(model):
    """(body, head) sub-models sharing the model's layers: the body is deterministic given its input, so it
    can be recomputed in the backward pass; the head holds the dropout, whose random mask must not be."""
    import keras

    cut = model.get_layer(HEAD_INPUT).output
    body = keras.Model(model.input, cut, name=f"{model.name}_body")
    head = keras.Model(cut, model.output, name=f"{model.name}_head")
    return body, head


def build(spec: ModelSpec):
    return {Architecture.MIXEDNET: mixednet, Architecture.TCN: tcn}[spec.architecture](spec)


def mixednet(spec: ModelSpec):
    import keras
    from keras import layers, ops

    inp = keras.Input((spec.input_frames, 40), name="features")
    x = layers.Reshape((spec.input_frames, 1, 40))(inp)  # time on axis 1, the 40 channels as channels
    x = layers.Conv2D(spec.first_conv_filters, (spec.first_conv_kernel, 1), strides=(spec.stride, 1),
                      padding="valid", use_bias=False, name="first_conv")(x)
    x = layers.ReLU()(x)
    for b, (filters, kernels) in enumerate(zip(spec.pointwise_filters, spec.mixconv_kernels)):
        channels = x.shape[-1]
        sizes = [channels // len(kernels)] * len(kernels)
        sizes[0] += channels - sum(sizes)
        groups = ops.split(x, [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)], axis=-1) if len(kernels) > 1 else [x]
        branches = [layers.DepthwiseConv2D((k, 1), padding="valid", use_bias=False, name=f"b{b}_dw{k}")(g)
                    for g, k in zip(groups, kernels)]
        shortest = min(br.shape[1] for br in branches)
        branches = [br[:, br.shape[1] - shortest:] for br in branches]  # drop the oldest frames
        x = layers.Concatenate(axis=-1)(branches) if len(branches) > 1 else branches[0]
        x = layers.Conv2D(filters, (1, 1), use_bias=False, name=f"b{b}_pointwise")(x)
        x = layers.BatchNormalization(name=f"b{b}_bn")(x)
        x = layers.ReLU()(x)
    x = layers.Flatten(name=HEAD_INPUT)(x)
    x = layers.Dropout(spec.dropout)(x)
    out = layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)  # fp32 under mixed precision
    return keras.Model(inp, out, name=spec.name)


def tcn(spec: ModelSpec):
    import keras
    from keras import layers

    inp = keras.Input((spec.input_frames, 40), name="features")
    x = layers.Conv1D(spec.tcn_channels, 3, padding="causal", name="stem")(inp)
    for i, d in enumerate(spec.tcn_dilations):
        y = layers.Conv1D(spec.tcn_channels, 3, dilation_rate=d, padding="causal", use_bias=False,
                          name=f"t{i}_conv")(x)
        y = layers.BatchNormalization(name=f"t{i}_bn")(y)
        y = layers.ReLU()(y)
        y = layers.Dropout(spec.dropout)(y)
        x = layers.Add()([x, y])
    x = layers.GlobalMaxPooling1D(name=HEAD_INPUT)(x)
    x = layers.Dropout(spec.dropout)(x)
    out = layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")(x)
    return keras.Model(inp, out, name=spec.name)
