"""`components.common.tracking`: one MLflow run per stage, on the embedded SQLite store and on a real server."""
from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest

from components.common import tracking
from components.common.tracking import stage_run, tracking_uri

SEED = 1234
STEPS = 5
# MLflow 3.17's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1 deprecates: third-party noise.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
PARAMS = {"wake_word": "hey jarvis", "training": {"epochs": 3, "optimizer": {"lr": 0.001}}, "notes": "x" * 7000}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fresh cwd, no inherited tracking settings, no MLflow telemetry, no proxies for loopback."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", tracking.STRICT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def shared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the tests that do not test the default location (creating a store takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-sqlite') / 'mlflow.db'}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _run_stage(tmp_path: Path, experiment: str) -> tuple[str, dict[str, list[float]]]:
    """A tracked fake stage: params, per-step metrics, one file, one dict and a model directory."""
    rng = random.Random(SEED)
    (tmp_path / "notes.txt").write_text("hello from the stage\n")
    model_dir = tmp_path / "saved_model"
    (model_dir / "variables").mkdir(parents=True)
    (model_dir / "saved_model.pb").write_bytes(b"\x08\x01")
    (model_dir / "variables" / "variables.index").write_bytes(b"idx")
    logged: dict[str, list[float]] = {"loss": [], "accuracy": []}
    with stage_run("teacher_training", experiment, PARAMS, tags={"wakeline.wake_word": "hey jarvis"}) as run:
        for step in range(STEPS):
            values = {"loss": rng.uniform(0, 1), "accuracy": rng.uniform(0, 1)}
            run.log_metrics(values, step=step)
            for k, v in values.items():
                logged[k].append(v)
        run.log_artifact(tmp_path / "notes.txt")
        run.log_dict({"recall": 0.9}, "summary.json")
        run.log_keras_model(model_dir)
        run_id = run.run_id
    assert run_id
    return run_id, logged


def _check_run(uri: str, run_id: str, experiment: str, logged: dict[str, list[float]], tmp_path: Path) -> None:
    client = _client(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "teacher_training"
    assert client.get_experiment(run.info.experiment_id).name == experiment
    assert run.data.tags["wakeline.stage"] == "teacher_training"
    assert run.data.tags["wakeline.wake_word"] == "hey jarvis"
    params = run.data.params
    assert params["wake_word"] == "hey jarvis"
    assert params["training.epochs"] == "3"
    assert params["training.optimizer.lr"] == "0.001"
    assert len(params["notes"]) == tracking.MAX_PARAM_VALUE_CHARS and params["notes"].endswith("...")
    for key, values in logged.items():
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(STEPS))
        assert [m.value for m in history] == pytest.approx(values)
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert {"notes.txt", "summary.json", "model"} <= listed
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/saved_model.pb", "model/variables"}
    dst = tmp_path / "download"
    dst.mkdir()
    assert Path(client.download_artifacts(run_id, "notes.txt", str(dst))).read_text() == "hello from the stage\n"
    assert json.loads(Path(client.download_artifacts(run_id, "summary.json", str(dst))).read_text()) == {"recall": 0.9}
    model = Path(client.download_artifacts(run_id, "model", str(dst)))
    assert (model / "variables" / "variables.index").read_bytes() == b"idx"


def test_tracking_uri_defaults_to_sqlite_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"


def test_flatten_params() -> None:
    flat = tracking.flatten_params({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": {}, "g": "y" * 6001})
    assert flat["a.b.c"] == "1" and flat["a.d"] == "[1, 2]" and flat["e"] == "None" and flat["f"] == "{}"
    assert len(flat["g"]) == tracking.MAX_PARAM_VALUE_CHARS


def test_stage_run_on_embedded_sqlite(tmp_path: Path) -> None:
    experiment = "wakeline/hey jarvis"
    run_id, logged = _run_stage(tmp_path, experiment)
    uri = tracking_uri()
    assert uri.startswith("sqlite:///") and (tmp_path / "runs" / "mlflow.db").is_file()
    _check_run(uri, run_id, experiment, logged, tmp_path)
    assert (tmp_path / "runs" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_failing_stage_marks_run_failed_and_reraises(shared_sqlite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_sqlite)
    with pytest.raises(ValueError, match="boom"):
        with stage_run("augmentation", "wakeline/failing", {"seed": SEED}) as run:
            run_id = run.run_id
            raise ValueError("boom")
    assert _client(tracking_uri()).get_run(run_id).info.status == "FAILED"


def test_tracking_error_mid_stage_is_a_warning(shared_sqlite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_sqlite)
    with stage_run("data_prep", "wakeline/mid-stage", {}) as run:
        run.log_artifact(tmp_path / "missing.txt")
        run.log_metrics({"after": 1.0})  # a no-op now
        result = "trained"
    assert result == "trained"
    assert "log_artifact failed" in capsys.readouterr().err
    client = _client(tracking_uri())
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert client.get_metric_history(run.run_id, "after") == []


def test_tracking_error_mid_stage_raises_when_strict(shared_sqlite: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_sqlite)
    monkeypatch.setenv(tracking.STRICT_ENV, "1")
    with pytest.raises(FileNotFoundError):
        with stage_run("data_prep", "wakeline/mid-stage-strict", {}) as run:
            run.log_artifact(tmp_path / "missing.txt")
    assert _client(tracking_uri()).get_run(run.run_id).info.status == "FAILED"


@pytest.fixture
def unreachable_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI pointing at a loopback port nothing listens on; MLflow told not to retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return uri


def test_unreachable_server_continues_untracked(unreachable_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    with stage_run("teacher_training", "wakeline/offline", PARAMS) as run:  # no retries: MAX_RETRIES=0
        run.log_metrics({"loss": 0.5}, step=0)
        run.log_dict({"a": 1}, "a.json")
        result = "trained"
    assert result == "trained" and run.run_id is None
    err = capsys.readouterr().err
    assert "could not start an MLflow run" in err and unreachable_server in err


def test_unreachable_server_raises_when_strict(unreachable_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv(tracking.STRICT_ENV, "1")
    entered = False
    with pytest.raises(MlflowException):
        with stage_run("teacher_training", "wakeline/offline", PARAMS):
            entered = True
    assert not entered


@pytest.mark.slow
def test_stage_run_on_server(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    experiment = "wakeline/hey jarvis"
    run_id, logged = _run_stage(tmp_path, experiment)
    _check_run(mlflow_server, run_id, experiment, logged, tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing fell back to the embedded store


@pytest.mark.slow
def test_failing_stage_on_server(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with pytest.raises(RuntimeError, match="boom"):
        with stage_run("augmentation", "wakeline/failing", {"seed": SEED}) as run:
            run_id = run.run_id
            raise RuntimeError("boom")
    assert _client(mlflow_server).get_run(run_id).info.status == "FAILED"
