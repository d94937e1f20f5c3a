"""Distillation core: teacher compatibility catches each kind of mismatch; soft targets and the loss."""
import json
import shutil

import numpy as np
import pytest

from components.common.config import AgreementWeighting, Distillation, ModelSpec
from components.common.artifacts import ModelLayout
from components.training.fit import feature_config

MODEL_FILE, SPEC_FILE, VALIDATION_FILE = ModelLayout.MODEL, ModelLayout.SPEC, ModelLayout.VALIDATION
from components.distillation.compat import TeacherMismatch, check_teachers
from components.distillation.stage import distillation_loss, logit, soft_targets

STUDENT = ModelSpec(name="student", input_frames=101, first_conv_filters=8, pointwise_filters=[8, 8],
                    mixconv_kernels=[[5], [7]])
TEACHER = ModelSpec(name="mixednet-t", input_frames=101, first_conv_filters=8, pointwise_filters=[8, 8],
                    mixconv_kernels=[[5], [9]])
STORE = {"feature_channels": 40, "feature_scale": 0.0390625, "frames_per_clip": 148}


def _save_teacher(root, spec=TEACHER, frr=0.2):
    from components.training.models import build

    root.mkdir(parents=True)
    build(spec).save(root / MODEL_FILE)
    (root / SPEC_FILE).write_text(json.dumps({"spec": spec.model_dump(mode="json"), "features": feature_config(spec),
                                              "output": "sigmoid"}))
    (root / VALIDATION_FILE).write_text(json.dumps({"frr": frr, "fa_per_hour": 0.0}))
    return root


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _save_teacher(tmp_path_factory.mktemp("teachers") / "good")


def _variant(good, tmp_path, name, edit_spec=None, edit_validation=None):
    root = tmp_path / name
    shutil.copytree(good, root)
    if edit_spec:
        meta = json.loads((root / SPEC_FILE).read_text())
        edit_spec(meta)
        (root / SPEC_FILE).write_text(json.dumps(meta))
    if edit_validation:
        v = json.loads((root / VALIDATION_FILE).read_text())
        edit_validation(v)
        (root / VALIDATION_FILE).write_text(json.dumps(v))
    return root


def test_two_good_teachers_load(good):
    teachers = check_teachers({"teacher_a": good, "teacher_b": good}, STUDENT, STORE, 0.9)
    assert [t.label for t in teachers] == ["teacher_a", "teacher_b"]
    assert all(t.model is not None and t.model.input_shape == (None, 101, 40) for t in teachers)


def _set(path, value):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("name,edit_spec,edit_val,expected", [
    ("channels", _set(["features", "channels"], 32), None, "features.channels is 32, the student needs 40"),
    ("step", _set(["features", "step_ms"], 20), None, "features.step_ms is 20, the student needs 10"),
    ("scale", _set(["features", "float_scale"], 0.05), None, "features.float_scale is 0.05"),
    ("output", _set(["output"], "softmax"), None, "output is 'softmax', distillation needs a binary 'sigmoid'"),
    ("frames", _set(["features", "input_frames"], 90), None, "features.input_frames is 90, its spec says 101"),
    ("quality", None, _set(["frr"], 0.97), "validation FRR 97.0% is above distillation.max_teacher_val_frr 90%"),
])
def test_each_mismatch_names_teacher_and_field(good, tmp_path, name, edit_spec, edit_val, expected):
    bad = _variant(good, tmp_path, name, edit_spec, edit_val)
    with pytest.raises(TeacherMismatch) as e:
        check_teachers({"teacher_a": good, "teacher_b": bad}, STUDENT, STORE, 0.9)
    msg = str(e.value)
    assert f"teacher_b (mixednet-t): {expected}" in msg, msg
    assert "teacher_a" not in msg  # the good teacher is not blamed


def test_input_longer_than_the_stored_clips(tmp_path):
    long = TEACHER.model_copy(update={"input_frames": 152})
    root = _save_teacher(tmp_path / "long", long)
    with pytest.raises(TeacherMismatch, match=r"teacher_a \(mixednet-t\): input_frames=152 exceeds the feature "
                                              r"store's 148 frames per clip"):
        check_teachers({"teacher_a": root}, STUDENT, STORE, 0.9)


def test_store_with_other_features(good):
    with pytest.raises(TeacherMismatch, match="features.channels is 40, the feature store has 32"):
        check_teachers({"teacher_a": good}, STUDENT, {**STORE, "feature_channels": 32}, 0.9)


def test_unloadable_and_missing_files(good, tmp_path):
    broken = _variant(good, tmp_path, "broken")
    (broken / MODEL_FILE).write_bytes(b"not a keras file")
    missing = _variant(good, tmp_path, "missing")
    (missing / SPEC_FILE).unlink()
    with pytest.raises(TeacherMismatch) as e:
        check_teachers({"teacher_a": broken, "teacher_b": missing}, STUDENT, STORE, 0.9)
    msg = str(e.value)
    assert "teacher_a (mixednet-t): model.keras does not load" in msg
    assert f"teacher_b: model_spec.json is missing from {missing}" in msg


