"""model_scorer: a MixedNet scored over a whole stream at once gives the numbers window-by-window scoring gives."""
import numpy as np
import pytest

from components.common.config import Architecture, ModelSpec, load_config
from components.training.models import build
from components.training.scoring import model_scorer, stream_probabilities


def _with_random_statistics(model, seed):
    """Non-trivial BatchNorm statistics and weights, so inference-mode normalisation is exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model


@pytest.mark.parametrize("which", ["student", "teacher_long"])
def test_a_mixednet_over_the_whole_stream_equals_window_by_window(which):
    config = load_config("default")
    spec = config.distillation.student if which == "student" else config.teachers[1]
    model = _with_random_statistics(build(spec), 3)
    rng = np.random.default_rng(4)
    for frames in (spec.input_frames, spec.input_frames + 1, spec.input_frames + 2, 1_000):
        raw = rng.integers(0, 600, (frames, 40)).astype(np.uint16)
        windows = stream_probabilities(lambda x: model(x, training=False).numpy(), raw, spec.input_frames,
                                       spec.stride)
        whole = model_scorer(model, spec)(raw)
        assert whole.shape == windows.shape and len(whole) == (frames - spec.input_frames) // spec.stride + 1
        np.testing.assert_allclose(whole, windows, atol=2e-5)
        assert np.ptp(whole) > 1e-3 or len(whole) == 1  # not a constant: the comparison means something


def test_a_stream_shorter_than_one_window_has_no_scores():
    spec = load_config("smoke").distillation.student
    assert model_scorer(build(spec), spec)(np.zeros((spec.input_frames - 1, 40), np.uint16)).shape == (0,)


def test_the_scorer_follows_the_weights_as_training_changes_them():
    spec = load_config("smoke").distillation.student
    model = build(spec)
    score = model_scorer(model, spec)
    raw = np.random.default_rng(5).integers(0, 600, (400, 40)).astype(np.uint16)
    before = score(raw)
    dense = model.get_layer("probability")
    dense.bias.assign(dense.bias.numpy() + 2.0)
    after = score(raw)
    assert np.all(after > before)
    np.testing.assert_allclose(after, stream_probabilities(lambda x: model(x, training=False).numpy(), raw,
                                                           spec.input_frames, spec.stride), atol=2e-5)


def test_other_architectures_are_scored_window_by_window():
    spec = ModelSpec(name="t", architecture=Architecture.TCN, input_frames=60)
    model = build(spec)
    raw = np.random.default_rng(6).integers(0, 600, (200, 40)).astype(np.uint16)
    np.testing.assert_allclose(model_scorer(model, spec)(raw), stream_probabilities(
        lambda x: model(x, training=False).numpy(), raw, spec.input_frames, spec.stride), atol=1e-6)
