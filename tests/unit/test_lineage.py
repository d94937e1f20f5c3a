"""Lineage: the chain from a published model back to the raw inputs, the same from the publish stage's inputs,
from a kfp.local run directory, from the published folder alone, and from KFP/MLMD API responses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.artifacts import sha256_file
from components.common.config import load_config
from components.publish.lineage import SCHEMA, Chain, chain_from_kfp, mlmd_metadata, render
from components.publish.stage import run as publish
from pipeline.cli import main
from pipeline.lineage import LineageError, from_kfp_api, load_chain
from tests.chain_factory import FIXTURES, USER_ROOT, build_run, record_publish

PARENTS = {  # what each artifact of a run is made from
    "published": ["blessing", "cascade", "report", "teacher_a", "tflite_model"],  # teacher a: the cascade's judge
    "tflite_model": ["features", "student"],
    "blessing": ["features", "tflite_model"], "report": ["features", "tflite_model"],  # verified on its test split
    "cascade": ["features", "teacher_a", "tflite_model"],  # the sentry and its judge, on the test split
    "student": ["features", "teacher_a", "teacher_b"],
    "teacher_a": ["features"], "teacher_b": ["features"],
    "features": ["dataset", "hard_negatives"],
    "hard_negatives": ["dataset"],
    "dataset": ["config"],
    "config": [],
}
PREVIOUS = "ab" * 32  # the sha256 of a deployed model that mining scored with: outside the run


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A frozen run, published to a local store (no registry); the run's publish record written as kfp.local does."""
    root = tmp_path_factory.mktemp("lineage")
    config = load_config("smoke", overrides=[f"publish.store={root / 'store'}", "publish.registry=off",
                                             f"data_prep.sources.positives=[{USER_ROOT}]"])
    frozen = build_run(root, config, previous_model_sha=PREVIOUS)
    record = publish(frozen.upstream, root / "record", config,
                     {"pipeline_run": frozen.pipeline_dir.name, "pipeline_run_id": "3f2c-uuid"})
    record_publish(frozen, record)
    return frozen, record


def _parents(chain: Chain) -> dict[str, list[str]]:
    return {nid: sorted(n.parents) for nid, n in chain.nodes.items()}


def test_the_published_lineage_links_every_artifact_by_hash(published):
    frozen, record = published
    chain = load_chain(record["location"])
    assert chain.root == "published" and _parents(chain) == PARENTS
    up = frozen.upstream
    tflite_sha = sha256_file(FIXTURES / "hey_jarvis.tflite")
    assert chain.nodes["published"].sha256 == chain.nodes["tflite_model"].sha256 == tflite_sha
    assert chain.nodes["student"].sha256 == up["student"].metadata["file_sha256"]["model.keras"]
    assert chain.nodes["features"].sha256 == sha256_file(up["features"].path / "metadata.json")
    assert chain.nodes["dataset"].sha256 == up["dataset"].metadata["manifest_sha256"]
    assert chain.nodes["config"].config_sha256 == frozen.config.sha256()
    assert chain.nodes["blessing"].sha256 == sha256_file(up["blessing"].path)
    assert {n.config_sha256 for nid, n in chain.nodes.items() if nid not in ("published", "blessing", "report")} == {
        frozen.config.sha256()}
    assert chain.nodes["hard_negatives"].unresolved == {"previous_model": PREVIOUS}
    assert all(not n.unresolved for nid, n in chain.nodes.items() if nid != "hard_negatives")
    assert chain.run["pipeline_run"] == frozen.pipeline_dir.name and chain.run["pipeline_run_id"] == "3f2c-uuid"
    ancestors = chain.ancestors()
    assert sorted(ancestors) == sorted(set(PARENTS) - {"published"}) and len(ancestors) == len(set(ancestors))
    assert set(ancestors[:5]) == {"tflite_model", "blessing", "report", "cascade", "teacher_a"}
    assert ancestors[-1] == "config"
    assert chain.nodes["cascade"].sha256 == sha256_file(up["cascade"].path)
    assert chain.nodes["cascade"].facts["judge"] == "teacher_a"


