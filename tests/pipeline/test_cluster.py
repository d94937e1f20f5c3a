"""submit / schedule / runs without a cluster: the exact kfp.Client calls, checked against kfp.Client's real
signatures by a recording fake client, plus cron validation and the kfp CLI equivalents."""
import datetime as dt
import inspect
import json
import shlex

import kfp
import kfp_server_api as api
import pytest
from kfp.cli import pipeline as kfp_pipeline_cli
from kfp.cli import recurring_run as kfp_recurring_run_cli
from kfp.cli import run as kfp_run_cli
from kfp.cli.utils.parsing import parse_parameter_value

from components.common.config import Stage, load_config, memory_bytes, resolve_pipeline_config
from pipeline import cluster
from pipeline.cli import main

NOW = dt.datetime(2026, 7, 22, 3, 15, 0)


class RecordingClient:
    """Stands in for kfp.Client: every call must bind to the real method's signature; answers are real
    kfp_server_api models, so attribute names are checked too."""

    def __init__(self, existing_pipeline_id: str | None = None, runs: list | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.existing_pipeline_id = existing_pipeline_id
        self.runs = runs or []

    def __getattr__(self, method: str):
        real = getattr(kfp.Client, method)  # AttributeError for a method kfp.Client does not have

        def call(*args, **kwargs):
            bound = inspect.signature(real).bind(None, *args, **kwargs)  # TypeError for an unknown argument
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            self.calls.append((method, arguments))
            return getattr(self, f"_answer_{method}")(**arguments)
        return call

    def _answer_get_pipeline_id(self, name):
        return self.existing_pipeline_id

    def _answer_upload_pipeline(self, **_):
        return api.V2beta1Pipeline(pipeline_id="p-new", display_name="wakeline")

    def _answer_list_pipeline_versions(self, **_):
        return api.V2beta1ListPipelineVersionsResponse(
            pipeline_versions=[api.V2beta1PipelineVersion(pipeline_id="p-new", pipeline_version_id="v-first")])

    def _answer_upload_pipeline_version(self, pipeline_id, **_):
        return api.V2beta1PipelineVersion(pipeline_id=pipeline_id, pipeline_version_id="v-next")

    def _answer_create_experiment(self, name, **_):
        return api.V2beta1Experiment(experiment_id="e-1", display_name=name)

    def _answer_get_experiment(self, experiment_name, **_):
        return api.V2beta1Experiment(experiment_id="e-9", display_name=experiment_name)

    def _answer_run_pipeline(self, **_):
        return api.V2beta1Run(run_id="r-42", display_name="hey-jarvis")

    def _answer_create_recurring_run(self, **_):
        return api.V2beta1RecurringRun(recurring_run_id="rr-7")

    def _answer_list_runs(self, **_):
        return api.V2beta1ListRunsResponse(runs=self.runs or None)

    @property
    def methods(self) -> list[str]:
        return [name for name, _ in self.calls]

    def kwargs(self, method: str) -> dict:
        return next(args for name, args in self.calls if name == method)


@pytest.fixture(scope="module")
def smoke():
    return load_config("smoke")


def _release(tmp_path) -> cluster.Release:
    return cluster.Release(tmp_path / "wakeline.yaml", "wakeline", "0.1.0-20260722-031500")


def _request(config, **overrides) -> cluster.RunRequest:
    fields = {"experiment": "wakeline", "name": "hey-jarvis-20260722-031500",
              "params": cluster.run_parameters(config, "smoke"), **overrides}
    return cluster.RunRequest(**fields)


# --------------------------------------------------------------------------------------------------
# the run form


def test_run_parameters_make_the_first_task_rebuild_exactly_this_config(smoke):
    params = cluster.run_parameters(smoke, "smoke")
    assert set(params) == {"preset", "wake_word", "config_json"}  # the pipeline's parameters, all strings
    assert all(isinstance(v, str) for v in params.values())
    rebuilt = resolve_pipeline_config(params["config_json"], params["preset"], params["wake_word"])
    assert rebuilt == smoke


def test_scheduled_mining_scores_with_the_production_model(smoke):
    scheduled = cluster.with_production_scorer(smoke)
    assert scheduled.mining.previous_model == "models:/wakeline-hey-jarvis@production"
    assert scheduled.model_copy(update={"mining": smoke.mining}) == smoke  # nothing else changes
    named = load_config("smoke", overrides=["publish.registered_model_name=kitchen-jarvis"])
    assert cluster.with_production_scorer(named).mining.previous_model == "models:/kitchen-jarvis@production"
    nabu = load_config("smoke", wake_word="okay nabu")
    assert cluster.production_model_uri(nabu) == "models:/wakeline-okay-nabu@production"


def test_names_and_links():
    config = load_config("smoke", wake_word="Hey, Jarvis!")
    assert cluster.run_name(config, NOW) == "hey-jarvis-20260722-031500"
    assert cluster.schedule_name(config) == "hey-jarvis-retraining"
    assert cluster.pipeline_version_name("0.1.0", NOW) == "0.1.0-20260722-031500"
    assert cluster.run_url("http://localhost:8080/", "r-1") == "http://localhost:8080/#/runs/details/r-1"
    assert cluster.recurring_run_url("kfp.example.com", "rr-1") == "http://kfp.example.com/#/recurringrun/details/rr-1"


# --------------------------------------------------------------------------------------------------
# cron


@pytest.mark.parametrize("expression", ["0 0 3 * * *", "*/30 * * * * ?", "0 15 10 ? * MON-FRI",
                                        "0 0 0 1,15 * *", "0 0 */6 * * *", "0 0 2 * jan-mar sun",
                                        "  0  0 3 * * *  "])
def test_valid_six_field_cron(expression):
    assert cluster.validate_cron(expression) == " ".join(expression.split())


@pytest.mark.parametrize("expression, message", [
    ("0 3 * * *", "KFP takes 6 fields"),  # the 5-field crontab form
    ("0 0 3 * * * 2026", "got 7"),
    ("0 61 3 * * *", "minute field '61'"),
    ("0 0 24 * * *", "hour field '24'"),
    ("0 0 ? * * *", "hour field '?'"),
    ("0 0 3 0 * *", "day of month field '0'"),
    ("0 0 3 * 13 *", "month field '13'"),
    ("0 0 3 * * 7", "day of week field '7'"),
    ("0 0 5-3 * * *", "runs backwards"),
    ("0 */0 * * * *", "step '0'"),
    ("0 0 3 * * MON-XYZ", "not a value"),
    ("@daily x y z w v", "second field '@daily'"),
])
def test_invalid_cron_names_the_field(expression, message):
    with pytest.raises(cluster.ClusterError, match="--cron") as err:
        cluster.validate_cron(expression)
    assert message in str(err.value)


# --------------------------------------------------------------------------------------------------
# the kfp.Client calls


def test_every_call_builder_binds_to_the_real_client(smoke, tmp_path):
    release, request = _release(tmp_path), _request(smoke, namespace="team-a", pipeline_root="s3://b/wakeline")
    version = cluster.PipelineVersion("p", "v")
    calls = [cluster.find_pipeline_call("wakeline"), cluster.upload_pipeline_call(release),
             cluster.newest_version_call("p"), cluster.upload_version_call(release, "p"),
             cluster.experiment_call(request), cluster.run_call(request, "e", version),
             cluster.recurring_run_call(request, "e", version, "0 0 3 * * *"),
             cluster.find_experiment_call("wakeline", "team-a"), cluster.list_runs_call(5, "team-a", "e")]
    for call in calls:
        inspect.signature(getattr(kfp.Client, call.method)).bind(None, **call.kwargs)
    inspect.signature(kfp.Client).bind(**cluster.client_kwargs("http://h", "team-a"))
    assert cluster.client_kwargs("http://h", None) == {"host": "http://h"}


def test_submit_first_upload_creates_the_pipeline_then_runs_its_version(smoke, tmp_path):
    client = RecordingClient(existing_pipeline_id=None)
    request = _request(smoke, pipeline_root="s3://team/wakeline")
    done = cluster.submit(client, "http://localhost:8080", _release(tmp_path), request)
    assert client.methods == ["get_pipeline_id", "upload_pipeline", "list_pipeline_versions", "create_experiment",
                              "run_pipeline"]
    assert client.kwargs("upload_pipeline")["pipeline_name"] == "wakeline"
    run = client.kwargs("run_pipeline")
    assert run == {"experiment_id": "e-1", "job_name": "hey-jarvis-20260722-031500", "params": request.params,
                   "pipeline_id": "p-new", "version_id": "v-first", "pipeline_root": "s3://team/wakeline"}
    assert done == cluster.Submitted("r-42", "http://localhost:8080/#/runs/details/r-42",
                                     cluster.PipelineVersion("p-new", "v-first"))


def test_submit_uploads_a_new_version_of_an_existing_pipeline(smoke, tmp_path):
    client = RecordingClient(existing_pipeline_id="p-old")
    release = _release(tmp_path)
    cluster.submit(client, "http://localhost:8080", release, _request(smoke, namespace="team-a"))
    assert client.methods == ["get_pipeline_id", "upload_pipeline_version", "create_experiment", "run_pipeline"]
    assert client.kwargs("upload_pipeline_version") == {"pipeline_package_path": str(release.package),
                                                        "pipeline_version_name": "0.1.0-20260722-031500",
                                                        "pipeline_id": "p-old"}
    assert client.kwargs("create_experiment") == {"name": "wakeline", "namespace": "team-a"}
    run = client.kwargs("run_pipeline")
    assert (run["pipeline_id"], run["version_id"], run["pipeline_root"]) == ("p-old", "v-next", None)


def test_schedule_creates_one_recurring_run_at_a_time_without_catch_up(smoke, tmp_path):
    client = RecordingClient(existing_pipeline_id="p-old")
    config = cluster.with_production_scorer(smoke)
    request = _request(config, name="hey-jarvis-retraining")
    done = cluster.schedule(client, "http://localhost:8080", _release(tmp_path), request, "0 0 3 * * *")
    assert client.methods == ["get_pipeline_id", "upload_pipeline_version", "create_experiment",
                              "create_recurring_run"]
    recurring = client.kwargs("create_recurring_run")
    assert recurring["cron_expression"] == "0 0 3 * * *"
    assert recurring["max_concurrency"] == 1 and recurring["no_catchup"] is True and recurring["enabled"] is True
    assert (recurring["pipeline_id"], recurring["version_id"], recurring["job_name"]) == (
        "p-old", "v-next", "hey-jarvis-retraining")
    sent = json.loads(recurring["params"]["config_json"])
    assert sent["mining"]["previous_model"] == "models:/wakeline-hey-jarvis@production"
    assert done.url == "http://localhost:8080/#/recurringrun/details/rr-7"


def test_schedule_with_a_bad_cron_sends_nothing(smoke, tmp_path):
    client = RecordingClient(existing_pipeline_id="p-old")
    with pytest.raises(cluster.ClusterError, match="6 fields"):
        cluster.schedule(client, "http://h", _release(tmp_path), _request(smoke), "0 3 * * *")
    assert client.calls == []


def test_recent_runs_newest_first_with_state():
    created = dt.datetime(2026, 7, 22, 3, 0, tzinfo=dt.timezone.utc)
    runs = [api.V2beta1Run(run_id="r-2", display_name="hey-jarvis-b", state="RUNNING", created_at=created,
                           finished_at=dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), recurring_run_id="rr-7"),
            api.V2beta1Run(run_id="r-1", display_name="hey-jarvis-a", state="SUCCEEDED", created_at=created,
                           finished_at=created + dt.timedelta(hours=2))]
    client = RecordingClient(runs=runs)
    rows = cluster.recent_runs(client, limit=5, namespace="team-a", experiment="wakeline")
    assert client.methods == ["get_experiment", "list_runs"]
    assert client.kwargs("get_experiment") == {"experiment_name": "wakeline", "namespace": "team-a"}
    assert client.kwargs("list_runs") == {"page_size": 5, "sort_by": "created_at desc", "experiment_id": "e-9",
                                          "namespace": "team-a"}
    assert [(r.run_id, r.state, r.finished_at) for r in rows] == [
        ("r-2", "RUNNING", ""), ("r-1", "SUCCEEDED", "2026-07-22 05:00:00Z")]
    table = cluster.format_runs(rows).splitlines()
    assert table[0].split()[:2] == ["STATE", "CREATED"] and table[1].startswith("RUNNING ")
    assert "rr-7" in table[1] and table[2].startswith("SUCCEEDED")
    assert cluster.format_runs([]) == "no runs"
    empty = RecordingClient()
    assert cluster.recent_runs(empty) == [] and empty.methods == ["list_runs"]
    with pytest.raises(cluster.ClusterError, match="--limit"):
        cluster.list_runs_call(0, None)


