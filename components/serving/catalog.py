"""Which models `wakeline serve` serves: the published models in a local store folder (the latest of each wake
word, as `latest.json` names it) and any ESPHome manifest + .tflite pairs lying directly in that folder (e.g.
the official models). Each is loaded and checked as `wakeline evaluate` loads a model (TFLite-Micro with the
manifest's arena, the model's own stride, the manifest's cutoff and sliding window, the device's refractory
period).

With `confirm=True` (`wakeline serve --confirm-with-judge`), a published folder that holds a cascade evaluation
(`cascade.json` with an operating point, and the judge it names under `judge/`) is served as that cascade: the
sentry (the device model) at the operating point's sentry cutoff, each detection confirmed by the judge
(`ServedCascade`). Other models are served as they are."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from components.common.artifacts import (CASCADE_FILE, ArtifactError, Kind, find, latest_published, manifests_in,
                                         read_cascade, sha256_file)
from components.common.errors import InputError
from components.common.metrics import DetectorSettings
from components.common.names import slug

if TYPE_CHECKING:
    from components.runtime.judge import Judge

VERSION_CHARS = 16


class CatalogError(InputError, ValueError):
    """No model to serve, a model that does not load, or a name asked for that is not there."""


@dataclass(frozen=True)
class ServedModel:
    name: str  # the wake word id, e.g. hey_jarvis (what `detect` names and `detection` carries)
    phrase: str  # the wake word as spoken, e.g. "Hey Jarvis"
    languages: tuple[str, ...]
    version: str  # the .tflite's sha256, first 16 hex digits (the published folder's name)
    tflite: Path
    manifest_path: Path
    manifest: dict[str, Any]
    cutoff: float
    arena: int | None
    settings: DetectorSettings
    cascade: "ServedCascade | None" = None  # judge-confirmed (`--confirm-with-judge` and a cascade.json)

    @property
    def sentry_cutoff(self) -> float:
        """The cutoff the served detector fires at: the cascade's sentry cutoff, else the manifest's."""
        return self.cutoff if self.cascade is None else self.cascade.sentry_cutoff

    @property
    def tflite_name(self) -> str:
        """The file name the HTTP server serves the model under (beside `<name>.json`)."""
        return f"{self.name}.tflite"

    def http_manifest(self) -> dict[str, Any]:
        """The manifest as served over HTTP: its `model` points at the .tflite beside it on the same server
        (a relative URL, which ESPHome resolves against the manifest's own URL)."""
        return {**self.manifest, "model": self.tflite_name}


@dataclass(frozen=True)
class ServedCascade:
    """A published cascade's operating point (cascade.json's `operating_point`) and its judge, loaded. A sentry
    firing at inference t (its audio ends at feature frame e = (t+1) x stride) is confirmed when the judge's score
    on the stream's features [e - context_frames, e + after_frames) (clipped to the stream) is above
    `threshold`, exactly as the cascade evaluation decides (`SegmentWindow.bounds`, `Judge.threshold_at`)."""

    judge: "Judge"
    sentry_cutoff: float
    judge_cutoff: float
    context_s: float
    after_s: float
    context_frames: int
    after_frames: int
    source: Path  # the cascade.json

    @property
    def threshold(self) -> float:
        """The score the judge must exceed (`Judge.threshold_at(judge_cutoff)`, as the cascade compares it)."""
        return self.judge.threshold_at(self.judge_cutoff)

    def describe(self) -> str:
        return (f"judge-confirmed: sentry cutoff {self.sentry_cutoff:g}, judge {self.judge.kind} at "
                f"{self.judge_cutoff:g} on {self.context_s:g} s before + {self.after_s:g} s after")


def _number(point: dict[str, Any], key: str, where: Path, low: float, high: float) -> float:
    v = point.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not low <= v <= high:
        raise CatalogError(f"{where}: operating_point.{key} must be a number in [{low:g}, {high:g}], found {v!r}")
    return float(v)


def load_cascade(folder: Path, tflite: Path, settings: DetectorSettings) -> ServedCascade | None:
    """The cascade published beside `tflite` in `folder`, or None when there is none (no cascade.json, or an
    evaluation that chose no operating point). A cascade.json that is broken, evaluated for another model, or
    whose judge does not load is an error: serving the sentry at its low cutoff without its judge would not be
    the cascade that was measured."""
    from components.runtime.judge import JudgeModelError, load_judge

    path = Path(folder) / CASCADE_FILE
    if not path.is_file():
        return None
    try:
        doc = read_cascade(path)
    except ArtifactError as e:
        raise CatalogError(str(e)) from None
    point = doc.get("operating_point")
    if point is None:
        return None
    if not isinstance(point, dict):
        raise CatalogError(f"{path}: operating_point must be an object, found {point!r}")
    sentry = doc.get("sentry") if isinstance(doc.get("sentry"), dict) else {}
    if sentry.get("sha256") != sha256_file(tflite):
        raise CatalogError(f"{path}: evaluated the model {sentry.get('sha256')!r}, not {tflite.name} beside it")
    sentry_cutoff = _number(point, "sentry_cutoff", path, 0.0, 1.0)
    judge_cutoff = _number(point, "judge_cutoff", path, 0.0, 1.0)
    context_s = _number(point, "judge_context_s", path, 0.0, 60.0)
    after_s = _number(point, "judge_after_s", path, 0.0, 60.0)
    if context_s <= 0:
        raise CatalogError(f"{path}: operating_point.judge_context_s must be > 0")
    judge_dir = point.get("judge")
    if not isinstance(judge_dir, str) or not judge_dir.strip():
        raise CatalogError(f"{path}: operating_point.judge must name the judge's folder, found {judge_dir!r}")
    judge_path = (Path(folder) / judge_dir).resolve()
    if not judge_path.is_relative_to(Path(folder).resolve()):
        raise CatalogError(f"{path}: the judge {judge_dir!r} is outside the published folder")
    try:
        judge = load_judge(judge_path)
    except JudgeModelError as e:
        raise CatalogError(f"{path}: its judge does not load: {e}") from None
    step = settings.step_ms
    return ServedCascade(judge, sentry_cutoff, judge_cutoff, context_s, after_s,
                         int(round(context_s * 1000 / step)), int(round(after_s * 1000 / step)), path)


def load_served(manifest_path: Path, version: str | None = None) -> ServedModel:
    from components.runtime.folders import EvaluationInputError, load_model

    try:
        model = load_model(manifest_path)
    except EvaluationInputError as e:
        raise CatalogError(str(e)) from None
    manifest = model.esphome
    phrase = manifest.phrase or model.tflite.stem
    return ServedModel(slug(phrase), phrase, manifest.languages, version or sha256_file(model.tflite)[:VERSION_CHARS],
                       model.tflite, model.manifest, manifest.raw, model.cutoff, model.arena, model.settings)


def _published(word_folder: Path) -> tuple[Path, str] | None:
    """(manifest, version) of the latest model published in a store's wake-word folder, or None."""
    try:
        folder = latest_published(word_folder)
        return None if folder is None else (find(folder, Kind.ESPHOME_MODEL).pair[1], folder.name)
    except ArtifactError as e:
        raise CatalogError(str(e)) from None


def discover(folder: Path, names: Sequence[str] = (), confirm: bool = False) -> list[ServedModel]:
    """The models in `folder` (a store or a folder of manifests), only those in `names` when given (by id or
    phrase). Two models with one name are refused: `detect` could not tell them apart. `confirm`: load each
    published cascade (`load_cascade`) of the models chosen."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: no such folder (give a model store, e.g. runs/published)")
    found: list[ServedModel] = [load_served(m) for m in manifests_in(folder)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        published = _published(sub)
        if published is not None:
            found.append(load_served(*published))
    by_name: dict[str, ServedModel] = {}
    for m in found:
        if m.name in by_name:
            raise CatalogError(f"two models named {m.name!r}: {by_name[m.name].manifest_path} and {m.manifest_path}")
        by_name[m.name] = m
    if names:
        wanted = {slug(n) for n in names}
        missing = wanted - set(by_name)
        if missing:
            raise CatalogError(f"{folder}: no model named {', '.join(sorted(missing))} (found: "
                               f"{', '.join(sorted(by_name)) or 'none'})")
        by_name = {k: v for k, v in by_name.items() if k in wanted}
    if not by_name:
        raise CatalogError(f"{folder}: no published model (a <wake-word>/latest.json) and no manifest with its "
                           ".tflite")
    if confirm:  # only the models chosen: a judge (a Keras teacher) takes seconds and memory to load
        return [replace(m, cascade=load_cascade(m.manifest_path.parent, m.tflite, m.settings))
                for m in by_name.values()]
    return list(by_name.values())


def esphome_config(model: ServedModel, host: str, http_port: int) -> str:
    """The ESPHome YAML that loads `model` from `wakeline serve`'s HTTP server at host:http_port."""
    return (f"# {model.phrase} (version {model.version}, cutoff {model.cutoff:g}), served by `wakeline serve`\n"
            f"micro_wake_word:\n"
            f"  models:\n"
            f"    - model: http://{host}:{http_port}/{model.name}.json\n")
