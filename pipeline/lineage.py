"""`wakeline lineage`: find the chain of a model wherever it is, as a tree or JSON.

    a published folder, a file in it, or <store>/<wake-word> (its latest.json)    lineage.json, from disk or s3://
    models:/<name>@<alias> or models:/<name>/<version>                            the version's lineage.json
    runs/<run-id> (a kfp.local run directory)                                     every task's executor_output.json
    kfp:<run-id> with --kfp-host                                                  the KFP API (+ MLMD for metadata)
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from components.common.errors import InputError
from components.publish.lineage import (ROLE_BY_OUTPUT, Chain, chain_from_artifacts, chain_from_kfp, raw_inputs,
                                        task_key)
from components.publish.store import LATEST, LINEAGE, LocalStore, PublishError, Store, open_store

MLMD_HOST_ENV = "WAKELINE_MLMD_HOST"  # host:port of the metadata gRPC service (in-cluster default below)
MLMD_DEFAULT = "metadata-grpc-service.kubeflow:8080"


class LineageError(InputError):
    pass


def load_chain(target: str, kfp_host: str | None = None) -> Chain:
    target = target.strip()
    if target.startswith("models:/"):
        return from_registry(target)
    if target.startswith("kfp:"):
        if not kfp_host:
            raise LineageError("kfp:<run-id> needs --kfp-host (the KFP API, e.g. http://localhost:8080)")
        return from_kfp_api(kfp_host, target.removeprefix("kfp:"))
    if target.startswith("s3://"):
        return from_store(target)
    path = Path(target).expanduser()
    if not path.exists():
        raise LineageError(f"{target}: no such file or directory (expected a published model folder, a run "
                           f"directory, s3://..., models:/... or kfp:<run-id>)")
    if path.is_file():
        if path.name == LINEAGE:
            return Chain.from_dict(json.loads(path.read_text()), str(path))
        if path.name == "summary.json" or path.name == "config.yaml":
            return from_run_dir(path.parent)
        path = path.parent
    if (path / LINEAGE).is_file() or (path / LATEST).is_file():
        return from_store(str(path))
    if (path / "kfp").is_dir():
        return from_run_dir(path)
    raise LineageError(f"{path}: neither a published model folder (no {LINEAGE}), a wake word's folder (no {LATEST}) "
                       f"nor a run directory (no kfp/)")


def from_store(location: str) -> Chain:
    """A published folder (lineage.json) or a wake word's folder (latest.json -> its newest model)."""
    location = location.rstrip("/")
    if location.endswith((".tflite", ".json", ".html")):
        location = location.rsplit("/", 1)[0]
        if location.endswith("/verification"):
            location = location.rsplit("/", 1)[0]
    try:
        store: Store = open_store(location) if location.startswith("s3://") else LocalStore(Path(location))
        text = store.read_text(LINEAGE)
        if text is None:
            latest = store.read_text(LATEST)
            if latest is None:
                raise LineageError(f"{location}: no {LINEAGE} and no {LATEST}: not a published model or wake word")
            folder = json.loads(latest)["folder"]
            text = store.read_text(f"{folder}/{LINEAGE}")
            if text is None:
                raise LineageError(f"{location}/{folder}: {LATEST} points at it, but it has no {LINEAGE}")
            location = f"{location}/{folder}"
    except PublishError as e:
        raise LineageError(str(e)) from None
    return Chain.from_dict(json.loads(text), f"{location}/{LINEAGE}")


def from_registry(uri: str) -> Chain:
    """A registered version's artifacts hold the published folder, lineage.json included."""
    from components.common.tracking import download_artifacts, tracking_uri

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = download_artifacts(uri, Path(tmp))
        except Exception as e:  # noqa: BLE001 - MLflow raises many kinds; the message is what matters
            raise LineageError(f"{uri}: cannot read it from MLflow at {tracking_uri()}: {e}") from None
        found = sorted(Path(local).rglob(LINEAGE))
        if not found:
            raise LineageError(f"{uri}: the version's artifacts hold no {LINEAGE} (not published by wakeline?)")
        chain = Chain.from_dict(json.loads(found[0].read_text()), uri)
    chain.run = {**chain.run, "model_uri": uri}
    return chain