def test_an_api_error_names_the_call(smoke, tmp_path):
    class Refusing(RecordingClient):
        def _answer_upload_pipeline_version(self, **_):
            raise api.ApiException(status=409, reason="Conflict")

    with pytest.raises(cluster.ClusterError, match="KFP API refused upload_pipeline_version: 409 Conflict"):
        cluster.submit(Refusing(existing_pipeline_id="p-old"), "http://h", _release(tmp_path), _request(smoke))


def test_unreachable_api_is_a_clear_error():
    with pytest.raises(cluster.ClusterError, match="port-forward svc/ml-pipeline-ui"):
        cluster.connect("http://127.0.0.1:9")


# --------------------------------------------------------------------------------------------------
# the same with the kfp CLI: the lines parse with kfp's own click commands and value parsing


def _parse(command, line: str, skip: int):
    argv = shlex.split(line)[skip:]
    return command.make_context(command.name, argv).params


def test_kfp_run_create_line_passes_config_json_as_the_same_string(smoke):
    request = _request(smoke, namespace="team-a")
    line = cluster.kfp_cli_run_create("http://localhost:8080", request, "wakeline", "v-1")
    assert shlex.split(line)[:5] == ["kfp", "--endpoint", "http://localhost:8080", "--namespace", "team-a"]
    params = _parse(kfp_run_cli.run.commands["create"], line, skip=7)  # after `kfp ... run create`
    assert (params["experiment_name"], params["run_name"], params["pipeline_name"], params["version"]) == (
        "wakeline", request.name, "wakeline", "v-1")
    parsed = dict(arg.split("=", 1) for arg in params["args"])
    assert {k: parse_parameter_value(v) for k, v in parsed.items()} == request.params  # strings stay strings
    assert parsed["config_json"].startswith('"{')  # a JSON string literal, not an object


