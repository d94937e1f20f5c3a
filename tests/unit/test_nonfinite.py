"""Numerics (issue 19): mixed precision only where it trains, and training stops at the first NaN or infinite
loss or gradient, naming the step, instead of saving a NaN model."""
import numpy as np
import pytest

from components.training.batches import Batch
from components.common.config import ConfigError, Toggle, Training
from components.common.cpus import native_float16_flags
from components.training.trainer import NonFiniteLoss, use_mixed_precision

SPEC_ARGS = dict(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                 mixconv_kernels=[[5], [7, 9]], dropout=0.0)


@pytest.mark.parametrize("flags, found", [
    ("fpu sse avx2 fma f16c", set()),  # AVX2 only: float16 is converted to float32 around each op
    ("fpu avx2 avx512f avx512_fp16", {"avx512_fp16"}),
    ("fpu avx512f amx_tile amx_bf16 amx_fp16 avx512_fp16", {"amx_fp16", "avx512_fp16"}),
    ("fpu avx2 avx_vnni avx_ne_convert", {"avx_ne_convert"}),  # AVX2 cores that oneDNN also takes float16 on
])
def test_native_float16_flags_read_from_cpuinfo(tmp_path, flags, found):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert native_float16_flags(cpuinfo) == found


def test_no_cpuinfo_means_no_native_float16(tmp_path):
    assert native_float16_flags(tmp_path / "missing") == set()


def test_auto_never_picks_mixed_precision_on_the_cpu():
    auto = Training(mixed_precision=Toggle.AUTO)
    assert use_mixed_precision(auto, gpu=True, cpu_float16={"avx512_fp16"})
    assert not use_mixed_precision(auto, gpu=False, cpu_float16=set())
    assert not use_mixed_precision(auto, gpu=False, cpu_float16={"avx512_fp16"})
    assert not use_mixed_precision(Training(mixed_precision=Toggle.OFF), gpu=True, cpu_float16=set())


def test_mixed_precision_on_is_refused_on_a_cpu_with_native_float16():
    on = Training(mixed_precision=Toggle.ON)
    assert use_mixed_precision(on, gpu=False, cpu_float16=set())  # AVX2 CPUs: float16 trains (tested below)
    assert use_mixed_precision(on, gpu=True, cpu_float16={"amx_fp16"})  # the GPU computes, not the CPU
    with pytest.raises(ConfigError, match=r"training\.mixed_precision: on is refused on this CPU \(amx_fp16\)"):
        use_mixed_precision(on, gpu=False, cpu_float16={"amx_fp16"})


def _fit(tmp_path, *, nan_at=None, loss_fn=None, steps=6):
    from components.common.config import ModelSpec
    from components.training.models import build
    from components.training.trainer import Trainer

    rng = np.random.default_rng(0)
    trainer = Trainer(build(ModelSpec(**SPEC_ARGS)), Training(steps=[steps], learning_rates=[1e-3],
                                                              eval_every_steps=1000), tmp_path, xla=False, seed=0,
                      loss_fn=loss_fn)

    def next_batch(step, total):
        x = rng.uniform(0, 26, (8, 59, 40)).astype("float32")
        if step == nan_at:
            x[3, 10, 5] = np.nan  # one bad feature value in one clip
        return Batch(x, (np.arange(8) % 2).astype("float32"), np.ones(8, "float32"), epoch=0)

    def validate():
        raise AssertionError("no evaluation is due before the failure")

    return trainer.fit(next_batch, validate, 1.0, show_progress=False)


@pytest.mark.slow
def test_a_nan_in_a_batch_stops_training_at_that_step(tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"training tiny stopped at step 3 of 6: the loss is not finite "
                                            r"\(loss nan\); nothing was saved yet") as info:
        _fit(tmp_path, nan_at=2)
    assert info.value.step == 3 and "training.learning_rates" in str(info.value)
    assert not (tmp_path / "state.json").exists()  # no resumable state records the NaN weights


@pytest.mark.slow
def test_a_loss_that_returns_nan_stops_training_at_the_first_step(tmp_path):
    import tensorflow as tf

    with pytest.raises(NonFiniteLoss, match=r"stopped at step 1 of 6: the loss is not finite"):
        _fit(tmp_path, loss_fn=lambda y, p, w, total: tf.reduce_sum(p) * np.float32("nan"))


@pytest.mark.slow
def test_a_finite_loss_with_infinite_gradients_stops_training_naming_the_gradients(tmp_path):
    import tensorflow as tf

    def sqrt_at_zero(y, p, w, total):  # value 0 + a BCE, but d sqrt(u)/du at u = 0 is infinite
        bce = tf.reduce_sum(tf.keras.losses.binary_crossentropy(y[:, None], p) * w) / total
        return bce + tf.sqrt(tf.reduce_sum(p) * 0.0)

    with pytest.raises(NonFiniteLoss, match=r"stopped at step 1 of 6: \d+ gradient entries are not finite") as info:
        _fit(tmp_path, loss_fn=sqrt_at_zero)
    assert np.isfinite(info.value.loss)
