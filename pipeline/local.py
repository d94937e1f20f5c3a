"""Run the pipeline on this machine with kfp.local (no Kubernetes), outputs under runs/<run-id>/.

Two runners (`Runner`): `subprocess` (the default) runs every task in this venv; `docker` runs each task in its
image (cpu or gpu, as on a cluster) through kfp.local.DockerRunner and needs a Docker daemon."""
from __future__ import annotations

import datetime as _dt
import enum
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from components.common.errors import InputError
from components.common.artifacts import code_version
from components.common.config import WakelineConfig
from components.common.images import Images
from components.common.names import slug
from components.common.jsonio import dumps
from components.common import atomic


LOGS_DIR = "logs"  # under the run folder: one log file per task (pipeline/console.py)


@dataclass(frozen=True)
class OutputArtifact:
    path: Path
    metadata: dict[str, Any]


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    run_dir: Path
    preset: str
    wall_s: float
    outputs: dict[str, OutputArtifact]  # the pipeline's outputs by name: dataset, features, ...
    # Where the stages' relative paths (runs/published, runs/mlflow.db, ...) start when it is not this process's
    # working directory: the docker runner's containers work in <run>/kfp/.wakeline.
    workdir: Path | None = None

    @property
    def dataset_path(self) -> Path:
        return self.outputs["dataset"].path

    @property
    def dataset_metadata(self) -> dict[str, Any]:
        return self.outputs["dataset"].metadata

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "preset": self.preset,
                "wall_s": round(self.wall_s, 1), **({"workdir": str(self.workdir)} if self.workdir else {}),
                **{name: {"path": str(a.path), "metadata": a.metadata} for name, a in self.outputs.items()}}


class Runner(str, enum.Enum):
    """Where kfp.local runs each task."""

    SUBPROCESS = "subprocess"  # in this venv, no containers
    DOCKER = "docker"  # in the task's image (cpu or gpu) through kfp.local.DockerRunner; needs a Docker daemon


class DockerGpus(str, enum.Enum):
    """GPUs for the docker runner. kfp 2.17's DockerRunner hands the same `docker run` arguments to every task
    (`DockerRunner(**container_run_args)`; it ignores the IR's accelerator settings, and it accepts no subclass:
    the task handler is looked up by the runner's exact type). So GPUs cannot be given to the GPU stages alone:
    `all` gives every task container the host's GPUs (`docker run --gpus all`); the GPU stages use them, and the
    cpu image has no CUDA libraries, so the CPU stages leave them alone. Needs the NVIDIA Container Toolkit."""

    NONE = "none"
    ALL = "all"


class RunDirExists(InputError, FileExistsError):
    """--run-id names a run directory that already holds a run."""


class StageFailed(RuntimeError):
    """A pipeline task failed; what it printed (its traceback included) is in its log under the run folder."""

    def __init__(self, run_dir: Path, task: str, log: Path) -> None:
        self.run_dir, self.task, self.log = run_dir, task, log
        super().__init__(f"stage {task} failed; what it printed, the error included, is in {log}")


class ContainerOutputLost(StageFailed):
    """kfp 2.17's DockerRunner counts a task as succeeded when its container was removed before its exit code
    could be read (kubeflow/pipelines#13332): a container that fails at once can pass. The executor's last line
    ("Wrote executor output file") is then missing from the task's log, and the run is failed here instead."""

    def __init__(self, run_dir: Path, task: str, log: Path) -> None:
        super().__init__(run_dir, task, log)
        self.args = (f"stage {task}: kfp.local reported success, but its container's output never reached {log} "
                     f"(the executor's last line is missing; kfp 2.17 DockerRunner counts a container removed "
                     f"before its exit code was read as a success, kubeflow/pipelines#13332): the run is not "
                     f"trusted; run it again",)


EXECUTOR_DONE = "Wrote executor output file"  # kfp.dsl.executor's last line, printed from inside the container


def check_container_outputs(run_dir: Path) -> None:
    """Every task kfp.local calls a success must show the executor's last line in its log (ContainerOutputLost)."""
    for log in sorted((run_dir / LOGS_DIR).glob("*.log")):
        text = log.read_text(errors="replace")
        success = re.search(r"Task '([^']+)' finished with status SUCCESS", text)
        if success and EXECUTOR_DONE not in text:
            raise ContainerOutputLost(run_dir, success.group(1), log)


class DockerUnavailable(InputError, RuntimeError):
    """The docker runner cannot start: no `docker` package, no daemon, or an image that cannot be had."""


# What the stages read from their environment (components/common/storage.py, tracking.py). The docker runner
# passes these on from the caller's environment when they are set. A 127.0.0.1 address in them means the
# container itself: use an address the container can reach (e.g. host.docker.internal, or the host's IP).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "MLFLOW_TRACKING_URI",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "WAKELINE_TRACKING_STRICT")


