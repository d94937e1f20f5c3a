"""okay_nabu's weights in wakeline's MixedNet: the Keras model computes what the official INT8 model computes
(its 384 head features, TFLite's own interpreter, the same feature frames), and its BatchNorms pass the
pointwise outputs through in training mode as in inference mode."""
import warnings

import numpy as np
import pytest

from components.common.config import ModelSpec
from components.common.frontend import FLOAT_SCALE
from components.runtime.tflm import exact_input
from components.training import pretrained
from components.training.models import HEAD_INPUT, mixednet

STEPS = 60  # streaming steps of 3 frames compared, after the 170-frame receptive field has filled


def _frames(seed=0):
    return np.random.default_rng(seed).integers(0, 700, size=(170 + 3 * STEPS, 40)).astype(np.uint16)


def _windows(raw):
    windows = np.stack([raw[3 * (i + 1) - 170:3 * (i + 1)] for i in range(56, 56 + STEPS)])
    return windows.astype(np.float32) * FLOAT_SCALE


def _official_head_features(raw):
    """The official streaming model's FULLY_CONNECTED input after each step, dequantized."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_path=str(pretrained.OKAY_NABU), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    fc = next(op for op in interp._get_ops_details() if op["op_name"] == "FULLY_CONNECTED")["inputs"][0]
    scale, zero = next(t for t in interp.get_tensor_details() if t["index"] == fc)["quantization"]
    q, feed = exact_input(raw), interp.get_input_details()[0]["index"]
    out = []
    for i in range(56 + STEPS):
        interp.set_tensor(feed, q[3 * i:3 * i + 3][None])
        interp.invoke()
        if i >= 56:
            out.append((interp.get_tensor(fc).reshape(-1).astype(np.float32) - zero) * scale)
    return np.array(out)


def test_loaded_student_computes_what_okay_nabu_computes():
    import keras

    keras.utils.set_random_seed(0)
    spec = ModelSpec(name="student")
    raw = _frames()
    official = _official_head_features(raw)
    model = mixednet(spec)
    body = keras.Model(model.input, model.get_layer(HEAD_INPUT).output)
    fresh = body.predict(_windows(raw), verbose=0)
    pretrained.load_into(model, spec, _windows(_frames(1)))  # calibrated on other frames than those compared
    ours = body.predict(_windows(raw), verbose=0)
    assert np.corrcoef(official.ravel(), ours.ravel())[0, 1] > 0.99
    assert np.abs(official - ours).max() < 0.25 * np.abs(official).max()  # INT8 rounding, not another function
    assert abs(np.corrcoef(official.ravel(), fresh.ravel())[0, 1]) < 0.5  # random weights are not okay_nabu's


def test_batchnorm_statistics_match_the_calibration_windows():
    import keras

    keras.utils.set_random_seed(0)
    spec = ModelSpec(name="student")
    model = mixednet(spec)
    windows = _windows(_frames(2))
    pretrained.load_into(model, spec, windows)
    body = keras.Model(model.input, model.get_layer(HEAD_INPUT).output)
    inference = body(windows, training=False).numpy()
    training = body(windows, training=True).numpy()
    assert np.abs(inference).max() > 0
    assert np.allclose(training, inference, atol=1e-3 * np.abs(inference).max() + 1e-4)


def test_a_student_of_other_shapes_is_refused():
    spec = ModelSpec(name="small", first_conv_filters=16, pointwise_filters=[24, 24, 24, 24])
    with pytest.raises(pretrained.IncompatibleSpec, match="first_conv_filters, pointwise_filters"):
        pretrained.load_into(mixednet(spec), spec, np.zeros((1, 170, 40), np.float32))


def test_frozen_stages_keep_okay_nabus_weights_through_training():
    """After freeze(3), a training step moves the last two blocks and the head but neither the first
    convolution, the first two blocks' weights nor their BatchNorm statistics."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    spec = ModelSpec(name="student")
    model = mixednet(spec)
    windows = _windows(_frames(3))
    pretrained.load_into(model, spec, windows)
    pretrained.freeze(model, spec, 3)
    frozen = pretrained.stage_layers(model, spec, 3)
    assert [layer.name for layer in frozen] == ["first_conv", "b0_dw5", "b0_pointwise", "b0_bn", "b1_dw7",
                                                "b1_dw11", "b1_pointwise", "b1_bn"]
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    y = np.arange(len(windows)) % 2
    with tf.GradientTape() as tape:
        p = model(windows, training=True)[:, 0]
        loss = keras.losses.binary_crossentropy(y, p)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    moved = {layer.name for layer in model.layers
             if any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))}
    assert not moved & {layer.name for layer in frozen}
    assert {"b2_pointwise", "b3_pointwise", "b2_bn", "probability"} <= moved
