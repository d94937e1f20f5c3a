"""Run the pipeline on a Kubeflow Pipelines cluster: submit one run, schedule recurring retraining, list runs.

Pure functions build the exact `kfp.Client` method calls (`ClientCall`: a method name and its keyword arguments),
so they are tested without a cluster; thin functions (`submit`, `schedule`, `recent_runs`) make those calls on a
client they are given. Nothing here reads the environment; the CLI passes everything in.
"""
from __future__ import annotations

import datetime as _dt
import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from components.common.errors import InputError
from components.common.config import WakelineConfig, merge_layer, validate
from components.common.names import slug
from components.publish.registry import PRODUCTION, model_name

DEFAULT_HOST = "http://localhost:8080"  # `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`
DEFAULT_EXPERIMENT = "wakeline"
MAX_CONCURRENT_SCHEDULED_RUNS = 1


class ClusterError(InputError, RuntimeError):
    """A cluster request that cannot be made: unreachable API, bad schedule, missing pipeline version."""


@dataclass(frozen=True)
class ClientCall:
    """One `kfp.Client` method call: `getattr(client, method)(**kwargs)`."""

    method: str
    kwargs: dict[str, Any]

    def send(self, client: Any) -> Any:
        from kfp_server_api import ApiException

        try:
            return getattr(client, self.method)(**self.kwargs)
        except ApiException as e:  # the API answered with an error: say which call and what it said
            detail = (e.body or "").strip() if isinstance(e.body, str) else e.body
            raise ClusterError(f"KFP API refused {self.method}: {e.status} {e.reason}: {detail}") from None


@dataclass(frozen=True)
class Release:
    """A compiled pipeline package and the pipeline version it is uploaded as."""

    package: Path
    pipeline_name: str
    version_name: str


@dataclass(frozen=True)
class RunRequest:
    """One run (or each run of a schedule): where it goes and the run form's values."""

    experiment: str
    name: str
    params: dict[str, str]
    namespace: str | None = None  # multi-user installs: the profile namespace; None = the client's default
    pipeline_root: str | None = None  # None = the IR's default (kubernetes.pipeline_root), else the cluster's


@dataclass(frozen=True)
class PipelineVersion:
    pipeline_id: str
    version_id: str


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    version: PipelineVersion


@dataclass(frozen=True)
class Scheduled:
    recurring_run_id: str
    url: str
    version: PipelineVersion


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    state: str
    created_at: str
    finished_at: str
    recurring_run_id: str


# --------------------------------------------------------------------------------------------------
# the run form, names and links


def run_parameters(config: WakelineConfig, preset: str) -> dict[str, str]:
    """The pipeline's parameters for a config validated here: the whole resolved config as JSON (so the run
    does not depend on the preset files in the image), plus the preset and wake word for people reading the UI."""
    return {"preset": preset, "wake_word": config.wake_word, "config_json": config.to_json()}


def production_model_uri(config: WakelineConfig) -> str:
    """The MLflow URI of the production model for this config's wake word: models:/<registered model>@production
    (the registered model publish writes to; the alias `wakeline promote` moves)."""
    return f"models:/{model_name(config.wake_word, config.publish.registered_model_name)}@{PRODUCTION}"


# The config keys whose directories hold state that must outlive a pod (mounted in dag.STATE_STAGES).
STATE_PATHS = ("training.checkpoint_root", "mining.session_root")


def state_outside_volume(config: WakelineConfig) -> list[str]:
    """With `kubernetes.state_volume` set: one message per STATE_PATHS key that is not under its mount path (a
    relative path resolves against the pod's working directory, the container's own disk). Empty otherwise.

    The volume is compile-time (in the IR), the paths are run-time (in config_json): `submit` and `schedule` send
    both together, so they refuse a mismatch; `compile` only warns (its IR may run with another config)."""
    volume = config.kubernetes.state_volume
    if volume is None:
        return []
    mount = PurePosixPath(volume.mount_path)
    problems = []
    for key in STATE_PATHS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        path = PurePosixPath(posixpath.normpath(value))
        if not path.is_absolute() or not (path == mount or mount in path.parents):
            where = "relative paths resolve in the pod's working directory" if not path.is_absolute() else \
                "outside the volume it is"
            problems.append(f"{key} {value!r} is not under kubernetes.state_volume.mount_path {volume.mount_path!r} "
                            f"({where} on the container's own disk, lost with the pod): set it to e.g. "
                            f"{mount / PurePosixPath(value).name}")
    return problems