def test_kfp_recurring_run_and_upload_lines_parse(smoke, tmp_path):
    request = _request(smoke)
    line = cluster.kfp_cli_recurring_run_create("http://h", request, "0 0 3 * * *", "p-1", "v-1")
    params = _parse(kfp_recurring_run_cli.recurring_run.commands["create"], line, skip=5)
    assert params["cron_expression"] == "0 0 3 * * *" and params["max_concurrency"] == 1
    assert params["catchup"] is False and (params["pipeline_id"], params["version_id"]) == ("p-1", "v-1")
    assert dict(arg.split("=", 1) for arg in params["args"]) == request.params  # recurring-run passes them as is
    release = _release(tmp_path)
    release.package.write_text("# the compiled IR\n")  # click checks that the package file exists
    upload = _parse(kfp_pipeline_cli.pipeline.commands["create-version"],
                    cluster.kfp_cli_upload("http://h", release, first_upload=False), skip=5)
    assert (upload["pipeline_name"], upload["pipeline_version"], upload["package_file"]) == (
        "wakeline", release.version_name, str(release.package))
    first = _parse(kfp_pipeline_cli.pipeline.commands["create"],
                   cluster.kfp_cli_upload("http://h", release, first_upload=True), skip=5)
    assert first["pipeline_name"] == "wakeline"


