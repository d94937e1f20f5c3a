import json

import pytest

from components.common.config import (ConfigError, StudentInit, WakelineConfig, apply_override, load_config,
                                      preset_names, resolve_pipeline_config, validate)
from pipeline.cli import main


def test_every_preset_validates():
    assert {"smoke", "default", "production"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config(name), WakelineConfig)


def test_quality_keeps_every_part_default_ships_with():
    """`quality` is `default` with more data and longer training: it never drops a part `default` relies on (it
    once trained without the embedding teacher and with one student)."""
    d, q = load_config("default"), load_config("quality")
    assert q.distillation.embedding_teacher.weight >= d.distillation.embedding_teacher.weight > 0
    assert q.distillation.students >= d.distillation.students > 1
    assert q.distillation.student_init == d.distillation.student_init == StudentInit.OKAY_NABU
    assert q.distillation.learning_rates == d.distillation.learning_rates
    assert sum(q.training.steps) >= sum(d.training.steps)
    assert q.training.checkpoint_rule == d.training.checkpoint_rule
    assert q.data_prep.perturbation.method == d.data_prep.perturbation.method
    assert q.data_prep.splits.heldout_families == d.data_prep.splits.heldout_families
    assert q.data_prep.conditions.duration_s >= d.data_prep.conditions.duration_s


def test_a_pretrained_student_needs_okay_nabus_convolutions():
    """student_init=okay_nabu is checked before any stage: default's student has okay_nabu's shapes, smoke's
    smaller one is refused with the keys that differ."""
    assert load_config("default", overrides=["distillation.student_init=okay_nabu"]).distillation.student_init.value \
        == "okay_nabu"
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["distillation.student_init=okay_nabu"])
    assert "distillation.student.first_conv_filters" in str(e.value)
    assert "distillation.student.pointwise_filters" in str(e.value)


def test_frozen_stages_need_okay_nabu_and_exist():
    assert load_config("default", overrides=["distillation.frozen_stages=3"]).distillation.frozen_stages == 3
    with pytest.raises(ConfigError, match="distillation.frozen_stages keeps pretrained weights"):
        load_config("default", overrides=["distillation.frozen_stages=2", "distillation.student_init=random"])
    with pytest.raises(ConfigError, match="distillation.frozen_stages is 6; the student has 5"):
        load_config("default", overrides=["distillation.frozen_stages=6"])


def test_students_learning_rates_are_one_per_training_phase():
    cfg = load_config("default", overrides=["distillation.learning_rates=[0.0005, 0.0001]"])
    assert cfg.student_training().learning_rates == [0.0005, 0.0001]
    assert cfg.student_training().steps == cfg.training.steps and cfg.training.learning_rates == [0.001, 0.0002]
    assert load_config("smoke").student_training() == load_config("smoke").training  # empty: training's
    with pytest.raises(ConfigError, match="distillation.learning_rates has 1 entries; training.steps has 2"):
        load_config("default", overrides=["distillation.learning_rates=[0.0003]"])


def test_unknown_key_is_named_with_allowed_keys():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["data_prep.ambient.lenght_s=3"])
    msg = str(e.value)
    assert "data_prep.ambient.lenght_s: unknown key" in msg
    assert "file_duration_s" in msg and "synthetic_duration_s" in msg


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["data_prep.positives.piper_clips=many"])
    msg = str(e.value)
    assert "data_prep.positives.piper_clips" in msg and "integer" in msg and "'many'" in msg


def test_enum_error_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["data_prep.ambient.kinds=[noise, rain]"])
    msg = str(e.value)
    assert "data_prep.ambient.kinds.1" in msg and "'babble'" in msg and "'rain'" in msg


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["seed=-1", "wake_word=", "data_prep.rirs.rt60_s_range=[0.9, 0.1]"])
    msg = str(e.value)
    assert msg.startswith("3 config error(s)")
    for key in ("seed", "wake_word", "data_prep.rirs.rt60_s_range"):
        assert f"  {key}:" in msg


def test_missing_espeak_voice_is_rejected_with_alternatives():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["data_prep.tts.espeak.variants=[m1, nosuchvoice]"])
    assert "data_prep.tts.espeak.variants" in str(e.value) and "nosuchvoice" in str(e.value)


def test_overrides_parse_yaml_values():
    raw = apply_override({"a": {"b": 1}}, "a.c=[1, 2]")
    assert raw == {"a": {"b": 1, "c": [1, 2]}}
    cfg = load_config("smoke", overrides=["target_false_accepts_per_hour=0.25"], wake_word="okay nabu")
    assert cfg.target_false_accepts_per_hour == 0.25 and cfg.wake_word == "okay nabu"


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_override({}, "no_equals_sign")


def test_config_file_merges_over_preset(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("wake_word: hey computer\ndata_prep:\n  rirs: {count: 2}\n")
    cfg = load_config("smoke", config_file=f)
    assert cfg.wake_word == "hey computer" and cfg.data_prep.rirs.count == 2
    assert cfg.data_prep.positives == load_config("smoke").data_prep.positives  # untouched keys stay


def test_pipeline_form_partial_json_and_wake_word():
    cfg = resolve_pipeline_config(json.dumps({"data_prep": {"rirs": {"count": 3}}}), "smoke", " hey mycroft ")
    assert cfg.data_prep.rirs.count == 3 and cfg.wake_word == "hey mycroft"
    full = load_config("default")
    assert resolve_pipeline_config(full.to_json(), "smoke", "") == full  # a full config wins over the preset
    with pytest.raises(ConfigError, match="config_json: not valid JSON"):
        resolve_pipeline_config("{oops", "smoke", "")


def test_config_hash_is_stable_and_sensitive():
    a, b = load_config("smoke"), load_config("smoke")
    assert a.sha256() == b.sha256()
    assert a.sha256() != load_config("smoke", overrides=["seed=1"]).sha256()


def test_frozen():
    from pydantic import ValidationError

    cfg = validate({"wake_word": "hey jarvis"})
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3


def test_cli_config_error_exit_code(capsys):
    assert main(["config", "--preset", "smoke", "--set", "data_prep.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "data_prep.bogus: unknown key" in err


def test_cli_config_prints_resolved_yaml(capsys):
    assert main(["config", "--preset", "smoke", "--wake-word", "hey nabu"]) == 0
    out = capsys.readouterr().out
    assert "wake_word: hey nabu" in out and "min_usable_positives:" in out


def test_new_wake_word_drops_inherited_variants(tmp_path):
    assert load_config("smoke").wake_word_variants == ["hey jar vis"]
    assert load_config("smoke", wake_word="okay nabu").wake_word_variants == []
    assert load_config("smoke", overrides=["wake_word=okay nabu"]).phrases == ["okay nabu"]
    kept = load_config("smoke", overrides=["wake_word=okay nabu", "wake_word_variants=[okay naboo]"])
    assert kept.phrases == ["okay nabu", "okay naboo"]
    assert resolve_pipeline_config("", "smoke", "hey mycroft").wake_word_variants == []
    full = load_config("smoke")
    assert resolve_pipeline_config(full.to_json(), "default", "").wake_word_variants == ["hey jar vis"]


def test_a_partial_sampling_weights_override_keeps_the_other_defaults():
    from components.common.config import load_config

    cfg = load_config("default", overrides=["training.sampling_weights.background=6"])
    w = cfg.training.sampling_weights
    assert (w.background, w.positive, w.negative, w.hard_negative) == (6.0, 2.0, 3.0, 2.0)
