"""Run the pipeline on this machine with kfp.local (no Kubernetes), outputs under runs/<run-id>/.

Two runners (`Runner`): `subprocess` (the default) runs every task in this venv; `docker` runs each task in its
image (cpu or gpu, as on a cluster) through kfp.local.DockerRunner and needs a Docker daemon."""
from __future__ import annotations

import datetime as _dt
import enum
import os
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

    @property
    def dataset_path(self) -> Path:
        return self.outputs["dataset"].path

    @property
    def dataset_metadata(self) -> dict[str, Any]:
        return self.outputs["dataset"].metadata

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "preset": self.preset,
                "wall_s": round(self.wall_s, 1),
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


class DockerUnavailable(InputError, RuntimeError):
    """The docker runner cannot start: no `docker` package, no daemon, or an image that cannot be had."""


# What the stages read from their environment (components/common/storage.py, tracking.py). The docker runner
# passes these on from the caller's environment when they are set. A 127.0.0.1 address in them means the
# container itself: use an address the container can reach (e.g. host.docker.internal, or the host's IP).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "MLFLOW_TRACKING_URI",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                 "WAKELINE_TRACKING_STRICT")


@dataclass(frozen=True)
class DockerOptions:
    images: Images
    gpus: DockerGpus = DockerGpus.NONE


def docker_run_kwargs(gpus: DockerGpus, run_dir: Path, user: str, environment: Mapping[str, str]) -> dict[str, Any]:
    """The `docker run` arguments the docker runner gives every task container.

    kfp.local mounts the pipeline root (`<run_dir>/kfp`) at its own path; the whole run directory is mounted
    the same way and is the working directory, so what the stages write to relative paths (`runs/checkpoints`,
    `runs/mining`, the embedded MLflow store `runs/mlflow.db`) lands in `<run_dir>/runs/` on this machine rather
    than in the image's read-only /opt/wakeline. `user` ("uid:gid") makes the files this user's; HOME=/tmp
    because that uid has no home in the image.
    """
    from docker.types import DeviceRequest, Mount

    run_dir = str(Path(run_dir).resolve())
    kwargs: dict[str, Any] = {
        "user": user,
        "working_dir": run_dir,
        "mounts": [Mount(target=run_dir, source=run_dir, type="bind")],
        "environment": {"HOME": "/tmp", **{k: environment[k] for k in FORWARDED_ENV if environment.get(k)}},
    }
    if gpus is DockerGpus.ALL:
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


def check_docker(images: Images, environment: Mapping[str, str] | None = None) -> None:
    """Fail fast, before a run directory exists: a Docker daemon must answer, and both images must be on this
    machine or pullable. `environment` is where DOCKER_HOST etc. come from (default: this process's)."""
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
    try:
        for image in (images.cpu, images.gpu):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                try:
                    client.images.pull(image)
                except docker.errors.APIError as e:
                    raise DockerUnavailable(
                        f"image {image} is not on this machine and could not be pulled ({e}).\n"
                        f"Build both images with `make images` (REGISTRY=...), or name built ones with "
                        f"--registry/--version.") from None
    finally:
        client.close()


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
        check_docker(docker.images)
    elif docker is not None:
        raise ValueError("docker options were given for the subprocess runner")
    images = docker.images if docker else Images.for_version(code_version())
    run_id = run_id or new_run_id(config)
    run_dir = (Path(runs_dir) / run_id).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirExists(f"run directory {run_dir} already exists; choose another --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    docker_kwargs = (docker_run_kwargs(docker.gpus, run_dir, f"{os.getuid()}:{os.getgid()}", os.environ)
                     if runner is Runner.DOCKER else None)
    local.init(runner=make_runner(runner, docker_kwargs), pipeline_root=str(run_dir / "kfp"), raise_on_error=True)
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

    links = run_dir / "outputs"
    links.mkdir(exist_ok=True)
    outputs = {}
    for name, artifact in task.outputs.items():
        (links / name).symlink_to(Path(artifact.path))
        outputs[name] = OutputArtifact(Path(artifact.path), dict(artifact.metadata))
    result = LocalRun(run_id, run_dir, preset, wall, outputs)
    atomic.write_text(run_dir / "summary.json", dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return result
