"""Which models `wakeline serve` serves: the published models in a local store folder (the latest of each wake
word, as `latest.json` names it) and any ESPHome manifest + .tflite pairs lying directly in that folder (e.g.
the official models). Each is loaded and checked as `wakeline evaluate` loads a model (TFLite-Micro with the
manifest's arena, the model's own stride, the manifest's cutoff and sliding window, the device's refractory
period)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from components.common.artifacts import ArtifactError, Kind, PublishedLayout, find, manifests_in, sha256_file
from components.common.errors import InputError
from components.common.metrics import DetectorSettings
from components.common.names import slug

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

    @property
    def tflite_name(self) -> str:
        """The file name the HTTP server serves the model under (beside `<name>.json`)."""
        return f"{self.name}.tflite"

    def http_manifest(self) -> dict[str, Any]:
        """The manifest as served over HTTP: its `model` points at the .tflite beside it on the same server
        (a relative URL, which ESPHome resolves against the manifest's own URL)."""
        return {**self.manifest, "model": self.tflite_name}


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
    latest = word_folder / PublishedLayout.LATEST
    if not latest.is_file():
        return None
    try:
        entry = json.loads(latest.read_text())
    except (OSError, ValueError) as e:
        raise CatalogError(f"{latest}: unreadable ({e})") from None
    folder = word_folder / str(entry.get("folder", ""))
    if not entry.get("folder") or not (folder / PublishedLayout.COMPLETE).is_file():
        raise CatalogError(f"{latest}: names {folder}, which is not a complete published model")
    try:
        return find(folder, Kind.ESPHOME_MODEL).pair[1], folder.name
    except ArtifactError as e:
        raise CatalogError(str(e)) from None


def discover(folder: Path, names: Sequence[str] = ()) -> list[ServedModel]:
    """The models in `folder` (a store or a folder of manifests), only those in `names` when given (by id or
    phrase). Two models with one name are refused: `detect` could not tell them apart."""
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
    return list(by_name.values())


def esphome_config(model: ServedModel, host: str, http_port: int) -> str:
    """The ESPHome YAML that loads `model` from `wakeline serve`'s HTTP server at host:http_port."""
    return (f"# {model.phrase} (version {model.version}, cutoff {model.cutoff:g}), served by `wakeline serve`\n"
            f"micro_wake_word:\n"
            f"  models:\n"
            f"    - model: http://{host}:{http_port}/{model.name}.json\n")