def test_raw_inputs_count_the_generated_audio_and_list_your_recordings(published):
    frozen, record = published
    raw = load_chain(record["location"]).raw_inputs
    assert raw["manifest_sha256"] == frozen.upstream["dataset"].metadata["manifest_sha256"]
    assert raw["generated"]["espeak"] == {"clips": 5, "by_label": {"positive": 5}, "voices": 3}
    assert raw["generated"]["piper"]["clips"] == 3 and raw["generated"]["synthetic_ambient"]["clips"] == 2
    recordings = raw["recordings"]
    assert recordings["files"] == 3
    assert recordings["by_source"] == {f"{USER_ROOT} (positives)": 2, "/home/me/negatives": 1}
    assert [r["origin"] for r in recordings["listed"]] == sorted(
        ["/home/me/negatives/kitchen.wav", f"{USER_ROOT}/alice/take-0.wav", f"{USER_ROOT}/alice/take-1.wav"])
    assert raw["config"]["sha256"] == frozen.config.sha256() and raw["config"]["sources"] == {"positives": [USER_ROOT]}


def test_the_run_directory_gives_the_same_chain(published):
    frozen, record = published
    from_folder = load_chain(record["location"])
    from_run = load_chain(str(frozen.run_dir))
    assert _parents(from_run) == PARENTS
    for nid, node in from_folder.nodes.items():
        assert from_run.nodes[nid].sha256 == node.sha256, nid
        assert from_run.nodes[nid].inputs == node.inputs, nid
    assert from_run.raw_inputs["generated"] == from_folder.raw_inputs["generated"]
    assert from_run.nodes["published"].uri == record["location"]
    assert from_run.nodes["published"].facts["registry_status"] == "off"