def with_production_scorer(config: WakelineConfig) -> WakelineConfig:
    """The config a scheduled run gets: background mining scores with the current production model, so the
    deployed model finds its own false accepts in newly collected audio."""
    return validate(merge_layer(config.model_dump(mode="json"),
                                {"mining": {"previous_model": production_model_uri(config)}}))


def pipeline_version_name(code_version: str, now: _dt.datetime) -> str:
    """Unique per upload: the code version and the time, e.g. 0.1.0-20260722-031500."""
    return f"{code_version}-{now:%Y%m%d-%H%M%S}"


def run_name(config: WakelineConfig, now: _dt.datetime) -> str:
    return f"{slug(config.wake_word, '-')}-{now:%Y%m%d-%H%M%S}"


def schedule_name(config: WakelineConfig) -> str:
    return f"{slug(config.wake_word, '-')}-retraining"


def _ui_base(host: str) -> str:
    host = host.rstrip("/")
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def run_url(host: str, run_id: str) -> str:
    """The run's page in the KFP UI (the port-forwarded UI serves the API at the same address)."""
    return f"{_ui_base(host)}/#/runs/details/{run_id}"


def recurring_run_url(host: str, recurring_run_id: str) -> str:
    return f"{_ui_base(host)}/#/recurringrun/details/{recurring_run_id}"


# --------------------------------------------------------------------------------------------------
# cron: KFP's scheduler uses robfig/cron with six fields, seconds first


_CRON_FIELDS = (  # name, low, high, names allowed in place of numbers
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def validate_cron(expression: str) -> str:
    """A six-field cron expression (second minute hour day-of-month month day-of-week), as KFP's scheduler reads
    it: "0 0 3 * * *" is every day at 03:00:00 (the scheduler's time zone, UTC unless configured). Each field is
    `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; day-of-month and
    day-of-week also take `?`. Returns the expression with single spaces; raises ClusterError naming the field."""
    fields = expression.split()
    if len(fields) != 6:
        raise ClusterError(
            f"--cron {expression!r}: KFP takes 6 fields (second minute hour day-of-month month day-of-week), "
            f"got {len(fields)}; e.g. \"0 0 3 * * *\" for 03:00 every day")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            problem = _cron_part_problem(part.upper(), low, high, names, allow_any=name.startswith("day of"))
            if problem:
                raise ClusterError(f"--cron {expression!r}: {name} field {text!r}: {problem} "
                                   f"(values {low}-{high}{', or ' + '/'.join(names[:3]) + '...' if names else ''})")
    return " ".join(fields)


def _cron_part_problem(part: str, low: int, high: int, names: tuple[str, ...], allow_any: bool) -> str | None:
    if part == "?":
        return None if allow_any else "'?' is only for day-of-month or day-of-week"
    base, slash, step = part.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
        return f"step {step!r} must be a whole number >= 1"
    if base == "*":
        return None

    def value(token: str) -> int | None:
        if token in names:
            return names.index(token) + low
        return int(token) if token.isdigit() else None

    start, dash, end = base.partition("-")
    values = [value(start)] + ([value(end)] if dash else [])
    if any(v is None for v in values):
        return f"{part!r} is not a value, range or step"
    if any(not low <= v <= high for v in values):
        return f"{part!r} is out of range"
    if dash and values[0] > values[1]:
        return f"range {base!r} runs backwards"
    return None


# --------------------------------------------------------------------------------------------------
# the kfp.Client calls


def client_kwargs(host: str, namespace: str | None) -> dict[str, Any]:
    """Arguments for kfp.Client(...)."""
    return {"host": host, **({"namespace": namespace} if namespace else {})}


def find_pipeline_call(pipeline_name: str) -> ClientCall:
    return ClientCall("get_pipeline_id", {"name": pipeline_name})


def upload_pipeline_call(release: Release) -> ClientCall:
    """First upload: creates the pipeline (shared, not namespaced) with this package as its first version."""
    return ClientCall("upload_pipeline", {"pipeline_package_path": str(release.package),
                                          "pipeline_name": release.pipeline_name,
                                          "description": "wakeline: train an ESPHome micro_wake_word model"})


def newest_version_call(pipeline_id: str) -> ClientCall:
    return ClientCall("list_pipeline_versions", {"pipeline_id": pipeline_id, "page_size": 1,
                                                 "sort_by": "created_at desc"})


def upload_version_call(release: Release, pipeline_id: str) -> ClientCall:
    return ClientCall("upload_pipeline_version", {"pipeline_package_path": str(release.package),
                                                  "pipeline_version_name": release.version_name,
                                                  "pipeline_id": pipeline_id})


def experiment_call(request: RunRequest) -> ClientCall:
    """Creates the experiment, or returns the existing one of that name."""
    return ClientCall("create_experiment", {"name": request.experiment, "namespace": request.namespace})


def run_call(request: RunRequest, experiment_id: str, version: PipelineVersion) -> ClientCall:
    return ClientCall("run_pipeline", {"experiment_id": experiment_id, "job_name": request.name,
                                       "params": dict(request.params), "pipeline_id": version.pipeline_id,
                                       "version_id": version.version_id, "pipeline_root": request.pipeline_root})


def recurring_run_call(request: RunRequest, experiment_id: str, version: PipelineVersion, cron: str) -> ClientCall:
    """A recurring run: at most one run at a time, and no catch-up (after a pause only the latest missed
    interval runs, not one run per missed interval)."""
    return ClientCall("create_recurring_run", {
        "experiment_id": experiment_id, "job_name": request.name,
        "description": "wakeline retraining; mining scores with the production model",
        "cron_expression": validate_cron(cron), "max_concurrency": MAX_CONCURRENT_SCHEDULED_RUNS,
        "no_catchup": True, "enabled": True, "params": dict(request.params),
        "pipeline_id": version.pipeline_id, "version_id": version.version_id,
        "pipeline_root": request.pipeline_root})


def find_experiment_call(experiment: str, namespace: str | None) -> ClientCall:
    return ClientCall("get_experiment", {"experiment_name": experiment, "namespace": namespace})


def list_runs_call(limit: int, namespace: str | None, experiment_id: str | None = None) -> ClientCall:
    if limit < 1:
        raise ClusterError(f"--limit must be at least 1, got {limit}")
    return ClientCall("list_runs", {"page_size": limit, "sort_by": "created_at desc",
                                    "experiment_id": experiment_id, "namespace": namespace})


def describe_call(call: ClientCall, max_value_chars: int = 80) -> str:
    """`method(key=value, ...)` for people (--dry-run); long values such as config_json are shortened."""
    def short(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k!r}: {short(v)}" for k, v in value.items()) + "}"
        text = repr(value)
        return text if len(text) <= max_value_chars else f"{text[:max_value_chars - 20]}...<{len(text)} chars>"
    return f"{call.method}(" + ", ".join(f"{k}={short(v)}" for k, v in call.kwargs.items()) + ")"


