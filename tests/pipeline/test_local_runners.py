"""`wakeline run --runner ...`: the kfp.local runner objects, built without starting anything, and the docker
runner's fail-fast check (this machine has no Docker daemon; the tests point DOCKER_HOST at a missing socket so
they behave the same where one runs)."""
import inspect
import re

import pytest
from docker.types import DeviceRequest, Mount
from kfp import local

from components.common import storage, tracking
from components.common.images import Images
from pipeline.cli import main
from pipeline.local import (FORWARDED_ENV, DockerGpus, DockerOptions, DockerUnavailable, Runner, check_docker,
                            docker_run_kwargs, make_runner, run_local)

NO_DAEMON = {"DOCKER_HOST": "unix:///nonexistent/wakeline-test/docker.sock"}


def test_subprocess_runner_is_the_venv_runner():
    runner = make_runner(Runner.SUBPROCESS)
    assert isinstance(runner, local.SubprocessRunner) and runner.use_venv is False
    with pytest.raises(ValueError, match="subprocess"):
        make_runner(Runner.SUBPROCESS, {"user": "0:0"})


def test_docker_runner_without_gpus(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "AWS_ACCESS_KEY_ID": "k", "AWS_REGION": "",
           "PATH": "/usr/bin", "HOME": "/root"}
    kwargs = docker_run_kwargs(DockerGpus.NONE, tmp_path / "run", "1000:1000", env)
    runner = make_runner(Runner.DOCKER, kwargs)  # kfp validates every key against docker's containers.run
    assert isinstance(runner, local.DockerRunner)
    args = runner.container_run_args
    run_dir = str((tmp_path / "run").resolve())
    assert args["user"] == "1000:1000" and args["working_dir"] == run_dir
    assert args["mounts"] == [Mount(target=run_dir, source=run_dir, type="bind")]
    # only the variables the stages read, and only when set; HOME is the container's own
    assert args["environment"] == {"HOME": "/tmp", "MLFLOW_TRACKING_URI": "http://mlflow:5000",
                                   "AWS_ACCESS_KEY_ID": "k"}
    assert "device_requests" not in args


def test_docker_runner_with_all_gpus(tmp_path):
    runner = make_runner(Runner.DOCKER, docker_run_kwargs(DockerGpus.ALL, tmp_path, "0:0", {}))
    assert runner.container_run_args["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]


def test_forwarded_variables_cover_what_the_stages_read():
    read = set(re.findall(r'env\.get\("(\w+)"\)', inspect.getsource(storage.s3_client)))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"} <= read
    assert read | {tracking.TRACKING_URI_ENV, tracking.STRICT_ENV} <= set(FORWARDED_ENV)


def test_no_daemon_is_a_clear_error():
    with pytest.raises(DockerUnavailable) as err:
        check_docker(Images.for_version("test"), NO_DAEMON)
    message = str(err.value)
    assert "needs a running Docker daemon" in message and NO_DAEMON["DOCKER_HOST"] in message
    assert "--runner docker" in message and "subprocess" in message  # what to do instead


def test_run_local_with_docker_fails_before_making_a_run_directory(tmp_path, monkeypatch):
    from components.common.config import load_config

    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON["DOCKER_HOST"])
    with pytest.raises(DockerUnavailable):
        run_local(load_config("smoke"), "smoke", tmp_path / "runs", run_id="x", runner=Runner.DOCKER,
                  docker=DockerOptions(Images.for_version("test")))
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="subprocess"):
        run_local(load_config("smoke"), "smoke", tmp_path / "runs", docker=DockerOptions(Images.for_version("t")))


def test_cli_runner_docker_without_daemon(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON["DOCKER_HOST"])
    rc = main(["run", "--preset", "smoke", "--runner", "docker", "--gpus", "all", "--runs-dir", str(tmp_path)])
    assert rc == 2  # an environment the user must fix (1 is the gate failing)
    err = capsys.readouterr().err
    assert "wakeline: --runner docker needs a running Docker daemon" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_docker_options_need_the_docker_runner(tmp_path, capsys):
    assert main(["run", "--preset", "smoke", "--gpus", "all", "--registry", "r", "--runs-dir", str(tmp_path)]) == 2
    assert "--gpus, --registry: only for --runner docker" in capsys.readouterr().err
