"""Artifact types and their on-disk layouts: the one place every stage agrees on.

The layouts are plain Python (pure cores import them without pulling in kfp). The KFP artifact classes
are resolved on first attribute access (`from components.common.artifacts import Dataset`), so only
component modules pay for importing kfp.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from components.common.errors import InputError
from components.common.jsonio import dumps
from components.common import atomic

SAMPLE_RATE_HZ = 16_000
EVAL_ONLY_SOURCE = "condition_stream"  # manifest `source` of data_prep's speech-condition streams: evaluation only


class Label(str, enum.Enum):
    POSITIVE = "positive"
    ADVERSARIAL_NEGATIVE = "adversarial_negative"
    NEGATIVE = "negative"
    BACKGROUND = "background"
    RIR = "rir"
    HARD_NEGATIVE = "hard_negative"


class Split(str, enum.Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class QuarantineReason(str, enum.Enum):
    UNREADABLE = "unreadable"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    NON_FINITE = "non_finite"
    CLIPPED = "clipped"
    SILENT = "silent"
    TOO_SHORT = "too_short"
    DUPLICATE = "duplicate"


NON_ENGLISH_FAMILY = "espeak:non_english"  # the evaluation's languages: validation and test only
OTHER_LANGUAGE_FAMILY = "espeak:other_language"  # other languages in training negatives


@dataclass(frozen=True)
class ManifestRecord:
    """One line of `manifest.jsonl`. `path` is relative to the dataset directory."""

    path: str
    label: Label
    split: Split
    voice: str
    source: str
    duration_s: float
    sha256: str
    text: str | None = None
    origin: str | None = None
    family: str | None = None  # engine:voice group of speech clips (e.g. piper:joe, espeak:klatt)
    condition: str | None = None  # long-form audio: what it is (noise, music, babble, telephone_speech, ...)

    def to_json(self) -> str:
        d = asdict(self)
        d["label"] = self.label.value
        d["split"] = self.split.value
        return dumps({k: v for k, v in d.items() if v is not None}, sort_keys=True, on_non_finite="raise")

    @classmethod
    def from_json(cls, line: str) -> "ManifestRecord":
        d = json.loads(line)
        d["label"] = Label(d["label"])
        d["split"] = Split(d["split"])
        return cls(**d)


@dataclass(frozen=True)
class QuarantineRecord:
    """One rejected input: where it came from and why it was not used."""

    origin: str
    reason: QuarantineReason
    detail: str = ""
    kind: str = ""

    def to_json(self) -> str:
        return dumps({"origin": self.origin, "reason": self.reason.value, "detail": self.detail,
                           "kind": self.kind}, sort_keys=True)


@dataclass(frozen=True)
class DatasetLayout:
    """A `Dataset` artifact directory as data_prep writes it.

    clips/<label>/<sha256[:16]>.wav     16 kHz mono int16 (RIRs: float32)
    manifest.jsonl                       one ManifestRecord per clip, sorted
    quarantine.jsonl                     one QuarantineRecord per rejected input
    summary.json                         the artifact metadata, also on disk
    """

    root: Path
    manifest_name: str = "manifest.jsonl"
    quarantine_name: str = "quarantine.jsonl"
    summary_name: str = "summary.json"

    @property
    def manifest(self) -> Path:
        return self.root / self.manifest_name

    @property
    def quarantine(self) -> Path:
        return self.root / self.quarantine_name

    @property
    def summary(self) -> Path:
        return self.root / self.summary_name

    def clip_path(self, label: Label, sha256: str) -> Path:
        return self.root / "clips" / label.value / f"{sha256[:16]}.wav"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def read_manifest(self) -> list[ManifestRecord]:
        return list(iter_manifest(self.manifest))


def iter_manifest(path: Path) -> Iterator[ManifestRecord]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield ManifestRecord.from_json(line)


def write_jsonl(path: Path, records: Iterable[Any]) -> str:
    """Write records (objects with `to_json`) one per line; return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(r.to_json() + "\n" for r in records).encode("utf-8")
    atomic.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Lineage:
    """What every artifact's metadata carries: its own hashes, its inputs' hashes, config and code."""

    config_sha256: str
    code_version: str
    inputs: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {"config_sha256": self.config_sha256, "code_version": self.code_version,
                "input_sha256": dict(sorted(self.inputs.items())), "file_sha256": dict(sorted(self.files.items()))}


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wakeline")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