def _pipeline_dir(run_dir: Path) -> Path:
    candidates = sorted((d for d in (run_dir / "kfp").iterdir() if d.is_dir() and not d.name.startswith(".")),
                        key=lambda d: d.stat().st_mtime)  # not .kfp_cache, not the docker runner's .wakeline
    if not candidates:
        raise LineageError(f"{run_dir}: kfp/ holds no pipeline run")
    return candidates[-1]


def from_run_dir(run_dir: Path) -> Chain:
    """A kfp.local run: each task's `executor_output.json` holds its output artifacts' URIs and metadata;
    parents are found by hash (`chain_from_artifacts`)."""
    run_dir = Path(run_dir)
    pipeline_dir = _pipeline_dir(run_dir)
    artifacts: dict[str, tuple[dict[str, Any], Path | None, str]] = {}
    for out in sorted(pipeline_dir.rglob("executor_output.json")):
        task = task_key(out.parent.name)
        for name, listed in json.loads(out.read_text()).get("artifacts", {}).items():
            role = ROLE_BY_OUTPUT.get((task, name))
            for artifact in listed.get("artifacts", []) if role else []:
                uri = str(artifact.get("uri", ""))
                artifacts[role] = (dict(artifact.get("metadata") or {}), Path(uri) if uri else None, uri)
    if not artifacts:
        raise LineageError(f"{pipeline_dir}: no task has finished (no executor_output.json with artifacts)")
    config_md, config_path, _ = artifacts.get("config", ({}, None, ""))
    config_doc = json.loads(config_path.read_text()) if config_path is not None and config_path.is_file() else None
    dataset = artifacts.get("dataset")
    raw = raw_inputs(config_doc, dataset[1] if dataset else None, config_md)
    chain = chain_from_artifacts(artifacts, {"pipeline_run": pipeline_dir.name, "run_dir": str(run_dir.resolve())}, raw)
    chain.source = str(run_dir)
    return chain


# --------------------------------------------------------------------------------------------------
# a cluster


def _artifact_ids(run: dict[str, Any]) -> list[str]:
    ids: list[str] = []
    for t in (run.get("run_details") or {}).get("task_details") or []:
        for side in ("inputs", "outputs"):
            for listed in (t.get(side) or {}).values():
                ids += [str(i) for i in listed.get("artifact_ids", [])]
    return list(dict.fromkeys(ids))


def mlmd_artifacts(ids: Iterable[str]) -> list[dict[str, Any]]:
    """Artifacts (with their metadata) from the metadata gRPC service KFP writes to."""
    try:
        from google.protobuf import json_format
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2
    except ImportError:
        raise LineageError("reading artifact metadata from KFP needs the ml-metadata package") from None
    host, _, port = os.environ.get(MLMD_HOST_ENV, MLMD_DEFAULT).rpartition(":")
    store = metadata_store.MetadataStore(metadata_store_pb2.MetadataStoreClientConfig(host=host, port=int(port)))
    return [json_format.MessageToDict(a, preserving_proto_field_name=True)
            for a in store.get_artifacts_by_id([int(i) for i in ids])]


def from_kfp_api(host: str, run_id: str,
                 fetch_artifacts: Callable[[list[str]], list[dict[str, Any]]] | None = None) -> Chain:
    """The run from the KFP API; its artifacts' metadata from MLMD when it can be reached (otherwise the chain
    has the structure only, and a warning says why)."""
    import kfp

    try:
        run = kfp.Client(host=host).get_run(run_id).to_dict()
    except Exception as e:  # noqa: BLE001 - connection errors, 404s, auth: all end the same way
        raise LineageError(f"kfp:{run_id}: cannot read the run from {host}: {e}") from None
    ids = _artifact_ids(run)
    try:
        artifacts = (fetch_artifacts or mlmd_artifacts)(ids)
    except Exception as e:  # noqa: BLE001
        print(f"wakeline lineage: WARNING: no artifact metadata ({e}); showing the structure only "
              f"(set {MLMD_HOST_ENV}=host:port of the metadata gRPC service)", file=sys.stderr)
        artifacts = [{"id": i} for i in ids]
    chain = chain_from_kfp(run, artifacts)
    chain.source = f"kfp:{run_id}"
    return chain
