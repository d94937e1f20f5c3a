"""publish: a blessed model into a content-addressed store (a directory, or a real SeaweedFS S3 server) and the
MLflow registry (a real MLflow server); `promote` moves `production`, which the mining scorer then loads."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.common.artifacts import sha256_file
from components.common.config import ConfigError, load_config
from components.publish.stage import BLESSING, CASCADE, REPORT, Upstream, run
from components.publish.store import DIGEST_CHARS, PublishError
from pipeline.cli import main
from components.common.jsonio import loads_strict
from tests.chain_factory import FIXTURES, build_run, verify_fixture
from tests.strict_json import strict_files

# MLflow 3.17's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1 deprecates: third-party noise.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
NAME = "wakeline-hey-jarvis"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh working directory; no inherited tracking or S3 settings; loopback without proxies."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "WAKELINE_TRACKING_STRICT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _config(*overrides: str):
    return load_config("smoke", overrides=list(overrides))


def _inputs(tmp_path: Path, model: str = "hey_jarvis") -> dict[str, Upstream]:
    """Only what is published: the model folder, its blessing and its report."""
    model_dir, blessing, report, verdict = verify_fixture(model, tmp_path / f"in-{model}")
    md = {"tflite": f"{model}.tflite"}
    return {"tflite_model": Upstream(model_dir, md), "blessing": Upstream(blessing, verdict),
            "report": Upstream(report)}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_publish_to_a_directory_is_content_addressed_and_idempotent(tmp_path):
    config = _config(f"publish.store={tmp_path / 'store'}", "publish.registry=off")
    jarvis = _inputs(tmp_path)
    sha = sha256_file(FIXTURES / "hey_jarvis.tflite")
    first = run(jarvis, tmp_path / "record-1", config, {"pipeline_run": "run-1"})

    folder = tmp_path / "store" / "hey-jarvis" / sha[:DIGEST_CHARS]
    assert first["location"] == str(folder) and first["sha256"] == sha and not first["already_published"]
    assert first["registry_status"] == "off" and first["model_version"] == ""
    assert sha256_file(folder / "hey_jarvis.tflite") == sha
    assert sha256_file(folder / "hey_jarvis.json") == sha256_file(FIXTURES / "hey_jarvis.json")
    assert (folder / REPORT).read_bytes() == jarvis["report"].path.read_bytes()
    assert json.loads((folder / BLESSING).read_text())["blessed"] is True
    complete = json.loads((folder / "published.json").read_text())
    assert complete["sha256"] == sha and complete["pipeline_run"] == "run-1"
    assert complete["files"] == {p.relative_to(folder).as_posix(): sha256_file(p)
                                 for p in folder.rglob("*") if p.is_file() and p.name != "published.json"}
    assert json.loads((tmp_path / "record-1").read_text()) == first
    versions = (tmp_path / "store" / "hey-jarvis" / "versions.jsonl").read_text().splitlines()
    assert len(versions) == 1 and json.loads(versions[0])["folder"] == sha[:DIGEST_CHARS]
    assert json.loads((tmp_path / "store" / "hey-jarvis" / "latest.json").read_text())["sha256"] == sha
    parsed = strict_files(tmp_path / "store")  # strict JSON: no bare NaN anywhere in what is published
    assert folder / "published.json" in parsed and folder / BLESSING in parsed
    assert loads_strict((tmp_path / "record-1").read_text()) == first

    before = _mtimes(folder)
    again = run(jarvis, tmp_path / "record-2", config, {"pipeline_run": "run-2"})
    assert again["already_published"] and not again["index_added"] and again["location"] == first["location"]
    assert _mtimes(folder) == before  # not one file rewritten
    assert json.loads((folder / "published.json").read_text())["pipeline_run"] == "run-1"
    assert (tmp_path / "store" / "hey-jarvis" / "versions.jsonl").read_text().splitlines() == versions

    other = _inputs(tmp_path, "okay_nabu")  # another model of the same wake word: a second folder
    third = run(other, tmp_path / "record-3", config, {"pipeline_run": "run-3"})
    other_sha = sha256_file(FIXTURES / "okay_nabu.tflite")
    assert third["key"] == f"hey-jarvis/{other_sha[:DIGEST_CHARS]}" and third["index_added"]
    index = [json.loads(line) for line in (tmp_path / "store" / "hey-jarvis" / "versions.jsonl").read_text().splitlines()]
    assert [v["sha256"] for v in index] == [sha, other_sha]
    assert json.loads((tmp_path / "store" / "hey-jarvis" / "latest.json").read_text())["sha256"] == other_sha
    assert sorted(p.name for p in (tmp_path / "store" / "hey-jarvis").iterdir()) == sorted(
        [sha[:DIGEST_CHARS], other_sha[:DIGEST_CHARS], "latest.json", "versions.jsonl"])


def test_the_cascade_judge_and_its_operating_point_are_published_beside_the_model(tmp_path):
    config = _config(f"publish.store={tmp_path / 'store'}", "publish.registry=off")
    frozen = build_run(tmp_path, config)
    out = run(frozen.upstream, tmp_path / "record", config)
    folder = Path(out["location"])
    teacher_a = frozen.upstream["teacher_a"].path
    assert (folder / "judge" / "model.keras").read_bytes() == (teacher_a / "model.keras").read_bytes()
    assert (folder / CASCADE).read_bytes() == frozen.upstream["cascade"].path.read_bytes()
    point = json.loads((folder / CASCADE).read_text())["operating_point"]
    assert (point["sentry_cutoff"], point["judge_cutoff"], point["judge_context_s"], point["judge_after_s"]) == (
        0.62, 0.5, 2.0, 0.3)
    assert out["files"]["judge/model.keras"] == sha256_file(teacher_a / "model.keras")
    assert out["inputs"]["cascade"] == sha256_file(folder / CASCADE)
    entry = json.loads((tmp_path / "store" / "hey-jarvis" / "latest.json").read_text())
    assert entry["judge"] == "teacher_a" and entry["cascade"] == {"sentry_cutoff": 0.62, "judge_cutoff": 0.5,
                                                                  "frr": 0.05, "fa_per_hour": 0.0}


def test_a_cascade_of_another_model_or_judge_is_refused(tmp_path):
    config = _config(f"publish.store={tmp_path / 'store'}", "publish.registry=off")
    frozen = build_run(tmp_path, config)
    doc = json.loads(frozen.upstream["cascade"].path.read_text())
    other = tmp_path / "other-cascade.json"
    other.write_text(json.dumps({**doc, "sentry": {**doc["sentry"], "sha256": "ab" * 32}}))
    with pytest.raises(PublishError, match="the cascade evaluation is for the model abab"):
        run({**frozen.upstream, "cascade": Upstream(other)}, tmp_path / "record", config)
    other.write_text(json.dumps({**doc, "judge": {**doc["judge"], "role": "teacher_b"}}))  # b's weights differ
    with pytest.raises(PublishError, match="its model.keras is not the judge the cascade evaluated"):
        run({**frozen.upstream, "cascade": Upstream(other)}, tmp_path / "record", config)
    assert not (tmp_path / "store").exists()


def test_a_relative_store_is_taken_from_the_working_directory(tmp_path):
    out = run(_inputs(tmp_path), tmp_path / "record", _config("publish.registry=off"))  # default runs/published
    assert out["store"] == str(tmp_path / "runs" / "published")
    assert (tmp_path / "runs" / "published" / "hey-jarvis" / out["key"].split("/")[1] / "hey_jarvis.tflite").is_file()


def test_in_a_pod_a_relative_store_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(PublishError, match="relative directory, which in a pod is the container's own disk"):
        run(_inputs(tmp_path), tmp_path / "record", _config("publish.registry=off"))
    assert not (tmp_path / "runs").exists()


def test_only_a_blessing_of_this_very_model_is_published(tmp_path):
    config = _config(f"publish.store={tmp_path / 'store'}", "publish.registry=off")
    jarvis, alexa = _inputs(tmp_path), _inputs(tmp_path, "alexa")
    with pytest.raises(PublishError, match="the blessing is for"):
        run({**jarvis, "blessing": alexa["blessing"]}, tmp_path / "record", config)
    verdict = json.loads(jarvis["blessing"].path.read_text())
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps({**verdict, "blessed": False, "reasons": ["FA/h 3.1 exceeds the target 2.0"]}))
    with pytest.raises(PublishError, match=r"not blessed \(FA/h 3.1 exceeds the target 2.0\)"):
        run({**jarvis, "blessing": Upstream(refused)}, tmp_path / "record", config)
    assert not (tmp_path / "store").exists() and not (tmp_path / "record").exists()


def test_publish_config_is_checked_before_any_stage():
    assert _config().publish.store == "runs/published" and _config().publish.registry.value == "auto"
    with pytest.raises(ConfigError, match="publish.registry: Input should be 'auto', 'required' or 'off'"):
        _config("publish.registry=always")
    with pytest.raises(ConfigError, match="an S3 store is s3://bucket"):
        _config("publish.store=s3://")
    with pytest.raises(ConfigError, match="publish.target: unknown key; allowed here: store, registered_model_name"):
        _config("publish.target=x")
    with pytest.raises(ConfigError, match="publish.registered_model_name"):
        _config("publish.registered_model_name=has spaces")


# --------------------------------------------------------------------------------------------------
# S3


def _s3_env(monkeypatch, server) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_REGION", server.region)


@pytest.mark.slow
def test_publish_to_s3_is_content_addressed_and_idempotent(seaweedfs_s3, monkeypatch, tmp_path, capsys):
    from pipeline.lineage import load_chain

    client = seaweedfs_s3.client()
    client.make_bucket("wakeline-published")
    _s3_env(monkeypatch, seaweedfs_s3)
    config = _config("publish.store=s3://wakeline-published/team/models", "publish.registry=off")
    frozen = build_run(tmp_path, config)
    sha = sha256_file(FIXTURES / "hey_jarvis.tflite")
    first = run(frozen.upstream, tmp_path / "record-1", config, {"pipeline_run": "run-1"})

    prefix = f"team/models/hey-jarvis/{sha[:DIGEST_CHARS]}/"
    assert first["location"] == f"s3://wakeline-published/{prefix.rstrip('/')}"
    objects = {o.object_name: o for o in client.list_objects("wakeline-published", prefix="team/", recursive=True)}
    assert set(objects) == {prefix + name for name in ("hey_jarvis.tflite", "hey_jarvis.json", REPORT, BLESSING,
                                                       "judge/model.keras", "cascade.json", "lineage.json",
                                                       "published.json")} | {
        "team/models/hey-jarvis/versions.jsonl", "team/models/hey-jarvis/latest.json"}
    body = client.get_object("wakeline-published", prefix + "hey_jarvis.tflite")
    assert body.read() == (FIXTURES / "hey_jarvis.tflite").read_bytes()
    body.close()
    assert objects[prefix + "hey_jarvis.tflite"].size == (FIXTURES / "hey_jarvis.tflite").stat().st_size

    again = run(frozen.upstream, tmp_path / "record-2", config, {"pipeline_run": "run-2"})
    assert again["already_published"] and not again["index_added"]
    after = {o.object_name: o for o in client.list_objects("wakeline-published", prefix=prefix, recursive=True)}
    assert {k: v.etag for k, v in after.items()} == {k: v.etag for k, v in objects.items() if k.startswith(prefix)}
    assert {k: v.last_modified for k, v in after.items()} == {
        k: v.last_modified for k, v in objects.items() if k.startswith(prefix)}  # nothing uploaded again
    index = client.get_object("wakeline-published", "team/models/hey-jarvis/versions.jsonl").read().decode()
    assert len(index.splitlines()) == 1 and json.loads(index)["sha256"] == sha

    for where in (first["location"], "s3://wakeline-published/team/models/hey-jarvis",
                  first["location"] + "/hey_jarvis.tflite"):  # the folder, the wake word (latest), a file
        chain = load_chain(where)
        assert chain.root == "published" and chain.nodes["published"].sha256 == sha
        assert {"dataset", "features", "student", "teacher_a", "teacher_b"} <= set(chain.nodes)
    assert main(["lineage", "s3://wakeline-published/team/models/hey-jarvis"]) == 0
    assert "dataset (data_prep)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_missing_bucket_fails_before_anything_is_written(seaweedfs_s3, monkeypatch, tmp_path):
    _s3_env(monkeypatch, seaweedfs_s3)
    config = _config("publish.store=s3://no-such-bucket-here/models", "publish.registry=off")
    with pytest.raises(PublishError, match="bucket 'no-such-bucket-here' does not exist"):
        run(_inputs(tmp_path), tmp_path / "record", config)
    assert not (tmp_path / "record").exists()


# --------------------------------------------------------------------------------------------------
# MLflow


def test_mlflow_unreachable_publishes_to_the_store_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    inputs = _inputs(tmp_path)
    out = run(inputs, tmp_path / "record", _config(f"publish.store={tmp_path / 'store'}"))
    assert out["registry_status"] == "skipped" and "Connection refused" in out["registry_reason"]
    assert out["model_version"] == "" and Path(out["location"], "hey_jarvis.tflite").is_file()
    assert json.loads((tmp_path / "store" / "hey-jarvis" / "latest.json").read_text())["mlflow"] is None

    with pytest.raises(PublishError, match=r"publish.registry is 'required' and registering wakeline-hey-jarvis "
                                           r"at http://127.0.0.1:9 failed"):
        run(inputs, tmp_path / "record-2", _config(f"publish.store={tmp_path / 'store'}", "publish.registry=required"))


@pytest.mark.slow
def test_register_promote_and_mine_with_production(mlflow_server, tmp_path, monkeypatch, capsys):
    """Each new model is a new version with the alias `candidate`; the same model again reuses its version;
    `wakeline promote` moves `production`; mining's scorer loads models:/...@production; lineage reads it."""
    from mlflow.tracking import MlflowClient

    from components.runtime.scorers import load_scorer, resolve_previous_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    config = _config(f"publish.store={tmp_path / 'store'}", "publish.registry=required")
    frozen = build_run(tmp_path, config)
    client = MlflowClient(mlflow_server)
    if NAME in {m.name for m in client.search_registered_models()}:
        client.delete_registered_model(NAME)  # the server is shared by the session's tests

    jarvis_sha = sha256_file(FIXTURES / "hey_jarvis.tflite")
    first = run(frozen.upstream, tmp_path / "r1", config, {"pipeline_run": "run-1", "pipeline_run_id": "uuid-1"})
    assert (first["registry_status"], first["registered_model"], first["model_version"], first["alias"]) == (
        "registered", NAME, "1", "candidate")
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["sha256"] == jarvis_sha and v1.tags["pipeline_run"] == "run-1"
    assert v1.tags["pipeline_run_id"] == "uuid-1" and v1.tags["store_location"] == first["location"]
    blessing = json.loads(frozen.upstream["blessing"].path.read_text())
    assert float(v1.tags["size_bytes"]) == (FIXTURES / "hey_jarvis.tflite").stat().st_size
    assert int(v1.tags["tensor_arena_size"]) == json.loads((FIXTURES / "hey_jarvis.json").read_text())["micro"][
        "tensor_arena_size"]
    assert v1.tags["code_version"] and float(v1.tags["frr"]) == blessing["behaviour"]["frr"]
    assert float(v1.tags["fa_per_hour"]) == blessing["behaviour"]["fa_per_hour"]
    assert {a.path for a in client.list_artifacts(first["mlflow_run_id"], "model")} >= {
        "model/hey_jarvis.tflite", "model/hey_jarvis.json", "model/lineage.json", "model/verification",
        "model/judge", "model/cascade.json"}
    assert (v1.tags["judge"], v1.tags["cascade_sentry_cutoff"], v1.tags["cascade_judge_cutoff"]) == (
        "teacher_a", "0.62", "0.5")
    assert v1.tags["cascade_reduction_kind"] == "lower_bound" and v1.tags["cascade_judge_context_s"] == "2.0"

    again = run(frozen.upstream, tmp_path / "r2", config, {"pipeline_run": "run-2"})
    assert (again["registry_status"], again["model_version"]) == ("reused", "1")

    nabu = _inputs(tmp_path, "okay_nabu")
    second = run(nabu, tmp_path / "r3", config, {"pipeline_run": "run-3"})
    assert (second["registry_status"], second["model_version"]) == ("registered", "2")
    assert client.get_model_version_by_alias(NAME, "candidate").version == "2"
    latest = json.loads((tmp_path / "store" / "hey-jarvis" / "latest.json").read_text())
    assert latest["mlflow"] == {"name": NAME, "version": "2"}

    assert main(["promote", "--wake-word", "hey jarvis"]) == 0
    assert f"{NAME}@production: (none) -> v2" in capsys.readouterr().out
    assert main(["promote", "--wake-word", "hey jarvis", "--version", "1"]) == 0
    assert f"{NAME}@production: v2 -> v1" in capsys.readouterr().out
    assert client.get_model_version_by_alias(NAME, "production").version == "1"
    assert main(["promote", "--wake-word", "hey jarvis", "--version", "7"]) == 2
    assert f"{NAME} has no version 7" in capsys.readouterr().err
    assert main(["promote", "--wake-word", "hey nobody"]) == 2
    assert "no registered model 'wakeline-hey-nobody'" in capsys.readouterr().err

    local = resolve_previous_model(f"models:/{NAME}@production", tmp_path / "cache")
    scorer = load_scorer(local)
    assert scorer.kind == "tflite" and scorer.identity == f"tflite:{jarvis_sha}"
    assert scorer.arena == json.loads((FIXTURES / "hey_jarvis.json").read_text())["micro"]["tensor_arena_size"]

    assert main(["lineage", f"models:/{NAME}@production"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("published (publish)  hey_jarvis.tflite " + jarvis_sha[:12])
    assert "student (distillation)" in out and "raw inputs" in out and f"models:/{NAME}@production" in out


def test_the_embedded_registry_serves_models_uris_without_a_server(tmp_path):
    """No MLFLOW_TRACKING_URI: the publish stage registers into ./runs/mlflow.db, and mining's `models:/` URIs
    resolve in that same store's registry (MLflow alone would look for a registry elsewhere)."""
    from components.runtime.scorers import load_scorer, resolve_previous_model
    from components.publish.registry import promote

    out = run(_inputs(tmp_path), tmp_path / "record", _config(f"publish.store={tmp_path / 'store'}"))
    assert out["registry_status"] == "registered" and out["tracking_uri"].endswith("/runs/mlflow.db")
    assert promote(NAME).describe().startswith(f"{NAME}@production: (none) -> v1")
    scorer = load_scorer(resolve_previous_model(f"models:/{NAME}@production", tmp_path / "cache"))
    assert scorer.identity == f"tflite:{sha256_file(FIXTURES / 'hey_jarvis.tflite')}"
    assert os.path.isdir(tmp_path / "runs" / "mlartifacts")