def test_real_model_disagreeing_with_its_spec(good, tmp_path):
    other = _save_teacher(tmp_path / "other", TEACHER.model_copy(update={"input_frames": 110}))
    lying = _variant(good, tmp_path, "lying")
    shutil.copy(other / MODEL_FILE, lying / MODEL_FILE)
    with pytest.raises(TeacherMismatch, match=r"model input shape \(110, 40\), its spec says \(101, 40\)"):
        check_teachers({"teacher_a": lying}, STUDENT, STORE, 0.9)


def test_soft_targets_weight_the_teachers_logits_and_temperature():
    p_a, p_b = np.array([0.9, 0.2]), np.array([0.5, 0.2])
    only_a = Distillation(teacher_weights=(1.0, 0.0), temperature=1.0)
    q, agree = soft_targets(p_a, p_b, only_a)
    np.testing.assert_allclose(q, p_a, rtol=1e-5)
    np.testing.assert_array_equal(agree, [1, 1])
    hot = Distillation(teacher_weights=(1.0, 0.0), temperature=4.0)
    q_hot, _ = soft_targets(p_a, p_b, hot)
    assert 0.5 < q_hot[0] < 0.9 and 0.2 < q_hot[1] < 0.5  # softer: pulled towards 0.5
    both = Distillation(teacher_weights=(1.0, 1.0), temperature=1.0,
                        agreement_weighting=AgreementWeighting.AGREEMENT)
    q_both, agree = soft_targets(p_a, p_b, both)
    np.testing.assert_allclose(logit(q_both), (logit(p_a) + logit(p_b)) / 2, rtol=1e-4)
    np.testing.assert_allclose(agree, [0.6, 1.0], rtol=1e-5)


def test_loss_is_hard_bce_without_teachers_and_scaled_soft_bce_with_only_teachers():
    import tensorflow as tf

    p = tf.constant([[0.8], [0.3]], tf.float32)
    y = tf.constant([[1.0, 0.6, 1.0], [0.0, 0.4, 0.5]], tf.float32)
    w = tf.constant([1.0, 2.0])
    hard_only = distillation_loss(Distillation(soft_target_weight=0.0), 0.0)(y, p, w, 3.0)
    expected = (-np.log(0.8) * 1 - np.log(0.7) * 2) / 3
    assert float(hard_only) == pytest.approx(expected, rel=1e-5)
    t = 2.0
    soft_only = distillation_loss(Distillation(soft_target_weight=1.0, temperature=t), 0.0)(y, p, w, 3.0)
    pt = 1 / (1 + np.exp(-logit(np.array([0.8, 0.3])) / t))
    ce = -(np.array([0.6, 0.4]) * np.log(pt) + np.array([0.4, 0.6]) * np.log(1 - pt)) * np.array([1.0, 0.5])
    assert float(soft_only) == pytest.approx(t * t * (ce[0] * 1 + ce[1] * 2) / 3, rel=1e-4)


def _point(frr, fa, cutoff=0.5):
    from components.common.metrics import OperatingPoint

    return OperatingPoint(cutoff=cutoff, frr=frr, false_accepts=int(fa), fa_per_hour=fa)


def test_the_student_with_the_lowest_device_path_frr_ships():
    from components.distillation.stage import choose_student

    assert choose_student([_point(0.42, 0.0), _point(0.70, 0.0), _point(0.43, 0.0)], 0.5) == 0
    assert choose_student([_point(0.69, 0.3), _point(0.80, 0.0), _point(0.61, 0.5)], 0.5) == 2


def test_a_student_that_misses_the_fa_target_ships_only_when_every_one_does():
    from components.distillation.stage import choose_student

    # the lowest FRR bought with false accepts above the target loses to a worse FRR within it ...
    assert choose_student([_point(0.10, 3.0), _point(0.60, 0.4)], 0.5) == 1
    # ... and when none meets it: the lowest FRR, then the fewest FA/h, then the first
    assert choose_student([_point(0.90, 3.0), _point(0.80, 6.0)], 0.5) == 1
    assert choose_student([_point(0.80, 6.0), _point(0.80, 3.0)], 0.5) == 1
    assert choose_student([_point(0.80, 3.0), _point(0.80, 3.0)], 0.5) == 0


def test_student_seeds_and_count():
    from components.common.config import ConfigError, load_config
    from components.distillation.stage import student_seed

    cfg = load_config("smoke", overrides=["seed=7"])
    assert cfg.distillation.students == 1  # the smoke preset distils one student, as before
    assert [student_seed(cfg, k) for k in range(3)] == [107, 117, 127]  # candidate 0: a single student's seed
    assert load_config("default").distillation.students == 3
    with pytest.raises(ConfigError, match="distillation.students"):
        load_config("smoke", overrides=["distillation.students=0"])