def test_describe_call_shortens_long_values(smoke):
    call = cluster.run_call(_request(smoke), "e", cluster.PipelineVersion("p", "v"))
    text = cluster.describe_call(call)
    assert text.startswith("run_pipeline(experiment_id='e', job_name=")
    assert "chars>" in text and len(text) < 800


# --------------------------------------------------------------------------------------------------
# the CLI, without a cluster


def test_cli_submit_dry_run_compiles_and_prints_the_calls(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["submit", "--preset", "smoke", "--dry-run", "--gpus-per-task", "0",
               "--pipeline-root", "minio://mlpipeline/wakeline", "--namespace", "team-a"])
    out = capsys.readouterr().out
    assert rc == 0
    packages = list((tmp_path / "runs" / "cluster").glob("*.yaml"))
    assert len(packages) == 1 and "nvidia.com/gpu" not in packages[0].read_text()
    assert "defaultPipelineRoot: minio://mlpipeline/wakeline" in packages[0].read_text()
    assert "run_pipeline(experiment_id='<EXPERIMENT_ID>'" in out
    assert "pipeline_root='minio://mlpipeline/wakeline'" in out
    assert "kfp --endpoint http://localhost:8080 --namespace team-a run create" in out


def test_cli_schedule_rejects_a_five_field_cron_before_compiling(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["schedule", "--preset", "smoke", "--cron", "0 3 * * *", "--dry-run"])
    assert rc == 2  # a usage error (1 is the gate failing)
    assert "6 fields" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_compile_takes_the_kubernetes_section_of_the_config(tmp_path, capsys):
    user = tmp_path / "cluster.yaml"
    user.write_text("kubernetes:\n  gpu_node_selector: {nvidia.com/gpu.present: 'true'}\n"
                    "  resources: {distillation: {memory_limit: 48Gi}}\n")
    out = tmp_path / "ir.yaml"
    assert main(["compile", "--config", str(user), "--output", str(out)]) == 0
    text = out.read_text()
    assert "nvidia.com/gpu.present" in text and "resourceMemoryLimit: 48Gi" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("kubernetes:\n  resources: {distillation: {memory_request: 8GB}}\n")
    assert main(["compile", "--config", str(bad), "--output", str(out)]) == 2
    assert "kubernetes.resources.distillation.memory_request" in capsys.readouterr().err