def test_the_tree_reads_from_the_model_down_to_the_raw_inputs(published, capsys):
    frozen, record = published
    assert main(["lineage", record["location"] + "/hey_jarvis.tflite"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].startswith("published (publish)  hey_jarvis.tflite " + record["sha256"][:12])
    assert lines[1] == f"  at {record['location']}"
    order = [next(i for i, line in enumerate(lines) if f"{nid} (" in line)
             for nid in ("tflite_model", "student", "teacher_a", "features", "hard_negatives", "dataset", "config")]
    assert order == sorted(order)  # each artifact under what it was made from, nearest first
    assert "previous_model abababababab… (not an artifact of this run)" in text
    assert f"your recordings: 3 files: 1 from /home/me/negatives, 2 from {USER_ROOT} (positives)" in text
    assert "generated: espeak 5 clips (3 voices), piper 3 clips (3 voices)" in text
    assert "features (see above)" in text and "dataset (see above)" in text
    assert sum("student (distillation)" in line for line in lines) == 1  # each artifact in full once

    assert main(["lineage", str(Path(record["location"]).parent), "--json"]) == 0  # the wake word: its latest
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == SCHEMA and doc["root"] == "published"
    assert [n["id"] for n in doc["nodes"]][:2] == ["published", "tflite_model"]
    assert Chain.from_dict(doc).to_dict() == doc


def test_lineage_errors_name_what_was_expected(tmp_path, capsys):
    assert main(["lineage", str(tmp_path / "nothing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["lineage", str(tmp_path)]) == 2
    assert "neither a published model folder" in capsys.readouterr().err
    assert main(["lineage", "kfp:1234"]) == 2
    assert "needs --kfp-host" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a wakeline lineage document"):
        Chain.from_dict({"schema": "something/else", "root": "x", "nodes": []})


# --------------------------------------------------------------------------------------------------
# KFP API + MLMD


def _mlmd_value(v):
    """How KFP stores one metadata value in MLMD (JSON as MessageToDict writes it, proto field names)."""
    if isinstance(v, str):
        return {"string_value": v}
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return {"struct_value": v}
    return {"double_value": float(v)}


def _kfp_responses(frozen) -> tuple[dict, list[dict]]:
    """A run as `GET /apis/v2beta1/runs/{id}` returns it, and its artifacts as MLMD returns them, for the
    frozen run: executor tasks plus the DAG tasks (root, the loop, the condition) that list their children's
    artifacts too, two augmentation shards gathered into one feature store, metrics artifacts beside models."""
    artifacts: list[dict] = []
    out_ids: dict[tuple[str, str], str] = {}

    def artifact(task: str, name: str, metadata: dict, uri: str) -> str:
        aid = str(len(artifacts) + 1)
        artifacts.append({"id": aid, "type_id": "14", "type": "system.Artifact", "uri": uri, "state": "LIVE",
                          "custom_properties": {"display_name": {"string_value": name},
                                                **{k: _mlmd_value(v) for k, v in metadata.items()}}})
        out_ids[(task, name)] = aid
        return aid

    for task_dir in sorted(p for p in frozen.pipeline_dir.rglob("executor_output.json")):
        task = {"teacher-training": "teacher a", "teacher-training-2": "teacher b"}.get(
            task_dir.parent.name, task_dir.parent.name.replace("-", " "))
        for name, listed in json.loads(task_dir.read_text())["artifacts"].items():
            for a in listed["artifacts"]:
                artifact(task, name, a["metadata"], "minio://mlpipeline/v2/artifacts/wakeline/run/" + a["uri"][-40:])
    artifact("augmentation#2", "features", {"shard_index": 1}, "minio://mlpipeline/shard-1")

    ids = lambda *keys: {"artifact_ids": [out_ids[k] for k in keys]}  # noqa: E731
    config = ("validate config", "config")
    shards = [("augmentation", "features"), ("augmentation#2", "features")]

    def task(tid, display, inputs, outputs):
        return {"run_id": "3f2c-uuid", "task_id": tid, "display_name": display, "state": "SUCCEEDED",
                "inputs": {k: ids(*v) for k, v in inputs.items()}, "outputs": {k: ids(*v) for k, v in outputs.items()}}

    tasks = [
        task("t0", "wakeline-2026-01-01", {}, {"dataset": [("data prep", "dataset")],
                                                "esphome_model": [("quantization", "tflite_model")]}),
        task("t1", "validate config", {}, {"config": [config]}),
        task("t2", "data prep", {"config": [config]}, {"dataset": [("data prep", "dataset")]}),
        task("t3", "background mining", {"config": [config], "dataset": [("data prep", "dataset")]},
             {"hard_negatives": [("background mining", "hard_negatives")],
              "report": [("background mining", "report")]}),
        task("t4", "for-loop-1", {}, {"pipelinechannel--augmentation-features": shards}),
        task("t5", "augmentation", {"config": [config], "dataset": [("data prep", "dataset")],
                                    "hard_negatives": [("background mining", "hard_negatives")]},
             {"features": [shards[0]]}),
        task("t6", "augmentation", {"config": [config], "dataset": [("data prep", "dataset")],
                                    "hard_negatives": [("background mining", "hard_negatives")]},
             {"features": [shards[1]]}),
        task("t7", "gather features", {"shards": shards}, {"features": [("gather features", "features")]}),
        task("t8", "teacher a", {"config": [config], "features": [("gather features", "features")]},
             {"model": [("teacher a", "model")], "metrics": [("teacher a", "metrics")]}),
        task("t9", "teacher b", {"config": [config], "features": [("gather features", "features")]},
             {"model": [("teacher b", "model")], "metrics": [("teacher b", "metrics")]}),
        task("t10", "distillation", {"config": [config], "features": [("gather features", "features")],
                                     "teacher_a": [("teacher a", "model")], "teacher_b": [("teacher b", "model")]},
             {"model": [("distillation", "model")]}),
        task("t11", "quantization", {"config": [config], "model": [("distillation", "model")],
                                     "features": [("gather features", "features")]},
             {"tflite_model": [("quantization", "tflite_model")]}),
        task("t12", "esphome verification", {"config": [config], "tflite_model": [("quantization", "tflite_model")],
                                             "features": [("gather features", "features")]},
             {"blessing": [("esphome verification", "blessing")], "report": [("esphome verification", "report")]}),
        task("t12b", "cascade evaluation", {"config": [config], "tflite_model": [("quantization", "tflite_model")],
                                            "teacher_a": [("teacher a", "model")],
                                            "teacher_b": [("teacher b", "model")],
                                            "features": [("gather features", "features")]},
             {"cascade": [("cascade evaluation", "cascade")], "report": [("cascade evaluation", "report")]}),
        task("t13", "condition-2", {}, {"record": [("publish", "record")]}),
        task("t14", "publish", {"config": [config], "dataset": [("data prep", "dataset")],
                                "hard_negatives": [("background mining", "hard_negatives")],
                                "features": [("gather features", "features")], "teacher_a": [("teacher a", "model")],
                                "teacher_b": [("teacher b", "model")], "student": [("distillation", "model")],
                                "tflite_model": [("quantization", "tflite_model")],
                                "blessing": [("esphome verification", "blessing")],
                                "report": [("esphome verification", "report")],
                                "cascade": [("cascade evaluation", "cascade")]},
             {"record": [("publish", "record")]}),
    ]
    run = {"run_id": "3f2c-uuid", "display_name": "wakeline hey jarvis nightly", "state": "SUCCEEDED",
           "run_details": {"pipeline_context_id": "7", "pipeline_run_context_id": "8", "task_details": tasks}}
    return run, artifacts


def test_kfp_api_responses_give_the_same_chain(published):
    frozen, record = published
    run, artifacts = _kfp_responses(frozen)
    chain = chain_from_kfp(run, artifacts)
    local = load_chain(record["location"])
    assert chain.root == "published" and _parents(chain) == PARENTS
    for nid, node in local.nodes.items():
        if nid in ("features", "config", "blessing", "report"):  # hashed from their files, which MLMD has not
            continue
        assert chain.nodes[nid].sha256 == node.sha256, nid
        assert chain.nodes[nid].config_sha256 == node.config_sha256, nid
    assert chain.nodes["features"].sha256 == "" and chain.nodes["features"].facts["shards"] == 1
    assert chain.nodes["blessing"].facts["blessed"] is True
    assert chain.nodes["tflite_model"].uri.startswith("minio://mlpipeline/")
    assert chain.run == {"pipeline_run": "wakeline hey jarvis nightly", "pipeline_run_id": "3f2c-uuid", "source": "kfp"}
    assert chain.raw_inputs["config"]["sha256"] == frozen.config.sha256()
    assert "dataset (data_prep)" in render(chain)


def test_kfp_api_client_path_uses_the_run_and_mlmd(published, monkeypatch):
    """`wakeline lineage kfp:<id>`: the KFP client's run, artifacts from an MLMD fetcher (here: the responses)."""
    import kfp

    frozen, _ = published
    run, artifacts = _kfp_responses(frozen)

    class Run:
        def to_dict(self):
            return run

    class FakeClient:
        def __init__(self, host):
            assert host == "http://kfp.example:8080"

        def get_run(self, run_id):
            assert run_id == "3f2c-uuid"
            return Run()

    monkeypatch.setattr(kfp, "Client", FakeClient)
    asked = []

    def fetch(ids):
        asked.extend(ids)
        return artifacts

    chain = from_kfp_api("http://kfp.example:8080", "3f2c-uuid", fetch)
    assert _parents(chain) == PARENTS and chain.source == "kfp:3f2c-uuid"
    assert sorted(asked, key=int) == [a["id"] for a in artifacts]  # each artifact of the run, once

    def unreachable(ids):
        raise ConnectionError("metadata-grpc-service.kubeflow:8080 unreachable")

    bare = from_kfp_api("http://kfp.example:8080", "3f2c-uuid", unreachable)  # the structure still shows
    # without the hashes, which teacher judged is unknown: the cascade shows both it read, publish neither
    assert _parents(bare) == {**PARENTS, "cascade": ["features", "teacher_a", "teacher_b", "tflite_model"],
                              "published": ["blessing", "cascade", "report", "tflite_model"]}
    assert bare.nodes["student"].sha256 == ""


def test_mlmd_metadata_reads_both_property_layouts():
    new = {"id": "5", "customProperties": {"display_name": {"stringValue": "model"},
                                          "file_sha256": {"structValue": {"model.keras": "aa"}},
                                          "steps": {"doubleValue": 10.0}}}
    assert mlmd_metadata(new) == {"file_sha256": {"model.keras": "aa"}, "steps": 10.0}
    old = {"id": "6", "custom_properties": {"metadata": {"struct_value": {"config_sha256": "cc"}}}}
    assert mlmd_metadata(old) == {"config_sha256": "cc"}


def test_a_run_directory_without_finished_tasks_says_so(tmp_path):
    (tmp_path / "kfp" / "wakeline-2026").mkdir(parents=True)
    with pytest.raises(LineageError, match="no task has finished"):
        load_chain(str(tmp_path))
