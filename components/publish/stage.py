"""publish stage entry: a blessed model into the store (content-addressed) and the MLflow registry.

Inputs are the run's artifacts by name (`UPSTREAM`): the model, its blessing and report are what is published;
the rest are read for their metadata only, to write `lineage.json` (the whole chain) next to the model.
Registration follows `publish.registry`: `auto` publishes to the store even when MLflow cannot be reached and
records why the model was not registered; `required` fails the stage instead; `off` does not try.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from components.common.artifacts import code_version, sha256_file
from components.common.config import Registration as RegistryMode
from components.common.config import WakelineConfig
from components.publish import lineage, registry
from components.publish.store import (LINEAGE, PublishError, open_store, publish_folder, slug, stage_folder,
                                      update_index, version_key)

UPSTREAM = ("config", "dataset", "hard_negatives", "features", "teacher_a", "teacher_b", "student", "tflite_model",
            "blessing", "report")
REPORT = "verification/report.html"
BLESSING = "verification/blessing.json"


@dataclass(frozen=True)
class Upstream:
    path: Path
    metadata: Mapping[str, Any] = field(default_factory=dict)
    uri: str = ""


def resolve_store(store: str, base: Path | None = None) -> str:
    """`s3://...` as it is; a directory made absolute (a relative one against `base`, default the current
    directory: kfp.local stages run where `wakeline run` was started, which also resolves it up front)."""
    if store.startswith("s3://"):
        return store.rstrip("/")
    path = Path(store).expanduser()
    if not path.is_absolute() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise PublishError(f"publish.store {store!r} is a relative directory, which in a pod is the container's "
                           f"own disk and is lost with it: set publish.store to s3://bucket/prefix or to an absolute "
                           f"path on a mounted volume")
    return str(path if path.is_absolute() else (base or Path.cwd()) / path)


def check_blessing(verdict: Mapping[str, Any], model: Path) -> None:
    """Publish refuses anything but a blessing of this very file (the DAG's condition is not the only guard)."""
    if verdict.get("blessed") is not True:
        reasons = "; ".join(verdict.get("reasons") or []) or "no reasons given"
        raise PublishError(f"{model.name} is not blessed ({reasons}); refusing to publish")
    checks = {c.get("name"): c.get("found") for c in verdict.get("checks", []) if isinstance(c, Mapping)}
    size = model.stat().st_size
    if "file_size" in checks and checks["file_size"] != size:
        raise PublishError(f"the blessing is for a {checks['file_size']}-byte model, {model.name} has {size} bytes")
    if "model_file" in checks and checks["model_file"] != model.name:
        raise PublishError(f"the blessing is for {checks['model_file']!r}, not {model.name!r}")


def _model_pair(model_dir: Path) -> tuple[Path, Path]:
    from components.esphome_verification.stage import find_pair

    model, manifest = find_pair(model_dir)
    if not model.is_file():
        raise PublishError(f"{manifest} names {model.name}, which is not beside it")
    return model, manifest


def _register(mode: RegistryMode, folder: Path, name: str, tags: dict[str, Any], metrics: dict[str, float],
              experiment: str) -> registry.Registration:
    if mode is RegistryMode.OFF:
        return registry.Registration("off", name, reason="publish.registry is off")
    try:
        return registry.register(folder, name, tags, metrics, experiment,
                                 description=f"sha256 {tags['sha256']}, from pipeline run {tags.get('pipeline_run')}")
    except Exception as e:  # noqa: BLE001 - any registry failure: the store copy stands, the record says why
        from components.common.tracking import tracking_uri

        where = tracking_uri()
        if mode is RegistryMode.REQUIRED:
            raise PublishError(f"publish.registry is 'required' and registering {name} at {where} failed: "
                               f"{type(e).__name__}: {e}") from e
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        print(f"wakeline.publish: WARNING: not registered in MLflow at {where} ({reason}); the model is in the "
              f"store", flush=True)
        return registry.Registration("skipped", name, tracking_uri=where, reason=reason)


def run(upstream: Mapping[str, Upstream], record_path: Path, config: WakelineConfig,
        pipeline_run: Mapping[str, str] | None = None, s3_client: Any = None) -> dict[str, Any]:
    """Publish the blessed model in `upstream["tflite_model"]`; write the record (JSON) to `record_path` and
    return it (the artifact's metadata)."""
    t0 = time.monotonic()
    missing = [n for n in ("tflite_model", "blessing", "report") if n not in upstream]
    if missing:
        raise PublishError(f"nothing to publish without {', '.join(missing)}")
    run_info = {k: v for k, v in dict(pipeline_run or {}).items() if v}
    model, manifest = _model_pair(Path(upstream["tflite_model"].path))
    blessing_path, report_path = Path(upstream["blessing"].path), Path(upstream["report"].path)
    verdict = json.loads(blessing_path.read_text())
    check_blessing(verdict, model)
    sha = sha256_file(model)
    word = slug(config.wake_word)
    key = version_key(config.wake_word, sha)
    store = open_store(resolve_store(config.publish.store), s3_client)
    location = store.location(key)
    published_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest_doc = json.loads(manifest.read_text())
    behaviour = verdict.get("behaviour") or {}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        files = {model.name: model, manifest.name: manifest, REPORT: report_path, BLESSING: blessing_path}
        published_md = {"tflite": model.name, "sha256": sha, "location": location,
                        "files": {name: sha256_file(src) for name, src in files.items()},
                        "inputs": {"tflite_model": sha, "blessing": sha256_file(blessing_path),
                                   "report": sha256_file(report_path)}}
        chain = lineage.chain_from_artifacts(
            {**{nid: (u.metadata, Path(u.path), u.uri) for nid, u in upstream.items()},
             "published": (published_md, None, location)},
            run={**run_info, "published_at": published_at},
            raw_inputs=lineage.raw_inputs(config.model_dump(mode="json"),
                                          Path(upstream["dataset"].path) if "dataset" in upstream else None,
                                          upstream["config"].metadata if "config" in upstream else None),
            root="published")
        record = {"schema": "wakeline.published/1", "wake_word": config.wake_word, "sha256": sha,
                  "tflite": model.name, "manifest": manifest.name, "published_at": published_at,
                  "code_version": code_version(), "config_sha256": config.sha256(), **run_info}
        stage_folder(folder, files, chain.to_dict(), record)
        published = publish_folder(store, key, folder, sha)
        if published.already_published:  # register what the store holds (its lineage.json is the first one)
            folder = store.download(key, Path(tmp) / "stored")

        tags = {"sha256": sha, "wake_word": config.wake_word, "tflite": model.name,
                "size_bytes": model.stat().st_size,
                "tensor_arena_size": manifest_doc.get("micro", {}).get("tensor_arena_size", ""),
                "probability_cutoff": manifest_doc.get("micro", {}).get("probability_cutoff", ""),
                "frr": behaviour.get("frr", ""), "fa_per_hour": behaviour.get("fa_per_hour", ""),
                "code_version": code_version(), "config_sha256": config.sha256(), "store_location": location,
                "pipeline_run": run_info.get("pipeline_run", ""), "pipeline_run_id": run_info.get("pipeline_run_id", "")}
        tags = {k: v for k, v in tags.items() if v != ""}
        metrics = {k: float(v) for k, v in tags.items() if k in ("size_bytes", "tensor_arena_size", "frr", "fa_per_hour")}
        registration = _register(config.publish.registry, folder, registry.model_name(
            config.wake_word, config.publish.registered_model_name), tags, metrics, f"wakeline/{config.wake_word}")

    entry = {"sha256": sha, "folder": key.split("/", 1)[1], "location": location, "published_at": published_at,
             "tflite": model.name, "size_bytes": tags["size_bytes"], "tensor_arena_size": tags.get("tensor_arena_size"),
             "frr": tags.get("frr"), "fa_per_hour": tags.get("fa_per_hour"), "code_version": code_version(),
             "config_sha256": config.sha256(), **run_info,
             "mlflow": ({"name": registration.name, "version": registration.version}
                        if registration.version else None)}
    index_added = update_index(store, word, entry)
    out = {"location": location, "store": store.uri, "key": key, "sha256": sha, "tflite": model.name,
           "files": published.files, "inputs": published_md["inputs"], "already_published": published.already_published,
           "lineage": f"{location}/{LINEAGE}", "index": store.location(f"{word}/versions.jsonl"),
           "index_added": index_added, "registry_status": registration.status,
           "registered_model": registration.name, "model_version": registration.version,
           "alias": registration.alias, "registry_reason": registration.reason,
           "mlflow_run_id": registration.run_id, "tracking_uri": registration.tracking_uri,
           "wall_s": round(time.monotonic() - t0, 2)}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out
