"""The MLflow model registry: one registered model per wake word, one version per published model.

A version's artifacts are the published folder itself (the .tflite and its manifest side by side, the
verification report and blessing, lineage.json), logged by a `publish` run and registered from
`runs:/<run>/model`, so `models:/wakeline-hey-jarvis@production` is a folder holding exactly one .tflite: what
`mining.previous_model` and ESPHome both want. The new version gets the alias `candidate`; `promote` moves
`production`. Registering the same model (same sha256) again reuses its version.

The store is the one the stages track to (components.common.tracking: `MLFLOW_TRACKING_URI`, else the embedded
SQLite file), its registry included.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from components.common.errors import InputError
from components.common import tracking

CANDIDATE = "candidate"
PRODUCTION = "production"
ARTIFACT_PATH = "model"


class RegistryError(InputError):
    pass


def model_name(wake_word: str, configured: str = "") -> str:
    """The registered model of a wake word: `configured`, else `wakeline-<slug>`."""
    from components.common.names import slug

    return configured or f"wakeline-{slug(wake_word, '-')}"


@dataclass(frozen=True)
class Registration:
    status: str  # "registered" (a new version) | "reused" (this model had one) | "skipped" | "off"
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    tracking_uri: str = ""
    reason: str = ""


def _find_version(client: Any, name: str, sha256: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    found = [v for v in versions if v.tags.get("sha256") == sha256]
    return min(found, key=lambda v: int(v.version)) if found else None


def _ensure_registered_model(client: Any, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, tags={"wakeline": "true"}, description=description)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def register(folder: Path, name: str, tags: Mapping[str, Any], metrics: Mapping[str, float], experiment: str,
             description: str = "") -> Registration:
    """Log `folder` as a `publish` run's artifacts under `model/`, register it as a new version of `name`
    (tags on the version), and point the alias `candidate` at it. MLflow errors propagate."""
    from mlflow.entities import Metric

    client = tracking.client()
    str_tags = {k: str(v) for k, v in tags.items()}
    existing = _find_version(client, name, str_tags["sha256"])
    if existing is not None:
        client.set_registered_model_alias(name, CANDIDATE, existing.version)
        return Registration("reused", name, str(existing.version), CANDIDATE, existing.run_id or "",
                            client.tracking_uri)
    run = client.create_run(tracking.ensure_experiment(client, experiment), run_name="publish",
                            tags={"wakeline.stage": "publish", **{f"wakeline.{k}": v for k, v in str_tags.items()}})
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        client.log_artifacts(run_id, str(folder), ARTIFACT_PATH)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    _ensure_registered_model(client, name, f"wakeline models for one wake word. {description}".strip())
    version = client.create_model_version(name, f"runs:/{run_id}/{ARTIFACT_PATH}", run_id=run_id, tags=str_tags,
                                          description=description or None)
    client.set_registered_model_alias(name, CANDIDATE, version.version)
    return Registration("registered", name, str(version.version), CANDIDATE, run_id, client.tracking_uri)


# --------------------------------------------------------------------------------------------------
# promotion


@dataclass(frozen=True)
class Promotion:
    name: str
    alias: str
    old_version: str | None
    new_version: str
    tags: dict[str, str]
    tracking_uri: str

    def describe(self) -> str:
        old = f"v{self.old_version}" if self.old_version else "(none)"
        facts = ", ".join(f"{k} {self.tags[k]}" for k in ("sha256", "frr", "fa_per_hour") if k in self.tags)
        return f"{self.name}@{self.alias}: {old} -> v{self.new_version}" + (f"  ({facts})" if facts else "")


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _registered(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no registered model {name!r} at {client.tracking_uri}: publish a model first "
                                f"(or set MLFLOW_TRACKING_URI to the server that has it)") from None
        raise


def promote(name: str, version: str | int | None = None, source_alias: str = CANDIDATE,
            alias: str = PRODUCTION) -> Promotion:
    """Point `alias` (production) at `version`, or at the version `source_alias` (candidate) points at."""
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    try:
        return _promote(client, name, version, source_alias, alias)
    except MlflowException as e:
        raise RegistryError(f"MLflow at {client.tracking_uri}: {e.message}") from None


def _promote(client: Any, name: str, version: str | int | None, source_alias: str, alias: str) -> Promotion:
    from mlflow.exceptions import MlflowException

    _registered(client, name)
    if version is not None:
        try:
            target = client.get_model_version(name, str(version))
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"{name} has no version {version}") from None
            raise
    else:
        target = alias_version(client, name, source_alias)
        if target is None:
            raise RegistryError(f"{name} has no version with the alias {source_alias!r}; name one with --version")
    old = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, str(target.version))
    return Promotion(name, alias, str(old.version) if old is not None else None, str(target.version),
                     dict(target.tags), client.tracking_uri)
