"""`wakeline run --runner ...`: the kfp.local runner objects, built without starting anything, and the docker
runner's fail-fast check (the tests point DOCKER_HOST at a missing socket, so they behave the same with or without
a Docker daemon). The docker runner for real: tests/ops/test_containers.py (marker `container`)."""
import inspect
import re

import pytest
from docker.types import DeviceRequest
from kfp import local

from components.common import storage, tracking
from components.common.images import Images
from pipeline.cli import main
from pipeline.local import (DOCKER_LABEL, FORWARDED_ENV, DockerGpus, DockerNetwork, DockerOptions,
                            DockerUnavailable, Runner, check_docker, docker_network, docker_run_kwargs, image_user,
                            make_runner, prepare_pipeline_root, run_local)

NO_DAEMON = {"DOCKER_HOST": "unix:///nonexistent/wakeline-test/docker.sock"}


def test_subprocess_runner_is_the_venv_runner():
    runner = make_runner(Runner.SUBPROCESS)
    assert isinstance(runner, local.SubprocessRunner) and runner.use_venv is False
    with pytest.raises(ValueError, match="subprocess"):
        make_runner(Runner.SUBPROCESS, {"user": "0:0"})


def test_docker_runner_without_gpus(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "AWS_ACCESS_KEY_ID": "k", "AWS_REGION": "",
           "PATH": "/usr/bin", "HOME": "/root"}
    kwargs = docker_run_kwargs(DockerGpus.NONE, tmp_path / "run" / "kfp", "1001:1001", env)
    runner = make_runner(Runner.DOCKER, kwargs)  # kfp validates every key against docker's containers.run
    assert isinstance(runner, local.DockerRunner)
    args = runner.container_run_args
    root = str((tmp_path / "run" / "kfp").resolve())
    assert args["user"] == "1001:1001" and args["working_dir"] == f"{root}/.wakeline"
    # no mount of ours: kfp.local mounts the pipeline root, and that is all a container sees
    assert "mounts" not in args and "volumes" not in args
    assert args["network_mode"] == "none" and args["labels"] == {DOCKER_LABEL: root}
    # only the variables the stages read, and only when set; HOME is the container's own
    assert args["environment"] == {"HOME": "/tmp", "MLFLOW_TRACKING_URI": "http://mlflow:5000",
                                   "AWS_ACCESS_KEY_ID": "k"}
    assert "device_requests" not in args


def test_docker_runner_with_all_gpus(tmp_path):
    runner = make_runner(Runner.DOCKER, docker_run_kwargs(DockerGpus.ALL, tmp_path, None, {}, DockerNetwork.HOST))
    args = runner.container_run_args
    assert args["device_requests"] == [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    assert "user" not in args  # None: the image's own user
    assert args["network_mode"] == "host"


def test_the_network_is_none_unless_the_run_talks_to_a_server():
    assert docker_network('{"seed": 0}', {"MLFLOW_TRACKING_URI": "sqlite:///runs/mlflow.db"}) is DockerNetwork.NONE
    assert docker_network('{"publish": {"store": "s3://models/wakeline"}}', {}) is DockerNetwork.HOST
    assert docker_network("{}", {"AWS_ENDPOINT_URL_S3": "http://10.0.0.2:8333"}) is DockerNetwork.HOST
    assert docker_network("{}", {"MLFLOW_TRACKING_URI": "https://mlflow.example"}) is DockerNetwork.HOST


def test_image_user_must_be_numeric_and_not_root():
    assert image_user("1000:1000", "img") == (1000, 1000)
    for bad in ("", "0:0", "wakeline", "1000", "root:root"):
        with pytest.raises(DockerUnavailable, match="img"):
            image_user(bad, "img")


def test_pipeline_root_goes_to_the_image_user(tmp_path):
    import os

    root = tmp_path / "run" / "kfp"
    prepare_pipeline_root(root, None)
    made = (root, root / ".wakeline", root / ".kfp-workspace")
    assert all(p.is_dir() and p.stat().st_uid == os.getuid() for p in made)
    if os.geteuid() == 0:
        prepare_pipeline_root(root, (1000, 1000))
        assert [(p.stat().st_uid, p.stat().st_gid) for p in made] == [(1000, 1000)] * 3


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
    assert main(["run", "--preset", "smoke", "--cpu-image-only", "--network", "host", "--runs-dir", str(tmp_path)]) == 2
    assert "--cpu-image-only, --network: only for --runner docker" in capsys.readouterr().err


def test_cpu_image_only_runs_every_stage_in_the_cpu_image():
    images = Images.for_version("1.2.3", "reg.example").cpu_only()
    assert images.cpu == images.gpu == "reg.example/wakeline-cpu:1.2.3"


def test_a_task_whose_container_output_was_lost_fails_the_run(tmp_path):
    """kfp#13332: DockerRunner calls a container removed before its exit code was read a success. The executor's
    last line, printed from inside the container, is what proves the task ran to the end."""
    from pipeline.local import ContainerOutputLost, StageFailed, check_container_outputs

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pipeline.log").write_text("Pipeline 'wakeline' finished with status SUCCESS\n")
    (logs / "data-prep.log").write_text("[KFP Executor]: Wrote executor output file to /x/executor_output.json.\n"
                                        "Task 'data-prep' finished with status SUCCESS\n")
    check_container_outputs(tmp_path)  # a whole run: nothing to say
    (logs / "publish.log").write_text("Found image 'img'\nTask 'publish' finished with status SUCCESS\n")
    with pytest.raises(ContainerOutputLost) as err:
        check_container_outputs(tmp_path)
    assert isinstance(err.value, StageFailed) and err.value.task == "publish"  # the CLI's exit 3, its log named
    assert "#13332" in str(err.value) and str(logs / "publish.log") in str(err.value)