LABEL_CODES = {label: i for i, label in enumerate(Label)}  # stable: append new labels at the end of Label


@dataclass(frozen=True)
class FeatureSet:
    """One split x epoch of a feature store, memory-mapped: clip i is `frames[offsets[i]:offsets[i+1]]`."""

    root: Path
    frames: "Any"  # np.memmap uint16 [total_frames, 40]
    offsets: "Any"  # int64 [n + 1]
    labels: "Any"  # uint8 label codes [n]
    weights: "Any"  # float32 [n]

    def __len__(self) -> int:
        return len(self.labels)

    def clip(self, i: int):
        return self.frames[self.offsets[i]:self.offsets[i + 1]]

    def label(self, i: int) -> Label:
        return list(Label)[int(self.labels[i])]

    @property
    def positives(self):
        return self.labels == LABEL_CODES[Label.POSITIVE]

    def clip_info(self) -> list[dict[str, Any]]:
        with open(self.root / FeatureStoreLayout.CLIPS, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    @property
    def has_embeddings(self) -> bool:
        return (self.root / FeatureStoreLayout.EMBEDDINGS).is_file()

    def embeddings(self):
        """float16 `[n, 16, 96]` speech embeddings of each clip's last ~2 s (memory-mapped), when the set has them."""
        import numpy as np

        path = self.root / FeatureStoreLayout.EMBEDDINGS
        if not path.is_file():
            raise FileNotFoundError(f"{self.root}: no {FeatureStoreLayout.EMBEDDINGS} (augmentation writes it only "
                                    "when distillation.embedding_teacher.weight > 0)")
        return np.load(path, mmap_mode="r")


@dataclass(frozen=True)
class FeatureStoreLayout:
    """A `FeatureStore` artifact directory as augmentation writes it.

    <split>/epoch-<k>/  frames.u16 (raw uint16, 40 per frame), offsets.npy, labels.npy, weights.npy, clips.jsonl,
                        and with the embedding teacher on (train epochs, validation epoch 0) embeddings.npy:
                        float16 [n, 16, 96] speech embeddings of each clip's last ~2 s
    <split>/ambient/    the split's long-form background audio, unaugmented, one entry per file (FA/h eval);
                        clips.jsonl says each file's `condition`; `eval_only` ones (speech conditions) are left
                        out of `ambient()` (training's checkpoint choice) and included in `ambient_tagged()`
    <split>/condition-<name>/  validation/test positives under one channel condition (clean, noisy, ...)
    metadata.json       counts, shapes, sha256 per file, the SNR schedule
    """

    root: Path
    FRAMES = "frames.u16"
    OFFSETS = "offsets.npy"
    LABELS = "labels.npy"
    WEIGHTS = "weights.npy"
    CLIPS = "clips.jsonl"
    EMBEDDINGS = "embeddings.npy"
    METADATA = "metadata.json"
    AMBIENT = "ambient"
    CONDITION_PREFIX = "condition-"

    def set_dir(self, split: Split, epoch: int | None) -> Path:
        return self.root / split.value / (self.AMBIENT if epoch is None else f"epoch-{epoch:03d}")

    def condition_dir(self, split: Split, condition: str) -> Path:
        return self.root / split.value / f"{self.CONDITION_PREFIX}{condition}"

    def set_dir_named(self, split: Split, name: str) -> Path:
        """A set by its directory name: `epoch-000`, `ambient` or `condition-<name>`."""
        return self.root / split.value / name

    def conditions(self, split: Split) -> list[str]:
        """The positive condition sets of a split (empty for stores written before they existed)."""
        d = self.root / split.value
        n = len(self.CONDITION_PREFIX)
        return sorted(p.name[n:] for p in d.glob(f"{self.CONDITION_PREFIX}*")) if d.is_dir() else []

    def open_condition(self, split: Split, condition: str) -> "FeatureSet":
        return self.open_dir(self.condition_dir(split, condition))

    def epochs(self, split: Split) -> list[int]:
        d = self.root / split.value
        return sorted(int(p.name.split("-")[1]) for p in d.glob("epoch-*")) if d.is_dir() else []

    def open(self, split: Split, epoch: int | None) -> FeatureSet:
        return self.open_dir(self.set_dir(split, epoch))

    def open_dir(self, d: Path) -> FeatureSet:
        import numpy as np

        offsets = np.load(d / self.OFFSETS)
        n_frames = int(offsets[-1])
        frames = (np.memmap(d / self.FRAMES, dtype=np.uint16, mode="r", shape=(n_frames, 40)) if n_frames
                  else np.zeros((0, 40), np.uint16))
        return FeatureSet(d, frames, offsets, np.load(d / self.LABELS), np.load(d / self.WEIGHTS))

    def ambient(self, split: Split) -> list:
        """The split's long-form ambient recordings as raw feature arrays (empty if it has none), without the
        evaluation-only speech conditions (training picks checkpoints on these; keeping them out keeps it fast)."""
        return [raw for raw, _, eval_only in self._ambient(split) if not eval_only]

    def ambient_tagged(self, split: Split) -> list[tuple[Any, str]]:
        """Every long-form recording of the split with its condition (evaluation: FA/h per condition)."""
        return [(raw, condition) for raw, condition, _ in self._ambient(split)]

    def _ambient(self, split: Split) -> list[tuple[Any, str, bool]]:
        if not self.set_dir(split, None).is_dir():
            return []
        fs = self.open(split, None)
        info = fs.clip_info()
        return [(fs.clip(i), info[i].get("condition", "ambient"), bool(info[i].get("eval_only", False)))
                for i in range(len(fs))]

    def metadata(self) -> dict[str, Any]:
        return json.loads((self.root / self.METADATA).read_text())


class FeatureSetWriter:
    """Appends clips to one split x epoch on disk, so memory stays flat however large the set is."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self._frames = open(directory / FeatureStoreLayout.FRAMES, "wb")
        self._clips = open(directory / FeatureStoreLayout.CLIPS, "w", encoding="utf-8")
        self._offsets = [0]
        self._labels: list[int] = []
        self._weights: list[float] = []
        self._embeddings: list[Any] = []

    def add(self, frames, label: Label, weight: float, info: dict[str, Any], embedding=None) -> None:
        """Append one clip; `embedding` (`[16, 96]`) is given for every clip of a set or for none."""
        import numpy as np

        if (embedding is None) != (not self._embeddings) and self._labels:
            raise ValueError(f"{self.dir}: speech embeddings must be given for every clip of a set or for none")
        if embedding is not None:
            self._embeddings.append(np.asarray(embedding, np.float16))
        frames = np.ascontiguousarray(frames, dtype=np.uint16)
        self._frames.write(frames.tobytes())
        self._offsets.append(self._offsets[-1] + len(frames))
        self._labels.append(LABEL_CODES[label])
        self._weights.append(weight)
        self._clips.write(dumps(info, sort_keys=True) + "\n")

    def close(self) -> dict[str, Any]:
        import numpy as np

        self._frames.close()
        self._clips.close()
        np.save(self.dir / FeatureStoreLayout.OFFSETS, np.asarray(self._offsets, np.int64))
        np.save(self.dir / FeatureStoreLayout.LABELS, np.asarray(self._labels, np.uint8))
        np.save(self.dir / FeatureStoreLayout.WEIGHTS, np.asarray(self._weights, np.float32))
        if self._embeddings:
            np.save(self.dir / FeatureStoreLayout.EMBEDDINGS, np.stack(self._embeddings))
        counts: dict[str, int] = {}
        for code in self._labels:
            name = list(Label)[code].value
            counts[name] = counts.get(name, 0) + 1
        return {"clips": len(self._labels), "frames": self._offsets[-1], "counts": counts,
                "sha256": {f.name: sha256_file(f) for f in sorted(self.dir.iterdir())}}


# --------------------------------------------------------------------------------------------------
# Errors and JSON documents: every reader below raises ArtifactError saying what it found instead and what to
# give; callers with their own error type (JudgeModelError, EvaluationInputError, ...) re-raise its message.


class ArtifactError(InputError, ValueError):
    """A path given as an artifact is not one: missing, the wrong kind of file, unreadable, or several to choose
    from (the message names every candidate)."""


class ModelInputError(ArtifactError):
    """The path given as a model is not one: missing, the wrong kind of file, or several models to choose from."""


def read_json_object(path: Path, error: type[ArtifactError] = ArtifactError) -> dict[str, Any]:
    """The JSON object in a file, or `error` saying why not: missing, unreadable, not an object."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path.name} is missing from {path.parent}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: not readable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: not a JSON object")
    return doc


