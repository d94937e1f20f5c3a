"""MLflow tracking: one MLflow run per stage execution.

    with stage_run("teacher_training", f"wakeline/{wake_word}", params=config) as run:
        run.log_metrics({"loss": 0.3}, step=1)
        run.log_keras_model(model_dir)
        metadata["mlflow_run_id"] = run.run_id

Where runs go: `MLFLOW_TRACKING_URI` when set (read at call time, never at import), else an embedded SQLite
store `sqlite:///<cwd>/runs/mlflow.db` with artifacts in `<cwd>/runs/mlartifacts/`.

Failure policy: training must not be lost to a tracking outage. If tracking fails (server unreachable at the
start, or a logging call fails later), a warning goes to stderr and the stage continues; after a failure the
run's logging calls become no-ops (`run_id` is None when the run was never created). With
`WAKELINE_TRACKING_STRICT=1` tracking errors are re-raised instead. Either way, an exception raised by the stage
itself marks the run FAILED and propagates unchanged. How long an outage takes to detect is governed by
MLflow's client settings (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_TIMEOUT`, ...).

`mlflow` takes seconds to import, so it is imported lazily, only when a run starts.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STRICT_ENV = "WAKELINE_TRACKING_STRICT"
# MLflow's server-side limits (mlflow.utils.validation), copied so that importing this module stays cheap.
MAX_PARAM_VALUE_CHARS = 6000
MAX_TAG_VALUE_CHARS = 8000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
_ELLIPSIS = "..."


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the embedded SQLite store under `./runs/` (created if missing)."""
    uri = os.environ.get(TRACKING_URI_ENV)
    if uri:
        return uri
    runs = Path("runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{runs / 'mlflow.db'}"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings -> `{"a.b.c": "value"}`, values stringified and truncated to MLflow's length limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = _truncate(str(value), MAX_PARAM_VALUE_CHARS)
    return flat


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _warn(message: str) -> None:
    print(f"wakeline.tracking: WARNING: {message}", file=sys.stderr, flush=True)


class StageRun:
    """The handle `stage_run` yields. Logging calls are no-ops once tracking is off (see the module docstring)."""

    def __init__(self, client: Any = None, run_id: str | None = None, strict: bool = False) -> None:
        self.run_id = run_id
        self._client = client
        self._strict = strict
        self._active = run_id is not None

    def _call(self, what: str, fn: Callable[[], Any], strict: bool | None = None) -> None:
        if not self._active:
            return
        try:
            fn()
        except Exception as e:
            if self._strict if strict is None else strict:
                raise
            self._active = False
            _warn(f"{what} failed for run {self.run_id} ({e!r}); tracking is off for the rest of this stage")

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params, flattened with dots."""
        def send() -> None:
            from mlflow.entities import Param

            batch = [Param(k, v) for k, v in flatten_params(params).items()]
            for chunk in _chunks(batch, PARAMS_PER_BATCH):
                self._client.log_batch(self.run_id, params=chunk)
        self._call("log_params", send)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log scalar metrics at `step` (0 when None)."""
        def send() -> None:
            from mlflow.entities import Metric

            now_ms = int(time.time() * 1000)
            batch = [Metric(k, float(v), now_ms, step or 0) for k, v in metrics.items()]
            for chunk in _chunks(batch, METRICS_PER_BATCH):
                self._client.log_batch(self.run_id, metrics=chunk)
        self._call("log_metrics", send)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload one local file (or a directory's contents) as run artifact(s)."""
        local = Path(path)
        upload = "log_artifacts" if local.is_dir() else "log_artifact"
        self._call("log_artifact", lambda: getattr(self._client, upload)(self.run_id, str(local), artifact_path))

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """Store `data` as a JSON (or YAML, by extension) artifact file `name`."""
        self._call("log_dict", lambda: self._client.log_dict(self.run_id, dict(data), name))

    def log_keras_model(self, model_dir: str | os.PathLike) -> None:
        """Upload a saved model (directory or single file) as plain artifacts under `model/`."""
        self.log_artifact(model_dir, "model")

    def _end(self, status: str, strict: bool | None = None) -> None:
        self._active = self.run_id is not None  # always try to close the run, even after a logging failure
        self._call("end run", lambda: self._client.set_terminated(self.run_id, status), strict)


def bounded_client_settings() -> None:
    """Bounded: an unreachable server costs seconds, not MLflow's default ~4 minutes of retries; no telemetry
    leaves the cluster. Set at run time (never at import); explicit settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def client(uri: str | None = None):
    """An MlflowClient whose model registry is `MLFLOW_REGISTRY_URI` when set, else the tracking store itself
    (MLflow would otherwise take the registry from process-wide settings, which the embedded default never sets)."""
    bounded_client_settings()
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(uri, registry_uri=os.environ.get("MLFLOW_REGISTRY_URI") or uri)


def ensure_experiment(mlflow_client: Any, experiment: str) -> str:
    """The id of `experiment`, created if missing (artifacts beside an embedded SQLite store)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    uri = mlflow_client.tracking_uri
    location = None  # a server decides; SQLite would default to ./mlruns, so keep artifacts beside the db
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    try:
        return mlflow_client.create_experiment(experiment, artifact_location=location)
    except MlflowException:  # created concurrently by another stage
        found = mlflow_client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


def parse_models_uri(uri: str) -> tuple[str, str, str, str]:
    """`models:/name@alias[/path]` or `models:/name/version[/path]` -> (name, alias, version, "/path" or "")."""
    rest = uri.removeprefix("models:/").strip("/")
    head, _, sub = rest.partition("/")
    if "@" in head:
        name, _, alias = head.partition("@")
        version = ""
    else:
        name, alias = head, ""
        version, _, sub = sub.partition("/")
    if not name or not (alias or version.isdigit()):
        raise ValueError(f"{uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    return name, alias, version, f"/{sub}" if sub else ""


def download_artifacts(uri: str, dst: Path) -> Path:
    """Download `runs:/...`, `models:/name@alias`, `models:/name/version` or `mlflow-artifacts:/...` from the
    tracking store the stages use (its registry included) into `dst`; returns the local path."""
    import mlflow.artifacts

    mlflow_client = client()
    if uri.startswith("models:/"):
        name, alias, version, sub = parse_models_uri(uri)
        version = version or mlflow_client.get_model_version_by_alias(name, alias).version
        uri = mlflow_client.get_model_version_download_uri(name, str(version)).rstrip("/") + sub
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                    tracking_uri=mlflow_client.tracking_uri))


def _start(stage: str, experiment: str, tags: Mapping[str, Any] | None) -> StageRun:
    """Create the run (and the experiment if needed) on the current tracking store."""
    bounded_client_settings()
    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(tracking_uri())
    experiment_id = ensure_experiment(mlflow_client, experiment)
    run_tags = {k: _truncate(str(v), MAX_TAG_VALUE_CHARS) for k, v in {"wakeline.stage": stage, **(tags or {})}.items()}
    run = mlflow_client.create_run(experiment_id, run_name=stage, tags=run_tags)
    return StageRun(mlflow_client, run.info.run_id, _strict())


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, params: Mapping[str, Any],
              tags: Mapping[str, Any] | None = None) -> Iterator[StageRun]:
    """One MLflow run named `stage` in `experiment`: params logged at start, FINISHED/FAILED at exit."""
    try:
        run = _start(stage, experiment, tags)
    except Exception as e:
        if _strict():
            raise
        where = os.environ.get(TRACKING_URI_ENV) or "the embedded store"
        _warn(f"could not start an MLflow run for {stage!r} at {where} ({e!r}); continuing untracked")
        run = StageRun()
    try:
        run.log_params(params)
        yield run
    except BaseException:
        run._end("FAILED", strict=False)  # never mask the stage's own exception
        raise
    run._end("FINISHED")
