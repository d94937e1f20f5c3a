"""publish stage entry: a blessed model into the store (content-addressed) and the MLflow registry.

Inputs are the run's artifacts by name (`UPSTREAM`): the model, its blessing and report are what is published,
and, when the cascade evaluation is given, cascade.json and the judge it names (a teacher, under judge/); the
rest are read for their metadata only, to write `lineage.json` (the whole chain) next to the model.
Registration follows `publish.registry`: `auto` publishes to the store even when MLflow cannot be reached and
records why the model was not registered; `required` fails the stage instead; `off` does not try.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from components.common.artifacts import (CASCADE_FILE, ArtifactError, BlessingLayout, EsphomeManifest, Kind, code_version,
                                         find, read_blessing, read_cascade, sha256_file)
from components.common.config import RegistryMode
from components.common.config import WakelineConfig
from components.common.stages import CONFIG, StageResult, task
from components.publish import lineage, registry
from components.publish.store import (LINEAGE, PublishError, open_store, publish_folder, stage_folder,
                                      update_index, version_key, word_folder)
from components.common.jsonio import dumps
from components.common import atomic

UPSTREAM = (CONFIG, *task("publish").inputs)  # the config and every artifact the registry wires into publish
REPORT = BlessingLayout.PUBLISHED_REPORT
BLESSING = BlessingLayout.PUBLISHED
CASCADE = CASCADE_FILE
JUDGE_DIR = "judge"


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


@dataclass(frozen=True)
class CascadeFiles:
    """What publish adds for the cascade: the judge's files (under judge/), cascade.json, their hashes, tags."""

    files: dict[str, Path]
    inputs: dict[str, str]
    tags: dict[str, Any]
    entry: dict[str, Any]