# --------------------------------------------------------------------------------------------------
# The Keras `Model`: what training.fit writes for the teachers and the student, and what quantization, the
# distillation check, the judge and the mining scorer read.


@dataclass(frozen=True)
class ModelLayout:
    """A Keras `Model` artifact directory.

    model.keras        the Keras model
    model_spec.json    {"spec": the ModelSpec, "features": what it expects of its input, "output": "sigmoid",
                       "wake_word"} (background_mining's probe writes one beside its own probe.keras)
    validation.json    device-like FRR / FA/h on validation, the calibrated `cutoff`, the eval history
    resources.json     what training used
    candidates/        distillation with several students: each candidate's INT8 `.tflite` as validation judged it
                       (`student-<k>.tflite`), kept for evaluation only; the chosen one is the shipped Keras model
    """

    root: Path
    MODEL = "model.keras"
    CANDIDATES = "candidates"
    SPEC = "model_spec.json"
    VALIDATION = "validation.json"
    RESOURCES = "resources.json"
    OUTPUT_KIND = "sigmoid"  # the only output a model of this layout has: one sigmoid probability

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def spec(self) -> Path:
        return self.root / self.SPEC

    def candidate(self, k: int) -> Path:
        """Candidate student k's judged INT8 model (distillation with several students)."""
        return self.root / self.CANDIDATES / f"student-{k}.tflite"

    @property
    def validation(self) -> Path:
        return self.root / self.VALIDATION

    def read_spec(self) -> dict[str, Any]:
        return read_json_object(self.spec, ModelInputError)

    def read_validation(self) -> dict[str, Any]:
        return read_json_object(self.validation, ModelInputError)

    def model_spec(self):
        """The `ModelSpec` the model was built from (its spec document's `spec`)."""
        from components.common.config import ModelSpec

        return ModelSpec.model_validate(self.read_spec()["spec"])

    def write_spec(self, doc: dict[str, Any]) -> None:
        atomic.write_text(self.spec, dumps(doc, indent=2))

    def write_validation(self, doc: dict[str, Any]) -> None:
        atomic.write_text(self.validation, dumps(doc, indent=2))


