"""The training loop draws step s+1's batch on a worker thread while step s trains (`trainer.BatchPrefetcher`):
the same batches in the same order as drawing them inline, never one past the end, errors where they happen."""
import threading

import numpy as np
import pytest

from components.training.batches import Batch
from components.training.trainer import BatchPrefetcher


class Recorder:
    """next_batch that records which steps it drew and on which thread."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[int, str]] = []
        self.fail_at = fail_at

    def __call__(self, step: int, total: int) -> Batch:
        self.calls.append((step, threading.current_thread().name))
        if step == self.fail_at:
            raise RuntimeError(f"no batch {step}")
        return Batch(np.full((2, 3, 40), step, np.float32), np.zeros(2, np.float32), np.ones(2, np.float32), epoch=0)


def test_each_step_gets_its_own_batch_drawn_ahead_on_the_worker_and_none_past_the_end():
    draw = Recorder()
    with BatchPrefetcher(draw, total=10, end=5) as batches:
        got = [int(batches.take(step).x[0, 0, 0]) for step in range(5)]
    assert got == [0, 1, 2, 3, 4]
    assert [s for s, _ in draw.calls] == [0, 1, 2, 3, 4]  # each once, none for step 5 (`end`)
    main = threading.current_thread().name
    assert draw.calls[0][1] == main  # nothing to overlap with before the first step
    assert all(name.startswith("next-batch") for _, name in draw.calls[1:])


def test_a_step_other_than_the_one_drawn_ahead_is_drawn_inline():
    draw = Recorder()
    with BatchPrefetcher(draw, total=10, end=10) as batches:
        batches.take(0)  # draws 1 ahead
        assert int(batches.take(4).x[0, 0, 0]) == 4
    assert [s for s, _ in draw.calls][:3] == [0, 1, 4]


def test_disabled_draws_every_batch_inline_on_the_calling_thread():
    draw = Recorder()
    with BatchPrefetcher(draw, total=3, end=3, enabled=False) as batches:
        for step in range(3):
            batches.take(step)
    assert draw.calls == [(s, threading.current_thread().name) for s in range(3)]


def test_an_error_drawing_a_batch_ahead_is_raised_at_the_step_that_needs_it():
    draw = Recorder(fail_at=2)
    with BatchPrefetcher(draw, total=5, end=5) as batches:
        batches.take(0)
        batches.take(1)  # step 2 is drawn (and fails) on the worker meanwhile
        with pytest.raises(RuntimeError, match="no batch 2"):
            batches.take(2)


@pytest.mark.slow
def test_training_with_batches_drawn_ahead_ends_with_the_weights_of_drawing_them_inline(tmp_path):
    """Trainer.fit with prefetch on and off: both runs must end bit-identical."""
    import keras

    from components.common.config import ModelSpec, Training
    from components.common.metrics import OperatingPoint
    from components.training.models import build
    from components.training.trainer import Trainer

    spec = ModelSpec(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                     mixconv_kernels=[[5], [7, 9]], dropout=0.5)

    threads = []

    def next_batch(step, total):
        threads.append(threading.current_thread().name)
        rng = np.random.default_rng([3, step])
        return Batch(rng.uniform(0, 26, (8, 59, 40)).astype("float32"), (np.arange(8) % 2).astype("float32"),
                     np.ones(8, "float32"), epoch=0)

    def train(name, prefetch):
        keras.utils.set_random_seed(0)
        trainer = Trainer(build(spec), Training(steps=[8], learning_rates=[1e-2], eval_every_steps=4), tmp_path / name,
                          xla=False, seed=0)
        result = trainer.fit(next_batch, lambda: OperatingPoint(cutoff=0.5, frr=0.5, false_accepts=0, fa_per_hour=0.0),
                             1.0, show_progress=False, prefetch=prefetch)
        return result.losses, trainer.model.get_weights()

    ahead_losses, ahead = train("ahead", True)
    assert sum(name.startswith("next-batch") for name in threads) == 7  # all but the first
    threads.clear()
    inline_losses, inline = train("inline", False)
    assert not any(name.startswith("next-batch") for name in threads)
    assert len(ahead_losses) == 8
    assert ahead_losses == inline_losses
    for a, b in zip(ahead, inline):
        np.testing.assert_array_equal(a, b)