def test_production_preset_sizes_its_stages_larger():
    default, production = load_config("default").kubernetes, load_config("production").kubernetes

    grown = [s for s in Stage if memory_bytes(production.resources.for_stage(s).memory_request)
             > memory_bytes(default.resources.for_stage(s).memory_request)]
    assert {Stage.AUGMENTATION, Stage.TEACHER_TRAINING, Stage.DISTILLATION, Stage.DATA_PREP} <= set(grown)
    assert production.resources.publish == default.resources.publish  # unnamed stages keep their defaults


def test_cli_submit_refuses_state_paths_outside_the_state_volume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    volume = "kubernetes.state_volume={pvc_name: wakeline-state, mount_path: /mnt/wakeline-state}"
    rc = main(["submit", "--preset", "smoke", "--dry-run", "--set", volume])  # smoke keeps runs/checkpoints
    err = capsys.readouterr().err
    assert rc == 2
    assert "training.checkpoint_root 'runs/checkpoints' is not under kubernetes.state_volume.mount_path" in err
    assert "mining.session_root 'runs/mining' is not under" in err
    assert not (tmp_path / "runs").exists()  # refused before compiling
    inside = ["--set", "training.checkpoint_root=/mnt/wakeline-state/checkpoints",
              "--set", "mining.session_root=/mnt/wakeline-state/mining"]
    assert main(["submit", "--preset", "smoke", "--dry-run", "--set", volume, *inside]) == 0
    # compile only warns: the IR it writes may run with another config
    out = tmp_path / "ir.yaml"
    assert main(["compile", "--preset", "smoke", "--set", volume, "--output", str(out)]) == 0
    assert "warning: training.checkpoint_root 'runs/checkpoints'" in capsys.readouterr().err
    assert "mountPath: /mnt/wakeline-state" in out.read_text()