def _kfp_cli(host: str, namespace: str | None) -> list[str]:
    return ["kfp", "--endpoint", host] + (["--namespace", namespace] if namespace else [])


def kfp_cli_upload(host: str, release: Release, first_upload: bool) -> str:
    """The upload as a kfp CLI line: `pipeline create` the first time, `pipeline create-version` after."""
    if first_upload:
        return shlex.join(_kfp_cli(host, None) + ["pipeline", "create", "--pipeline-name", release.pipeline_name,
                                                  str(release.package)])
    return shlex.join(_kfp_cli(host, None) + ["pipeline", "create-version", "--pipeline-name",
                                              release.pipeline_name, "--pipeline-version", release.version_name,
                                              str(release.package)])


def kfp_cli_run_create(host: str, request: RunRequest, pipeline_name: str, version_id: str = "<VERSION_ID>") -> str:
    """The same run as a `kfp run create` command line. `kfp run create` JSON-decodes each key=value (then tries
    numbers and booleans), so a value that would decode to something else is passed as a JSON string literal:
    config_json='"{\\"wake_word\\": ...}"' stays the string the pipeline parameter needs."""
    parts = _kfp_cli(host, request.namespace) + [
        "run", "create", "--experiment-name", request.experiment, "--run-name", request.name,
        "--pipeline-name", pipeline_name, "--version", version_id]
    parts += [f"{key}={_kfp_cli_literal(value)}" for key, value in request.params.items()]
    return shlex.join(parts)


