"""`training.weight_averaging: ema`: validation, the best checkpoint and the shipped model are the moving average
of the weights (decay `ema_decay` per step), and training itself goes on from the live weights."""
import numpy as np
import pytest

from components.common.config import ModelSpec, Training, WeightAveraging

pytestmark = pytest.mark.slow  # builds and trains Keras models

SPEC = ModelSpec(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                 mixconv_kernels=[[5], [7, 9]], dropout=0.0)
DECAY = 0.8


def _trainer(workdir, averaging=WeightAveraging.EMA, steps=6):
    import keras

    from components.training.models import build
    from components.training.trainer import Trainer

    keras.utils.set_random_seed(0)
    training = Training(steps=[steps], learning_rates=[1e-2], eval_every_steps=2, weight_averaging=averaging,
                        ema_decay=DECAY)
    return Trainer(build(SPEC), training, workdir, xla=False, seed=0)


def _batch(step):
    rng = np.random.default_rng(step)
    return (rng.uniform(0, 26, (8, 59, 40)).astype("float32"), (np.arange(8) % 2).astype("float32"),
            np.ones(8, "float32"))


def _trainable(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def _expected_average(history):
    """The average of the live weights after each step: the first step's weights, then decay-weighted."""
    average = [w.copy() for w in history[0]]
    for weights in history[1:]:
        average = [DECAY * a + (1 - DECAY) * w for a, w in zip(average, weights)]
    return average


def test_judged_weights_are_the_moving_average_and_the_live_weights_come_back(tmp_path):
    trainer = _trainer(tmp_path)
    history = []
    for step in range(5):
        trainer.step(*_batch(step))
        history.append(_trainable(trainer.model))
    with trainer.judged_weights():
        inside = _trainable(trainer.model)
    for got, want in zip(inside, _expected_average(history)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert any(not np.allclose(a, b, atol=1e-5) for a, b in zip(inside, history[-1])), "the average is not live"
    for got, live in zip(_trainable(trainer.model), history[-1]):
        np.testing.assert_array_equal(got, live)


def test_without_averaging_the_judged_weights_are_the_live_ones(tmp_path):
    trainer = _trainer(tmp_path, WeightAveraging.NONE)
    for step in range(3):
        trainer.step(*_batch(step))
    live = _trainable(trainer.model)
    with trainer.judged_weights():
        for got, want in zip(_trainable(trainer.model), live):
            np.testing.assert_array_equal(got, want)


def test_fit_validates_keeps_and_returns_the_averaged_weights(tmp_path):
    from components.common.metrics import OperatingPoint
    from components.training.batches import Batch

    trainer = _trainer(tmp_path)
    live, judged = [], []

    def next_batch(step, total):
        x, y, w = _batch(step)
        if step:
            live.append(_trainable(trainer.model))  # the live weights after `step` updates
        return Batch(x, y, w, epoch=0)

    def validate():
        judged.append(_trainable(trainer.model))
        frr = [0.5, 0.2, 0.4][len(judged) - 1]  # the eval at step 4 is the best
        return OperatingPoint(cutoff=0.5, frr=frr, false_accepts=0, fa_per_hour=0.0)

    result = trainer.fit(next_batch, validate, target_fa_per_hour=1.0, show_progress=False)
    assert [h.step for h in result.history] == [2, 4, 6] and result.best.step == 4
    for got, want in zip(judged[1], _expected_average(live[:4])):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    for got, want in zip(_trainable(trainer.model), judged[1]):  # fit ends holding the best checkpoint
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_a_resumed_run_continues_the_same_average(tmp_path):
    from components.training.trainer import TrainResult

    straight = _trainer(tmp_path / "straight")
    for step in range(6):
        straight.step(*_batch(step))
    first = _trainer(tmp_path / "resumed")
    for step in range(3):
        first.step(*_batch(step))
    first.save_state(3, TrainResult(best=None))
    again = _trainer(tmp_path / "resumed")
    assert again.load_state()[0] == 3
    for step in range(3, 6):
        again.step(*_batch(step))
    with straight.judged_weights(), again.judged_weights():
        for a, b in zip(_trainable(straight.model), _trainable(again.model)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
