"""training.checkpoint_rule: the pooled rule sees epoch-0 positives and non-speech ambient only; the
worst-condition rule sees every condition set and every ambient condition and picks the cutoff the way
quantization ships, so a loud speech condition that the pooled rule never hears moves its cutoff."""
import numpy as np
import pytest

from components.common.artifacts import FeatureSetWriter, FeatureStoreLayout, Label, Split
from components.common.config import CheckpointRule, load_config
from components.common.frontend import FLOAT_SCALE
from components.training.fit import validation_point
from components.training.scoring import stream_probabilities

POSITIVE, QUIET_POSITIVE, SPEECH_BURST = 100, 60, 80  # feature value = the score x 100 (see `predict`)


def predict(x: np.ndarray) -> np.ndarray:
    """A scorer whose probability is the window's largest channel-0 value / 100 (raw units)."""
    return np.clip(x[:, :, 0].max(axis=1) / (100 * FLOAT_SCALE), 0, 1)


def scorer(spec, predict=predict):
    return lambda raw: stream_probabilities(predict, raw, spec.input_frames, spec.stride)


def _clip(frames: int, value: int) -> np.ndarray:
    return np.full((frames, 40), value, np.uint16)


def _store(root, spec) -> FeatureStoreLayout:
    """Validation: 8 positives (score 1.0) and 8 negatives in epoch 0; a `telephone` condition set of 4
    positives scoring 0.6; 20 min of quiet babble (score 0) and 30 s of evaluation-only clean speech with a
    burst scoring 0.8."""
    layout = FeatureStoreLayout(root)
    n = spec.input_frames + 60
    w = FeatureSetWriter(layout.set_dir(Split.VALIDATION, 0))
    for i in range(8):
        w.add(_clip(n, POSITIVE), Label.POSITIVE, 1.0, {"family": "piper"})
        w.add(_clip(n, 0), Label.NEGATIVE, 1.0, {})
    w.close()
    w = FeatureSetWriter(layout.condition_dir(Split.VALIDATION, "telephone"))
    for i in range(4):
        w.add(_clip(n, QUIET_POSITIVE), Label.POSITIVE, 1.0, {"family": "piper"})
    w.close()
    w = FeatureSetWriter(layout.set_dir(Split.VALIDATION, None))
    w.add(_clip(120_000, 0), Label.NEGATIVE, 1.0, {"condition": "babble"})
    speech = _clip(3_000, 0)
    speech[1_000:1_200] = SPEECH_BURST
    w.add(speech, Label.NEGATIVE, 1.0, {"condition": "clean_speech", "eval_only": True})
    w.close()
    return layout


@pytest.fixture
def case(tmp_path):
    config = load_config("smoke")
    spec = config.distillation.student
    return config, spec, _store(tmp_path / "features", spec)


def _with_rule(config, rule):
    return config.model_copy(update={"training": config.training.model_copy(update={"checkpoint_rule": rule})})


def test_the_pooled_rule_never_hears_the_speech_condition(case):
    config, spec, store = case
    point = validation_point(scorer(spec), store, _with_rule(config, CheckpointRule.POOLED))
    assert point.frr == 0.0 and point.false_accepts == 0
    assert point.cutoff < SPEECH_BURST / 100  # a cutoff the speech burst fires at


def test_the_worst_condition_rule_clears_the_loudest_condition_and_counts_every_positive(case):
    config, spec, store = case
    point = validation_point(scorer(spec), store, _with_rule(config, CheckpointRule.WORST_CONDITION))
    assert point.false_accepts == 0
    assert point.cutoff >= SPEECH_BURST / 100 + config.cutoff_safety_margin - 1e-9
    assert point.frr == pytest.approx(4 / 12)  # the 4 telephone positives (0.6) are missed, of 8 + 4


def test_the_rule_is_an_enum_and_an_unknown_one_is_refused_naming_the_key():
    assert load_config("default").training.checkpoint_rule is CheckpointRule.WORST_CONDITION
    from components.common.config import ConfigError

    with pytest.raises(ConfigError, match="training.checkpoint_rule"):
        load_config("smoke", overrides=["training.checkpoint_rule=best"])