class DockerNetwork(str, enum.Enum):
    """The network every task container gets. The stages need none unless they talk to a server: an S3 store
    (data sources, the artifact store) or an MLflow server. kfp 2.17's DockerRunner gives every task the same
    `docker run` arguments, so this is chosen per run (`docker_network`), not per task."""

    NONE = "none"  # no interface but loopback
    HOST = "host"  # the host's network (the only other one a daemon started with --bridge=none has)


@dataclass(frozen=True)
class DockerOptions:
    images: Images
    gpus: DockerGpus = DockerGpus.NONE
    network: DockerNetwork | None = None  # None: `docker_network` decides from the config and the environment


# The working directory of every task container, inside the pipeline root (the one host folder they see):
# what the stages write to relative paths (runs/checkpoints, runs/mining, the embedded MLflow store runs/mlflow.db,
# the default publish store runs/published) lands in <run>/kfp/.wakeline/runs/ and outlives each container.
# A dot folder, like kfp's own .kfp_cache, so nothing takes it for a pipeline run.
DOCKER_WORKDIR = ".wakeline"
# kfp.local always makes a workspace (a temp dir unless given) and the DockerRunner mounts it at /kfp-workspace.
# The docker runner puts it inside the pipeline root, so that the pipeline root is still all a container sees of
# this machine. kfp.local deletes it when the run ends.
DOCKER_WORKSPACE = ".kfp-workspace"
# Every task container carries this label, set to its pipeline root: what watches or cleans up a run's containers
# finds them by it (auto_remove deletes them when they exit).
DOCKER_LABEL = "org.wakeline.pipeline-root"


def docker_network(config_json: str, environment: Mapping[str, str]) -> DockerNetwork:
    """`host` when the run talks to a server (an s3:// location in the config, an S3 endpoint or an http(s)
    MLflow URI in the environment), else `none`."""
    tracking = environment.get("MLFLOW_TRACKING_URI") or ""
    if ("s3://" in config_json or environment.get("AWS_ENDPOINT_URL") or environment.get("AWS_ENDPOINT_URL_S3")
            or tracking.startswith(("http://", "https://"))):
        return DockerNetwork.HOST
    return DockerNetwork.NONE


def docker_run_kwargs(gpus: DockerGpus, pipeline_root: Path, user: str | None, environment: Mapping[str, str],
                      network: DockerNetwork = DockerNetwork.NONE) -> dict[str, Any]:
    """The `docker run` arguments the docker runner gives every task container.

    kfp.local mounts the pipeline root at its own path, and that is the only host folder a container sees: no
    other mount is added. The working directory is `DOCKER_WORKDIR` inside it. `user` None runs the image's own
    (non-root) user; "uid:gid" runs that one instead (a non-root caller, so that the files stay the caller's).
    HOME=/tmp: a uid from the caller has no home in the image.
    """
    pipeline_root = Path(pipeline_root).resolve()
    kwargs: dict[str, Any] = {
        "working_dir": str(pipeline_root / DOCKER_WORKDIR),
        "network_mode": network.value,
        "labels": {DOCKER_LABEL: str(pipeline_root)},
        "environment": {"HOME": "/tmp", **{k: environment[k] for k in FORWARDED_ENV if environment.get(k)}},
    }
    if user is not None:
        kwargs["user"] = user
    if gpus is DockerGpus.ALL:
        from docker.types import DeviceRequest

        kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


def make_runner(runner: Runner, docker_kwargs: Mapping[str, Any] | None = None):
    """The kfp.local runner object (nothing starts until a task runs)."""
    from kfp import local

    if runner is Runner.SUBPROCESS:
        if docker_kwargs:
            raise ValueError("docker arguments were given for the subprocess runner")
        return local.SubprocessRunner(use_venv=False)
    return local.DockerRunner(**dict(docker_kwargs or {}))


def image_user(config_user: str, image: str) -> tuple[int, int]:
    """The image's USER as (uid, gid). The images say `USER uid:gid`; a name, a missing group or root is refused:
    the stages must run as a known non-root user."""
    uid, sep, gid = (config_user or "").partition(":")
    if not (uid.isdigit() and sep and gid.isdigit()):
        raise DockerUnavailable(f"image {image} has USER {config_user or '(none: root)'!r}; the docker runner needs "
                                f"a numeric non-root `USER uid:gid` (images/*/Dockerfile say USER 1000:1000)")
    if int(uid) == 0:
        raise DockerUnavailable(f"image {image} runs as root (USER {config_user}); the stages must not")
    return int(uid), int(gid)


