"""Config values, fuzzed: whatever a user types after --set, loading the config either gives a valid config or
a ConfigError naming the key; never another exception (which the CLI would report as an internal error)."""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.common.config import ConfigError, load_config

KEYS = ["target_false_accepts_per_hour", "verification_max_frr", "seed", "wake_word", "wake_word_variants",
        "device_budget.max_arena_bytes", "training.total_steps", "augmentation.clip_duration_s",
        "data_prep.ambient.synthetic_duration_s", "training.positive_class_weight", "mining.chunk_s",
        "data_prep.splits.heldout_families", "mining.previous_model", "teachers", "publish.store",
        "kubernetes.gpus_per_task", "data_prep", "nonexistent.key"]
# what people type: numbers of every kind, YAML lists and mappings, words, punctuation, nothing
values = st.one_of(st.text(max_size=30), st.floats().map(repr), st.integers().map(str),
                   st.sampled_from(["", "~", "null", "[]", "{}", "[1, 2]", "{a: 1}", ".nan", ".inf", "-1", "0",
                                    "1e309", "true", "'quoted'", "[unclosed", "a: b: c"]))
strict = settings(derandomize=True, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@strict
@given(st.sampled_from(KEYS), values)
def test_any_value_is_a_config_or_a_config_error(key, value):
    try:
        config = load_config("smoke", overrides=[f"{key}={value}"])
    except ConfigError as e:
        assert str(e).strip()  # the message says something (the CLI prints it as is)
        return
    assert config.target_false_accepts_per_hour > 0 and 0 < config.verification_max_frr <= 1
    assert all(math.isfinite(x) for x in _floats(config.model_dump()))  # JSON (the config artifact) carries it


def _floats(node):
    if isinstance(node, float):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _floats(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _floats(v)


def test_no_number_in_the_config_may_be_infinite_or_nan():
    """Fields bounded only below (durations, weights) took `.inf` before; no field takes NaN or infinity."""
    for key in ("data_prep.ambient.synthetic_duration_s", "training.positive_class_weight", "mining.chunk_s",
                "distillation.embedding_teacher.weight", "target_false_accepts_per_hour"):
        for value in (".inf", ".nan", "-.inf"):
            try:
                load_config("smoke", overrides=[f"{key}={value}"])
            except ConfigError as e:
                assert key in str(e) and any(w in str(e) for w in ("finite", "greater than", "less than"))
            else:
                raise AssertionError(f"{key}={value} was accepted")


@strict
@given(st.text(max_size=40))
def test_any_override_text_is_a_config_or_a_config_error(assignment):
    try:
        config = load_config("smoke", overrides=[assignment])
    except ConfigError as e:
        assert str(e).strip()
    else:
        assert config.sha256() == load_config("smoke", overrides=[assignment]).sha256()  # valid and stable
