"""Resume (issue 19): training state restored from disk continues exactly as an uninterrupted run would, dropout
masks included, so a killed run ends with the same model."""
import numpy as np
import pytest

from components.common.config import ModelSpec, Training

pytestmark = pytest.mark.slow  # builds and trains Keras models

SPEC = ModelSpec(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                 mixconv_kernels=[[5], [7, 9]], dropout=0.5)
TRAINING = Training(steps=[6], learning_rates=[1e-2])


def _trainer(workdir):
    import keras

    from components.training.models import build
    from components.training.trainer import Trainer

    keras.utils.set_random_seed(0)  # as fit_and_save does before building
    return Trainer(build(SPEC), TRAINING, workdir, xla=False, seed=0)


def _batch(step):
    rng = np.random.default_rng(step)
    return (rng.uniform(0, 26, (8, 59, 40)).astype("float32"), (np.arange(8) % 2).astype("float32"),
            np.ones(8, "float32"))


def _resumed(tmp_path, name, restore_rng=True):
    from components.training.trainer import TrainResult

    first = _trainer(tmp_path / name)
    for step in range(3):
        first.step(*_batch(step))
    first.save_state(3, TrainResult(best=None))
    again = _trainer(tmp_path / name)  # a new process: built from the seed, then the state on disk
    if not restore_rng:
        again._rng_variables = lambda: []
    start, _ = again.load_state()
    assert start == 3
    for step in range(start, 6):
        again.step(*_batch(step))
    return again.model.get_weights()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = _trainer(tmp_path / "straight")
    assert straight._rng_variables(), "the model has dropout, so seed-generator state to restore"
    for step in range(6):
        straight.step(*_batch(step))
    for a, b in zip(straight.model.get_weights(), _resumed(tmp_path, "resumed")):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # Without the dropout seed state the masks after the resume differ, and so do the weights.
    differ = [not np.allclose(a, b, rtol=0, atol=1e-6)
              for a, b in zip(straight.model.get_weights(), _resumed(tmp_path, "no-rng", restore_rng=False))]
    assert any(differ)