def kfp_cli_recurring_run_create(host: str, request: RunRequest, cron: str, pipeline_id: str = "<PIPELINE_ID>",
                                 version_id: str = "<VERSION_ID>") -> str:
    """The same schedule as a `kfp recurring-run create` line (that command passes key=value strings as they are;
    without --catchup it does not catch up)."""
    parts = _kfp_cli(host, request.namespace) + [
        "recurring-run", "create", "--experiment-name", request.experiment, "--job-name", request.name,
        "--cron-expression", validate_cron(cron), "--max-concurrency", str(MAX_CONCURRENT_SCHEDULED_RUNS),
        "--no-catchup", "--pipeline-id", pipeline_id, "--version-id", version_id]
    parts += [f"{key}={value}" for key, value in request.params.items()]
    return shlex.join(parts)


def _kfp_cli_literal(value: str) -> str:
    try:
        json.loads(value)
        decodes = True
    except ValueError:
        decodes = value.lower() in ("true", "false") or _is_number(value)
    return json.dumps(value) if decodes else value


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# thin functions over a client


def connect(host: str, namespace: str | None = None):
    """A kfp.Client for `host`; ClusterError (with how to reach a local install) when the API does not answer."""
    import warnings

    import kfp

    try:
        with warnings.catch_warnings():  # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later"
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(**client_kwargs(host, namespace))
    except Exception as e:  # urllib3 MaxRetryError, kfp_server_api.ApiException, TimeoutError, ...
        raise ClusterError(
            f"no Kubeflow Pipelines API answered at {host} ({type(e).__name__}: {e}).\n"
            f"For a local install: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 "
            f"(or make kind-up), then --host {DEFAULT_HOST}") from None


def ensure_pipeline_version(client: Any, release: Release) -> PipelineVersion:
    """Upload the package as a new version of the pipeline (creating the pipeline on first use)."""
    pipeline_id = find_pipeline_call(release.pipeline_name).send(client)
    if pipeline_id is None:
        pipeline_id = upload_pipeline_call(release).send(client).pipeline_id
        versions = newest_version_call(pipeline_id).send(client).pipeline_versions or []
        if not versions:
            raise ClusterError(f"pipeline {release.pipeline_name!r} was created but lists no version")
        return PipelineVersion(pipeline_id, versions[0].pipeline_version_id)
    version = upload_version_call(release, pipeline_id).send(client)
    return PipelineVersion(pipeline_id, version.pipeline_version_id)


def submit(client: Any, host: str, release: Release, request: RunRequest) -> Submitted:
    """Upload a pipeline version, then start one run of it."""
    version = ensure_pipeline_version(client, release)
    experiment = experiment_call(request).send(client)
    run = run_call(request, experiment.experiment_id, version).send(client)
    return Submitted(run.run_id, run_url(host, run.run_id), version)


def schedule(client: Any, host: str, release: Release, request: RunRequest, cron: str) -> Scheduled:
    """Upload a pipeline version, then create a recurring run of it on `cron` (validated before any upload)."""
    validate_cron(cron)
    version = ensure_pipeline_version(client, release)
    experiment = experiment_call(request).send(client)
    recurring = recurring_run_call(request, experiment.experiment_id, version, cron).send(client)
    return Scheduled(recurring.recurring_run_id, recurring_run_url(host, recurring.recurring_run_id), version)


def recent_runs(client: Any, limit: int = 10, namespace: str | None = None,
                experiment: str | None = None) -> list[RunRow]:
    """The newest runs first, optionally of one experiment."""
    experiment_id = None
    if experiment:
        experiment_id = find_experiment_call(experiment, namespace).send(client).experiment_id
    response = list_runs_call(limit, namespace, experiment_id).send(client)
    return [RunRow(run_id=r.run_id, name=r.display_name or "", state=str(r.state or "UNKNOWN"),
                   created_at=_when(r.created_at), finished_at=_when(getattr(r, "finished_at", None)),
                   recurring_run_id=getattr(r, "recurring_run_id", None) or "")
            for r in (response.runs or [])]


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        if value.year <= 1970:  # the API's zero time: not finished yet
            return ""
        return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def format_runs(rows: Iterable[RunRow]) -> str:
    rows = list(rows)
    if not rows:
        return "no runs"
    table = [("STATE", "CREATED (UTC)", "FINISHED (UTC)", "NAME", "RUN ID", "SCHEDULE")]
    table += [(r.state, r.created_at, r.finished_at, r.name, r.run_id, r.recurring_run_id) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)