def check_docker(images: Images, environment: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Fail fast, before a run directory exists: a Docker daemon must answer, and the images must be on this
    machine or pullable, each with a non-root USER uid:gid. Returns that user (the cpu image's; the gpu image's
    must be the same). `environment` is where DOCKER_HOST etc. come from (default: this process's)."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable("--runner docker needs the `docker` Python package (pip install docker)") from None
    try:
        client = docker.from_env(environment=None if environment is None else dict(environment), timeout=10)
        client.ping()
    except docker.errors.DockerException as e:
        where = (environment if environment is not None else os.environ).get("DOCKER_HOST") or "the default socket"
        raise DockerUnavailable(
            f"--runner docker needs a running Docker daemon, and none answered at {where} ({e}).\n"
            f"Start Docker (or point DOCKER_HOST at one), or run without --runner docker: the default runner "
            f"(subprocess) needs no Docker.") from None
    users = set()
    try:
        for image in dict.fromkeys((images.cpu, images.gpu)):
            try:
                found = client.images.get(image)
            except docker.errors.ImageNotFound:
                try:
                    found = client.images.pull(image)
                except docker.errors.APIError as e:
                    raise DockerUnavailable(
                        f"image {image} is not on this machine and could not be pulled ({e}).\n"
                        f"Build it with `make images` (REGISTRY=...), name built ones with --registry/--version, "
                        f"or run the GPU stages in the cpu image with --cpu-image-only.") from None
            users.add(image_user(found.attrs.get("Config", {}).get("User", ""), image))
    finally:
        client.close()
    if len(users) != 1:
        raise DockerUnavailable(f"images {images.cpu} and {images.gpu} run as different users {sorted(users)}; "
                                f"they share the pipeline root, so they must be one user")
    return users.pop()


def prepare_pipeline_root(pipeline_root: Path, owner: tuple[int, int] | None) -> None:
    """Make the pipeline root, the containers' working directory and kfp's workspace; `owner` (uid, gid) gets
    them (a root caller, whose containers run as the image's user, which must be able to write there)."""
    for path in (pipeline_root / DOCKER_WORKDIR, pipeline_root / DOCKER_WORKSPACE):
        path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        for path in (pipeline_root, pipeline_root / DOCKER_WORKDIR, pipeline_root / DOCKER_WORKSPACE):
            os.chown(path, *owner)


def new_run_id(config: WakelineConfig, now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{slug(config.wake_word, '-')}"


def run_local(config: WakelineConfig, preset: str, runs_dir: Path, run_id: str | None = None,
              runner: Runner = Runner.SUBPROCESS, docker: DockerOptions | None = None,
              verbose: bool = False) -> LocalRun:
    """Run every stage through kfp.local and collect the outputs: in this environment (`Runner.SUBPROCESS`), or
    each task in its image (`Runner.DOCKER`; `docker` names the images and GPUs, default: this version's).
    The console gets one line per stage; each task's output goes to `<run>/logs/<task>.log` (`verbose` also
    echoes it)."""
    from pipeline.console import routed_stdout
    from kfp import local

    from pipeline.dag import create_pipeline

    if runner is Runner.DOCKER:
        docker = docker or DockerOptions(Images.for_version(code_version()))
        image_owner = check_docker(docker.images)
    elif docker is not None:
        raise ValueError("docker options were given for the subprocess runner")
    images = docker.images if docker else Images.for_version(code_version())
    run_id = run_id or new_run_id(config)
    run_dir = (Path(runs_dir) / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirExists(f"run directory {run_dir} already exists; choose another --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    pipeline_root = run_dir / "kfp"
    docker_kwargs = None
    if runner is Runner.DOCKER:
        # As root here, the containers run as the image's own user, which gets the pipeline root; as anyone
        # else, as this uid:gid (no chown possible, and the files stay this user's). Never as root.
        as_root = os.geteuid() == 0
        prepare_pipeline_root(pipeline_root, image_owner if as_root else None)
        network = docker.network or docker_network(config.to_json(), os.environ)
        docker_kwargs = docker_run_kwargs(docker.gpus, pipeline_root,
                                          None if as_root else f"{os.getuid()}:{os.getgid()}", os.environ, network)
    local.init(runner=make_runner(runner, docker_kwargs), pipeline_root=str(pipeline_root), raise_on_error=True,
               **({"workspace_root": str(pipeline_root / DOCKER_WORKSPACE)} if runner is Runner.DOCKER else {}))
    pipeline = create_pipeline(images, cluster=None)  # kfp.local ignores Kubernetes settings
    t0 = time.monotonic()
    with routed_stdout(run_dir / LOGS_DIR, echo=verbose) as router:
        try:
            task = pipeline(preset=preset, wake_word="", config_json=config.to_json())
        except RuntimeError as e:  # kfp.local: "... finished with status FAILURE"
            if router.failed is None:
                raise
            raise StageFailed(run_dir, *router.failed) from e
    wall = time.monotonic() - t0
    if runner is Runner.DOCKER:
        check_container_outputs(run_dir)

    links = run_dir / "outputs"
    links.mkdir(exist_ok=True)
    outputs = {}
    for name, artifact in task.outputs.items():
        (links / name).symlink_to(Path(artifact.path))
        outputs[name] = OutputArtifact(Path(artifact.path), dict(artifact.metadata))
    result = LocalRun(run_id, run_dir, preset, wall, outputs,
                      pipeline_root / DOCKER_WORKDIR if runner is Runner.DOCKER else None)
    atomic.write_text(run_dir / "summary.json", dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return result