def cascade_files(upstream: Mapping[str, Upstream], sentry_sha256: str) -> CascadeFiles:
    """The cascade evaluation of this very model, and the judge it names (`judge.role`: one of the run's teachers,
    whose model file must be the one evaluated). The judge's folder is published file by file (top level)."""
    path = Path(upstream["cascade"].path)
    try:
        path = find(path, Kind.CASCADE).main
        doc = read_cascade(path)
    except ArtifactError as e:
        raise PublishError(f"cascade evaluation: {e}") from None
    if doc.get("sentry", {}).get("sha256") != sentry_sha256:
        raise PublishError(f"the cascade evaluation is for the model {doc.get('sentry', {}).get('sha256')}, not "
                           f"this one ({sentry_sha256}); refusing to publish it beside it")
    judge = doc.get("judge") or {}
    role = judge.get("role")
    if role not in ("teacher_a", "teacher_b") or role not in upstream:
        raise PublishError(f"the cascade's judge is {role!r}, which is not among the inputs "
                           f"({', '.join(k for k in ('teacher_a', 'teacher_b') if k in upstream) or 'no teachers'})")
    judge_dir = Path(upstream[role].path)
    model_file = judge_dir / str(judge.get("model_file", ""))
    if not model_file.is_file() or sha256_file(model_file) != judge.get("sha256"):
        raise PublishError(f"{judge_dir}: its {judge.get('model_file')} is not the judge the cascade evaluated "
                           f"(sha256 {judge.get('sha256')})")
    files = {f"{JUDGE_DIR}/{f.name}": f for f in sorted(judge_dir.iterdir()) if f.is_file()}
    files[CASCADE] = path
    point = doc.get("operating_point") or {}
    tags = {"judge": role, "judge_sha256": judge["sha256"],
            "cascade_sentry_cutoff": point.get("sentry_cutoff", ""),
            "cascade_judge_cutoff": point.get("judge_cutoff", ""),
            "cascade_judge_context_s": point.get("judge_context_s", ""),
            "cascade_judge_after_s": point.get("judge_after_s", ""),
            "cascade_frr": point.get("frr", ""), "cascade_fa_per_hour": point.get("fa_per_hour", ""),
            "cascade_fa_per_hour_reduction": "" if doc.get("fa_per_hour_reduction") is None
            else doc["fa_per_hour_reduction"],
            "cascade_reduction_kind": doc.get("reduction_kind", "")}
    entry = {"judge": role, "cascade": {k: point[k] for k in ("sentry_cutoff", "judge_cutoff", "frr", "fa_per_hour")
                                        if k in point} or None}
    return CascadeFiles(files, {"cascade": sha256_file(path), "judge": judge["sha256"]}, tags, entry)


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
    model, manifest = find(Path(upstream["tflite_model"].path), Kind.ESPHOME_MODEL).pair
    blessing_path, report_path = find(Path(upstream["blessing"].path), Kind.BLESSING).main, Path(upstream["report"].path)
    verdict = read_blessing(blessing_path)
    check_blessing(verdict, model)
    sha = sha256_file(model)
    word = word_folder(config.wake_word)
    key = version_key(config.wake_word, sha)
    store = open_store(resolve_store(config.publish.store), s3_client)
    location = store.location(key)
    published_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest_doc = EsphomeManifest.read(manifest)
    behaviour = verdict.get("behaviour") or {}
    cascade = cascade_files(upstream, sha) if "cascade" in upstream else CascadeFiles({}, {}, {}, {})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "folder"
        files = {model.name: model, manifest.name: manifest, REPORT: report_path, BLESSING: blessing_path,
                 **cascade.files}
        published_md = {"tflite": model.name, "sha256": sha, "location": location,
                        "files": {name: sha256_file(src) for name, src in files.items()},
                        "inputs": {"tflite_model": sha, "blessing": sha256_file(blessing_path),
                                   "report": sha256_file(report_path), **cascade.inputs}}
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
                "tensor_arena_size": "" if manifest_doc.tensor_arena_size is None else manifest_doc.tensor_arena_size,
                "probability_cutoff": "" if manifest_doc.probability_cutoff is None else manifest_doc.probability_cutoff,
                "frr": behaviour.get("frr", ""), "fa_per_hour": behaviour.get("fa_per_hour", ""),
                "code_version": code_version(), "config_sha256": config.sha256(), "store_location": location,
                "pipeline_run": run_info.get("pipeline_run", ""), "pipeline_run_id": run_info.get("pipeline_run_id", ""),
                **cascade.tags}
        tags = {k: v for k, v in tags.items() if v != ""}
        metrics = {k: float(v) for k, v in tags.items()
                   if k in ("size_bytes", "tensor_arena_size", "frr", "fa_per_hour", "cascade_frr", "cascade_fa_per_hour")}
        registration = _register(config.publish.registry, folder, registry.model_name(
            config.wake_word, config.publish.registered_model_name), tags, metrics, f"wakeline/{config.wake_word}")

    entry = {"sha256": sha, "folder": key.split("/", 1)[1], "location": location, "published_at": published_at,
             "tflite": model.name, "size_bytes": tags["size_bytes"], "tensor_arena_size": tags.get("tensor_arena_size"),
             "frr": tags.get("frr"), "fa_per_hour": tags.get("fa_per_hour"), "code_version": code_version(),
             "config_sha256": config.sha256(), **run_info, **cascade.entry,
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
    atomic.write_text(record_path, dumps(out, indent=2, sort_keys=True) + "\n")
    return out


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              metadata: Mapping[str, Mapping[str, Any]] | None = None, uris: Mapping[str, str] | None = None,
              pipeline_run: Mapping[str, str] | None = None, s3_client: Any = None) -> StageResult:
    """The stage entry (components.common.stages): every upstream artifact in (with its metadata and URI, which
    the lineage records), the `record` out."""
    metadata, uris = metadata or {}, uris or {}
    upstream = {name: Upstream(Path(path), dict(metadata.get(name, {})), uris.get(name, ""))
                for name, path in inputs.items()}
    return StageResult({"record": run(upstream, outputs["record"], config, pipeline_run, s3_client)})
