"""Streaming INT8 export: the float streaming model equals the Keras model, and the .tflite meets the contract."""
import numpy as np
import pytest

from components.common.config import ModelSpec
from components.training.models import build
from components.esphome_verification.contract import flatbuffer_checks
from components.runtime.arena import minimum_arena
from components.runtime.streaming import convert_int8, extract, representative, stream, streaming_module

SPEC = ModelSpec(name="v2like", pointwise_filters=[64, 64, 64, 64])  # the official v2 hyperparameters


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rng = np.random.default_rng(0)
    model = build(SPEC)
    for b in range(len(SPEC.mixconv_kernels)):  # non-trivial BatchNorm statistics, so folding is exercised
        bn = model.get_layer(f"b{b}_bn")
        g, beta, mean, var = bn.get_weights()
        bn.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, beta.shape),
                        rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2, var.shape)])
    frames = rng.uniform(0, 26, (600, 40)).astype(np.float32)
    module = streaming_module(extract(model, SPEC))
    probs = stream(module, frames, SPEC.stride)
    path = convert_int8(module, representative([frames[i:i + 3] for i in range(0, 600, 3)], SPEC.stride),
                        tmp_path_factory.mktemp("export") / "model.tflite")
    return model, frames, probs, path


def test_float_streaming_matches_the_keras_model(exported):
    model, frames, probs, _ = exported
    n_in = SPEC.input_frames
    calls = [n for n in range(len(probs)) if 3 * (n + 1) >= n_in]
    windows = np.stack([frames[3 * (n + 1) - n_in:3 * (n + 1)] for n in calls])
    reference = model(windows, training=False).numpy()[:, 0]
    assert np.abs(reference - probs[calls]).max() < 1e-5


def test_int8_file_meets_every_structural_check(exported):
    *_, path = exported
    checks = flatbuffer_checks(path)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    state = next(c for c in checks if c.name == "state_variables")
    assert state.found["variables"] == 6  # as in the official v2 files
    assert 40_000 < path.stat().st_size < 80_000


def test_tflm_agrees_with_the_float_streaming_model(exported):
    from tflite_micro.python.tflite_micro import runtime

    _, frames, probs, path = exported
    interp = runtime.Interpreter.from_file(str(path), arena_size=None)
    q = np.clip(np.round(frames / (26 / 255)) - 128, -128, 127).astype(np.int8)
    out = []
    for n in range(len(frames) // 3):
        interp.set_input(q[3 * n:3 * n + 3][None], 0)
        interp.invoke()
        out.append(int(np.asarray(interp.get_output(0)).reshape(-1)[0]))
    err_lsb = np.abs(np.array(out) / 256 - probs) * 256
    assert err_lsb.mean() < 3  # random weights and random features: the median case must be tight
    assert np.percentile(err_lsb, 95) < 12
    assert minimum_arena(path) < 32 * 1024  # within the default device budget