# --------------------------------------------------------------------------------------------------
# The ESPHome model pair: a `.tflite` and its micro_wake_word manifest (a `.json` with a `micro` section) side
# by side, as quantization writes them, verification and the cascade read them, publish stores them and
# `wakeline serve` serves them.


def _positive_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


@dataclass(frozen=True)
class EsphomeManifest:
    """A micro_wake_word manifest, parsed once. The fields hold the values as written (each reader checks what it
    needs; `arena`, `cutoff` and `window` are the usable ones or None); `raw` is the document itself, for the
    contract checks that must see exactly what ESPHome sees. A v1 manifest names the window
    `sliding_window_average_size`; `sliding_window_size` falls back to it."""

    wake_word: Any
    model: Any  # the .tflite's file name, relative to the manifest
    probability_cutoff: Any
    sliding_window_size: Any
    tensor_arena_size: Any
    feature_step_size: Any = 10
    minimum_esphome_version: Any = None
    version: Any = 2
    type: Any = "micro"
    author: Any = None
    website: Any = None
    trained_languages: Any = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], path: Path | None = None) -> "EsphomeManifest":
        micro = doc.get("micro") if isinstance(doc.get("micro"), dict) else {}
        return cls(wake_word=doc.get("wake_word"), model=doc.get("model"),
                   probability_cutoff=micro.get("probability_cutoff"),
                   sliding_window_size=micro.get("sliding_window_size", micro.get("sliding_window_average_size")),
                   tensor_arena_size=micro.get("tensor_arena_size"), feature_step_size=micro.get("feature_step_size"),
                   minimum_esphome_version=micro.get("minimum_esphome_version"), version=doc.get("version"),
                   type=doc.get("type"), author=doc.get("author"), website=doc.get("website"),
                   trained_languages=tuple(langs) if isinstance(langs := doc.get("trained_languages"), list) else langs,
                   raw=doc, path=path)

    @classmethod
    def read(cls, path: Path) -> "EsphomeManifest":
        """The manifest in `path`; ModelInputError when it is unreadable or has no `micro` section."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ModelInputError(f"{path}: not a readable JSON manifest ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("micro"), dict):
            raise ModelInputError(f"{path}: not a micro_wake_word manifest (no `micro` section)")
        return cls.from_doc(doc, path)

    @property
    def micro(self) -> dict[str, Any]:
        return self.raw.get("micro") if isinstance(self.raw.get("micro"), dict) else {}

    @property
    def phrase(self) -> str | None:
        """The wake word as spoken, when the manifest names one."""
        return self.wake_word if isinstance(self.wake_word, str) else None

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(x for x in self.trained_languages or () if isinstance(x, str))

    @property
    def arena(self) -> int | None:
        return _positive_int(self.tensor_arena_size)

    @property
    def window(self) -> int | None:
        return _positive_int(self.sliding_window_size)

    @property
    def cutoff(self) -> float | None:
        c = self.probability_cutoff
        return float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) and 0.0 <= c <= 1.0 else None

    @property
    def generation(self) -> str:
        """'v2', 'v1' (the Inception generation ESPHome converts) or 'unknown'."""
        if self.raw.get("version") == 2:
            return "v2"
        if self.raw.get("version") == 1 or "sliding_window_average_size" in self.micro:
            return "v1"
        return "unknown"

    @property
    def model_path(self) -> Path | None:
        """The .tflite it names, beside it."""
        if self.path is None or not isinstance(self.model, str) or not self.model.strip():
            return None
        return self.path.parent / self.model

    def to_doc(self) -> dict[str, Any]:
        """The v2 document, exactly ESPHome's keys in ESPHome's order (`website` only when given)."""
        doc: dict[str, Any] = {"type": self.type, "wake_word": self.wake_word, "author": self.author}
        if self.website is not None:
            doc["website"] = self.website
        doc.update({"model": self.model, "trained_languages": list(self.trained_languages), "version": self.version,
                    "micro": {"probability_cutoff": self.probability_cutoff, "feature_step_size": self.feature_step_size,
                              "sliding_window_size": self.sliding_window_size,
                              "tensor_arena_size": self.tensor_arena_size,
                              "minimum_esphome_version": self.minimum_esphome_version}})
        return doc

    def write(self, path: Path) -> None:
        atomic.write_text(Path(path), dumps(self.to_doc(), indent=2, on_non_finite="raise") + "\n")


def manifests_in(folder: Path) -> list[Path]:
    """The micro_wake_word manifests in a folder (JSON objects with a `micro` section), sorted: a published
    folder or a quantization output also holds other JSON files (cascade.json, lineage.json, parity.json)."""
    out = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("micro"), dict):
            out.append(p)
    return out


def _manifest_naming(tflite: Path) -> Path | None:
    """The manifest beside a .tflite that names it (None when there is none)."""
    for m in manifests_in(tflite.parent):
        if (m.parent / str(EsphomeManifest.read(m).model or "")).resolve() == tflite.resolve():
            return m
    return None


# --------------------------------------------------------------------------------------------------
# esphome_verification's verdict (the blessing) and report; background_mining's hard negatives; the cascade.


class BlessingLayout:
    """esphome_verification's output: `verdict.json` (the blessing: `blessed`, `reasons`, `checks`, `behaviour`)
    and `report.html` in its folder; in the pipeline the verdict is the `blessing` artifact (one file, named
    after the output) and the report the `report` artifact; in a published folder they are under verification/."""

    VERDICT = "verdict.json"
    REPORT = "report.html"
    PIPELINE = "blessing"
    PUBLISHED = "verification/blessing.json"
    PUBLISHED_REPORT = "verification/report.html"


def read_blessing(path: Path) -> dict[str, Any]:
    """The verdict document of a blessing file or of the folder holding one."""
    return read_json_object(find(path, Kind.BLESSING).main)


@dataclass(frozen=True)
class HardNegativesLayout(DatasetLayout):
    """background_mining's `Dataset`: a DatasetLayout whose clips are the mined `hard_negative` ones
    (clips/hard_negative/<sha256[:16]>.wav), with report.json and report.html (what was scanned, every hit)."""

    REPORT_JSON = "report.json"
    REPORT_HTML = "report.html"

    def read_hard_negatives(self) -> list[ManifestRecord]:
        return [r for r in self.read_manifest() if r.label is Label.HARD_NEGATIVE]


# The cascade evaluation (cascade_evaluation writes it; publish checks its schema and stores it beside the model)
CASCADE_FILE = "cascade.json"
CASCADE_SCHEMA = "wakeline.cascade/1"


def read_cascade(path: Path) -> dict[str, Any]:
    """A cascade evaluation document (a cascade.json or the folder holding one), its schema checked."""
    main = find(path, Kind.CASCADE).main
    doc = read_json_object(main)
    if doc.get("schema") != CASCADE_SCHEMA:
        raise ArtifactError(f"{main}: not a cascade evaluation (schema {doc.get('schema')!r})")
    return doc


# --------------------------------------------------------------------------------------------------
# find: one rule for every kind. A path is the artifact's main file itself or the folder holding it; a folder
# with several candidates is refused naming each, one with none says what it holds instead.


class Kind(str, enum.Enum):
    DATASET = "dataset"
    HARD_NEGATIVES = "hard_negatives"
    FEATURE_STORE = "feature_store"
    KERAS_MODEL = "keras_model"
    ESPHOME_MODEL = "esphome_model"
    MODEL = "model"  # either model kind: what a scorer or a judge runs
    BLESSING = "blessing"
    CASCADE = "cascade"


@dataclass(frozen=True)
class Found:
    """What `find` found: the artifact's main file, and for an ESPHome model its manifest (None only for a bare
    .tflite found as `Kind.MODEL`). `kind` is the kind found (for `Kind.MODEL`: KERAS_MODEL or ESPHOME_MODEL)."""

    kind: Kind
    main: Path
    manifest: Path | None = None

    @property
    def pair(self) -> tuple[Path, Path]:
        """(model.tflite, manifest.json) of an ESPHome model."""
        if self.manifest is None:
            raise ModelInputError(f"{self.main}: no manifest beside it names it (a .json with a `micro` section)")
        return self.main, self.manifest

    def read_manifest(self) -> EsphomeManifest | None:
        return None if self.manifest is None else EsphomeManifest.read(self.manifest)


_MAIN_FILES = {  # the single-file kinds: their main file's names in a folder, and what a person calls them
    Kind.DATASET: ((DatasetLayout.manifest_name,), "Dataset"),
    Kind.HARD_NEGATIVES: ((DatasetLayout.manifest_name,), "hard negatives Dataset"),
    Kind.FEATURE_STORE: ((FeatureStoreLayout.METADATA,), "feature store"),
    Kind.BLESSING: ((BlessingLayout.VERDICT, BlessingLayout.PIPELINE, BlessingLayout.PUBLISHED), "blessing"),
    Kind.CASCADE: ((CASCADE_FILE, "cascade"), "cascade evaluation"),
}
_ANY_FILE = {Kind.BLESSING, Kind.CASCADE}  # the pipeline names these files after the output, without a suffix


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "an empty folder"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _one(folder: Path, candidates: list[Path], what: str, error: type[ArtifactError], hint: str = "") -> Path | None:
    if len(candidates) > 1:
        names = ", ".join(c.relative_to(folder).as_posix() for c in candidates)
        raise error(f"{folder} holds {len(candidates)} {what}s ({names}); choose one{hint}, e.g. {candidates[0]}")
    return candidates[0] if candidates else None


def find(path: Path, kind: Kind, *, recursive: bool = False) -> Found:
    """The artifact of `kind` at `path`: the main file itself or the folder holding exactly one. Raises
    ArtifactError (ModelInputError for models) naming every candidate when there are several, and saying what
    the folder holds when there is none. `recursive` (models only) looks in sub-folders too."""
    path = Path(path)
    error = ModelInputError if kind in (Kind.KERAS_MODEL, Kind.ESPHOME_MODEL, Kind.MODEL) else ArtifactError
    if not path.exists():
        raise error(f"{path}: no such file or folder")
    if kind is Kind.ESPHOME_MODEL:
        return _find_esphome(path)
    if kind in (Kind.KERAS_MODEL, Kind.MODEL):
        return _find_model(path, kind, recursive)
    names, what = _MAIN_FILES[kind]
    if path.is_file():
        if kind in _ANY_FILE or path.name in names:
            return Found(kind, path)
        raise error(f"{path}: not a {what}; give its {' or '.join(names)} or the folder holding it")
    main = _one(path, [path / n for n in names if (path / n).is_file()], what, error)
    if main is None:
        raise error(f"{path}: no {what} here (no {' or '.join(names)}; found {_listing(path)})")
    return Found(kind, main)


def _find_esphome(path: Path) -> Found:
    """(model.tflite, manifest.json) from a manifest, its .tflite, or a folder holding exactly one manifest."""
    if path.is_dir():
        manifests = manifests_in(path)
        if len(manifests) > 1:
            raise ModelInputError(f"{path} holds {len(manifests)} models ({', '.join(m.name for m in manifests)}); "
                                  f"choose one by its manifest, e.g. {manifests[0]}")
        if not manifests:
            tflites = sorted(p.name for p in path.glob("*.tflite"))
            if (path / ModelLayout.MODEL).is_file():
                raise ModelInputError(f"{path}: a Keras model folder (a teacher or the student), not an ESPHome "
                                      "model; give a .tflite with its .json manifest (a run's esphome_model output "
                                      "or a published folder)")
            if tflites:
                raise ModelInputError(f"{path}: {', '.join(tflites)} without a manifest (.json with a `micro` "
                                      "section) beside it; ESPHome needs both")
            raise ModelInputError(f"{path}: no micro_wake_word model in this folder (no .json manifest with a "
                                  f"`micro` section; found {_listing(path)})")
        manifest = manifests[0]
    elif path.suffix.lower() == ".tflite":
        manifest = _manifest_naming(path)
        if manifest is None:
            raise ModelInputError(f"{path}: no manifest beside it names it (expected {path.with_suffix('.json').name}"
                                  ", a .json with a `micro` section); ESPHome needs both")
    elif path.suffix.lower() == ".json":
        manifest = path
    else:
        raise ModelInputError(f"{path}: not a model; give a manifest .json, its .tflite, or the folder holding them")
    doc = EsphomeManifest.read(manifest)
    named = doc.model
    if not isinstance(named, str) or not named.strip():
        raise ModelInputError(f"{manifest}: names no model file (its `model` key is {named!r})")
    model = manifest.parent / named
    if not model.is_file():
        raise ModelInputError(f"{manifest}: its model file {named} is missing (expected {model})")
    return Found(Kind.ESPHOME_MODEL, model, manifest)


def _find_model(path: Path, kind: Kind, recursive: bool) -> Found:
    """A Keras model (a Model folder's model.keras or a .keras file) or, for Kind.MODEL, an ESPHome .tflite
    (its manifest when one beside it names it). In a folder: model.keras first, then .tflite files, then .keras."""
    esphome_too = kind is Kind.MODEL
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".keras":
            return Found(Kind.KERAS_MODEL, path)
        if esphome_too and suffix == ".tflite":
            return Found(Kind.ESPHOME_MODEL, path, _manifest_naming(path))
        if esphome_too and suffix == ".json":
            return _find_esphome(path)
        raise ModelInputError(f"{path}: neither a .tflite nor a .keras model" if esphome_too else
                              f"{path}: not a Keras model; give a Model folder ({ModelLayout.MODEL}) or a .keras file")
    if (path / ModelLayout.MODEL).is_file():
        return Found(Kind.KERAS_MODEL, path / ModelLayout.MODEL)
    glob = path.rglob if recursive else path.glob
    if esphome_too:
        tflite = _one(path, sorted(glob("*.tflite")), "model", ModelInputError)
        if tflite is not None:
            return Found(Kind.ESPHOME_MODEL, tflite, _manifest_naming(tflite))
    keras = _one(path, sorted(glob("*.keras")), "model", ModelInputError)
    if keras is not None:
        return Found(Kind.KERAS_MODEL, keras)
    wanted = f"{ModelLayout.MODEL}, .keras or .tflite file" if esphome_too else f"{ModelLayout.MODEL} or .keras file"
    raise ModelInputError(f"{path}: no {wanted}{' under it' if recursive else ''} (found {_listing(path)})")


class PublishedLayout:
    """A model store: `<wake word>/<version>/` folders, each finished by COMPLETE (written last), VERSIONS listing
    every version published, LATEST naming the newest complete one, LINEAGE beside each model."""

    COMPLETE = "published.json"
    VERSIONS = "versions.jsonl"
    LATEST = "latest.json"
    LINEAGE = "lineage.json"


def latest_published(word_folder: Path) -> Path | None:
    """The folder of the newest complete model in a local store's wake-word folder (what LATEST names), or None
    when nothing was published there. ArtifactError when LATEST is unreadable or names no complete model."""
    latest = Path(word_folder) / PublishedLayout.LATEST
    if not latest.is_file():
        return None
    entry = read_json_object(latest)
    folder = Path(word_folder) / str(entry.get("folder", ""))
    if not entry.get("folder") or not (folder / PublishedLayout.COMPLETE).is_file():
        raise ArtifactError(f"{latest}: names {folder}, which is not a complete published model")
    return folder


_KFP_TYPES = {"Artifact", "Dataset", "Model", "Metrics", "ClassificationMetrics", "HTML", "Markdown",
              "Input", "Output"}


def __getattr__(name: str) -> Any:
    # KFP artifact classes, imported on demand so that pure cores never import kfp.
    if name in _KFP_TYPES:
        from kfp import dsl

        return getattr(dsl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
