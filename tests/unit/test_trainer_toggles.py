"""Performance toggles change what runs, not just a flag: XLA compiles the train step into fused HLO."""
import numpy as np
import pytest
import tensorflow as tf

from components.common.config import ModelSpec, Toggle, Training
from components.common.cpus import native_float16_flags
from components.training.models import build
from components.training.trainer import Trainer, lr_at, use_xla

SPEC = ModelSpec(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                 mixconv_kernels=[[5], [7, 9]], dropout=0.0)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.uniform(0, 26, (8, 59, 40)).astype("float32")),
            tf.constant((rng.random(8) < 0.5).astype("float32")), tf.constant(np.ones(8, "float32")))


@pytest.mark.slow
def test_xla_compiles_the_step_into_fused_hlo_with_the_same_result(tmp_path):
    training = Training(steps=[10], learning_rates=[1e-3])
    eager = Trainer(build(SPEC), training, tmp_path / "a", xla=False, seed=0)
    jit = Trainer(build(SPEC), training, tmp_path / "b", xla=True, seed=0)
    jit.model.set_weights(eager.model.get_weights())
    x, y, w = _batch()
    hlo = jit.train_step.experimental_get_compiler_ir(x, y, w)(stage="optimized_hlo")
    assert "fusion" in hlo  # XLA fused the elementwise work of forward, backward and Adam update
    must = jit.train_step.get_concrete_function(x, y, w).function_def.attr["_XlaMustCompile"].b
    assert must and not eager.train_step.get_concrete_function(x, y, w).function_def.attr["_XlaMustCompile"].b
    losses = [(float(eager.train_step(x, y, w)), float(jit.train_step(x, y, w))) for _ in range(3)]
    for a, b in losses:
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_xla_auto_follows_the_device():
    assert use_xla(Training(xla=Toggle.AUTO), gpu=True) and not use_xla(Training(xla=Toggle.AUTO), gpu=False)
    assert use_xla(Training(xla=Toggle.ON), gpu=False) and not use_xla(Training(xla=Toggle.OFF), gpu=True)


def test_learning_rate_phases():
    t = Training(steps=[10, 5], learning_rates=[1e-3, 1e-4])
    assert [lr_at(t, s) for s in (0, 9, 10, 14, 99)] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-4]


@pytest.mark.slow
@pytest.mark.skipif(bool(native_float16_flags()), reason="this CPU has native float16 "
                    f"({', '.join(sorted(native_float16_flags()))}): mixed precision trained to NaN there (issue 19), "
                    "so training.mixed_precision: on is refused on it (tests/unit/test_nonfinite.py)")
def test_mixed_precision_computes_in_float16_and_still_learns(tmp_path):
    from components.training.trainer import build_model

    model = build_model(build, SPEC, mixed_precision=True)
    convs = [layer for layer in model.layers if "conv" in layer.name or "pointwise" in layer.name]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    assert all(v.dtype == "float32" for v in model.trainable_variables)  # master weights stay float32
    assert model.get_layer("probability").compute_dtype == "float32"
    trainer = Trainer(model, Training(steps=[30], learning_rates=[3e-3]), tmp_path, xla=False, seed=0)
    assert trainer.mixed
    x, y, w = _batch(1)
    losses = [float(trainer.train_step(x, y, w)) for _ in range(30)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert build_model(build, SPEC, mixed_precision=False).get_layer("first_conv").compute_dtype == "float32"


def _op_count(trainer, op_type, x, y, w):
    graph = trainer.train_step.get_concrete_function(x, y, w).graph
    count = sum(op.type == op_type for op in graph.get_operations())
    for fn in graph._functions.values():  # recompute_grad and gradients live in nested functions
        count += sum(node.op == op_type for node in fn.definition.node_def)
    return count


@pytest.mark.slow
def test_gradient_recomputation_reruns_the_forward_pass_with_identical_gradients(tmp_path):
    plain = Trainer(build(SPEC), Training(), tmp_path / "a", xla=False, seed=0)
    recompute = Trainer(build(SPEC), Training(recompute_gradients=True), tmp_path / "b", xla=False, seed=0)
    recompute.model.set_weights(plain.model.get_weights())
    x, y, w = _batch(2)
    # The body's convolutions run again in the backward pass instead of keeping their activations.
    assert _op_count(recompute, "Conv2D", x, y, w) > _op_count(plain, "Conv2D", x, y, w)
    for _ in range(3):
        assert float(recompute.train_step(x, y, w)) == pytest.approx(float(plain.train_step(x, y, w)), rel=1e-5)
    for a, b in zip(plain.model.trainable_variables, recompute.model.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


MIRRORED = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from components.common.config import Training
from components.training.trainer import Trainer

def toy():  # no BatchNorm, no dropout: data-parallel gradients must equal single-device ones exactly
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 40)); h = keras.layers.Flatten(name="body_output")(inp)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))

rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (8, 12, 40)).astype("float32"); y = (rng.random(8) < 0.5).astype("float32")
w = rng.uniform(0.5, 2, 8).astype("float32")
single = Trainer(toy(), Training(), sys.argv[1] + "/a", xla=False, seed=0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = Trainer(toy(), Training(), sys.argv[1] + "/b", xla=False, seed=0)
losses = [(single.step(x, y, w), mirrored.step(x, y, w)) for _ in range(3)]
diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
           for a, b in zip(single.model.trainable_variables, mirrored.model.trainable_variables))
print(json.dumps({"replicas": mirrored.replicas, "losses": losses, "max_weight_diff": diff}))
"""


@pytest.mark.slow
def test_mirrored_strategy_splits_batches_and_matches_one_device(tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=os.getcwd(), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    for a, b in result["losses"]:
        assert a == pytest.approx(b, rel=1e-5)
    assert result["max_weight_diff"] < 1e-5
