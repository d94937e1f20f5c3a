"""Teacher compatibility, checked before any training: both teachers must read the features the student and
the feature store use, fit the stored clips, output one sigmoid probability, load, and be good enough."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.artifacts import ArtifactError, ModelLayout
from components.common.config import ModelSpec
from components.training.fit import feature_config


class TeacherMismatch(ValueError):
    """One or more teachers cannot teach this student; the message names each teacher and field."""


@dataclass
class Teacher:
    label: str  # teacher_a / teacher_b, as the DAG names them
    path: Path
    spec: ModelSpec
    validation: dict[str, Any]
    model: Any = None  # the loaded Keras model

    @property
    def title(self) -> str:
        return f"{self.label} ({self.spec.name})"


def _read(read, problems: list[str], who: str) -> dict[str, Any] | None:
    """One of a Model folder's JSON documents, or None with the problem recorded."""
    try:
        return read()
    except ArtifactError as e:
        problems.append(f"{who}: {e}")
        return None


def check_teachers(teacher_dirs: dict[str, Path], student: ModelSpec, store_metadata: dict[str, Any],
                   max_val_frr: float, *, load: bool = True) -> list[Teacher]:
    """Return the loaded teachers, or raise TeacherMismatch listing every problem found."""
    problems: list[str] = []
    teachers: list[Teacher] = []
    expected = {k: v for k, v in feature_config(student).items() if k not in ("input_frames", "stride_frames")}
    store_expect = {"channels": store_metadata.get("feature_channels"),
                    "float_scale": store_metadata.get("feature_scale")}
    stored_frames = int(store_metadata.get("frames_per_clip", 0))
    for label, root in teacher_dirs.items():
        root = Path(root)
        who = label
        layout = ModelLayout(root)
        meta = _read(layout.read_spec, problems, who)
        validation = _read(layout.read_validation, problems, who)
        if meta is None or validation is None:
            continue
        try:
            spec = ModelSpec.model_validate(meta.get("spec"))
        except ValueError as e:
            problems.append(f"{who}: {ModelLayout.SPEC} has no valid spec ({str(e).splitlines()[0]})")
            continue
        who = f"{label} ({spec.name})"
        features = meta.get("features") or {}
        for field, want in expected.items():
            if features.get(field) != want:
                problems.append(f"{who}: features.{field} is {features.get(field)!r}, the student needs {want!r}")
        for field, want in store_expect.items():
            if want is not None and features.get(field) is not None and features.get(field) != want:
                problems.append(f"{who}: features.{field} is {features.get(field)!r}, the feature store has {want!r}")
        if features.get("input_frames") != spec.input_frames:
            problems.append(f"{who}: features.input_frames is {features.get('input_frames')!r}, its spec says "
                            f"{spec.input_frames}")
        if stored_frames and spec.input_frames > stored_frames:
            problems.append(f"{who}: input_frames={spec.input_frames} exceeds the feature store's "
                            f"{stored_frames} frames per clip")
        if meta.get("output") != ModelLayout.OUTPUT_KIND:
            problems.append(f"{who}: output is {meta.get('output')!r}, distillation needs a binary "
                            f"{ModelLayout.OUTPUT_KIND!r}")
        frr = validation.get("frr")
        if not isinstance(frr, (int, float)):
            problems.append(f"{who}: {ModelLayout.VALIDATION} has no validation frr")
        elif frr > max_val_frr:
            problems.append(f"{who}: validation FRR {frr:.1%} is above distillation.max_teacher_val_frr "
                            f"{max_val_frr:.0%}; it would teach mostly noise")
        teacher = Teacher(label, root, spec, validation)
        if load:
            _load(teacher, problems)
        teachers.append(teacher)
    if problems:
        raise TeacherMismatch("the teachers cannot teach this student:\n  " + "\n  ".join(problems))
    return teachers


def _load(teacher: Teacher, problems: list[str]) -> None:
    """Load the Keras model and check its real input and output against its spec."""
    import keras

    try:
        model = keras.models.load_model(ModelLayout(teacher.path).model, compile=False)
    except Exception as e:  # noqa: BLE001 - any load failure is the same finding: this file is not a model
        problems.append(f"{teacher.title}: {ModelLayout.MODEL} does not load ({type(e).__name__}: {str(e)[:200]})")
        return
    in_shape = tuple(model.input_shape[1:])
    if in_shape != (teacher.spec.input_frames, 40):
        problems.append(f"{teacher.title}: model input shape {in_shape}, its spec says ({teacher.spec.input_frames}, 40)")
    if tuple(model.output_shape[1:]) != (1,):
        problems.append(f"{teacher.title}: model output shape {tuple(model.output_shape[1:])}, expected (1,)")
    activation = getattr(model.layers[-1], "activation", None)
    if getattr(activation, "__name__", None) != "sigmoid":
        problems.append(f"{teacher.title}: the last layer's activation is "
                        f"{getattr(activation, '__name__', activation)!r}, expected 'sigmoid'")
    teacher.model = model
