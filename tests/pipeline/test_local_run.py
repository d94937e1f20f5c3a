"""End to end: the smoke preset through kfp.local's SubprocessRunner, as `make run` does."""
import json

import pytest

from components.common.artifacts import DatasetLayout, FeatureStoreLayout, Split
from components.common.config import load_config
from pipeline.local import run_local
from pipeline.summary import format_summary

pytestmark = pytest.mark.slow  # runs the whole smoke pipeline


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()  # the stages' MLflow runs go to a store of this test, not ./runs
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{runs / 'mlflow.db'}")
    config = load_config("smoke", overrides=[f"training.checkpoint_root={runs / 'checkpoints'}",
                                             f"mining.session_root={runs / 'mining'}",
                                             f"publish.store={runs / 'published'}"])
    yield run_local(config, "smoke", runs, run_id="smoke-test")
    mp.undo()


def test_pipeline_produces_a_dataset(smoke_run):
    layout = DatasetLayout(smoke_run.dataset_path)
    records = layout.read_manifest()
    md = smoke_run.dataset_metadata
    assert int(md["clips"]) == len(records) > 50
    assert md["manifest_sha256"] and md["wake_word"] == "hey jarvis"
    assert {r.split for r in records} == set(Split)
    link = smoke_run.run_dir / "outputs" / "dataset"
    assert link.resolve() == smoke_run.dataset_path.resolve()
    summary = json.loads((smoke_run.run_dir / "summary.json").read_text())
    assert summary["dataset"]["path"] == str(smoke_run.dataset_path)
    assert summary["features"]["path"] == str(smoke_run.outputs["features"].path)
    assert (smoke_run.run_dir / "config.yaml").is_file()


def test_pipeline_produces_features_from_the_dataset(smoke_run):
    store = FeatureStoreLayout(smoke_run.outputs["features"].path)
    md = store.metadata()
    cfg = load_config("smoke")
    assert store.epochs(Split.TRAIN) == list(range(cfg.augmentation.epochs))
    assert md["input_sha256"]["dataset_manifest"] == smoke_run.dataset_metadata["manifest_sha256"]
    train = store.open(Split.TRAIN, 0)
    n_pos = int(smoke_run.dataset_metadata["counts"]["positive"]["train"])
    assert int(train.positives.sum()) == n_pos
    assert train.frames.shape[1] == 40 and len(train.clip(0)) == md["frames_per_clip"]
    assert len(store.open(Split.TEST, None)) == int(smoke_run.dataset_metadata["counts"]["background"]["test"])


def test_pipeline_trains_two_teachers(smoke_run):
    names = {smoke_run.outputs[k].metadata["name"] for k in ("teacher_a", "teacher_b")}
    assert names == {t.name for t in load_config("smoke").teachers}
    for key in ("teacher_a", "teacher_b"):
        out = smoke_run.outputs[key]
        assert (out.path / "model.keras").is_file() and (out.path / "model_spec.json").is_file()
        assert out.metadata["steps"] == load_config("smoke").training.total_steps


def test_pipeline_produces_an_esphome_model_that_passes_the_contract(smoke_run):
    from components.esphome_verification.contract import verify_contract

    out = smoke_run.outputs["esphome_model"]
    md = out.metadata
    checks, generation = verify_contract(out.path / md["tflite"], out.path / md["manifest"])
    assert generation == "v2" and all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert md["parity"]["float_stream_vs_keras_max_abs"] < 1e-5
    assert "Contract checks" in smoke_run.outputs["verification"].path.read_text()
    task_dir = smoke_run.outputs["verification"].path.parent
    blessing = json.loads((task_dir / "blessing").read_text())
    assert blessing["blessed"] is True, blessing["reasons"]
    cfg = load_config("smoke")
    table = blessing["behaviour"]["breakdown"]  # the gate: every condition, every held-out family
    assert table["worst_fa_per_hour"] <= cfg.target_false_accepts_per_hour
    assert {c["condition"] for c in table["fa"]} == {"noise", "music", "all"}  # smoke: a quiet room
    assert all(c["hours"] > 0 for c in table["fa"])
    assert {c["condition"] for c in table["frr"]} == {"mixed", "clean", "noisy", "far_field", "all"}
    assert {c["family"] for c in table["frr"]} >= {"espeak:formant", "all"}
    assert md["file_size_bytes"] <= cfg.device_budget.max_tflite_bytes
    assert md["tensor_arena_size"] <= cfg.device_budget.max_arena_bytes
    assert list(task_dir.parent.rglob("publish/record"))  # publish runs only under dsl.If(blessed)


def test_the_blessed_model_is_published_registered_and_traceable(smoke_run):
    from components.common.artifacts import sha256_file
    from pipeline.lineage import load_chain
    from pipeline.summary import published_record

    model = smoke_run.outputs["esphome_model"]
    sha = sha256_file(model.path / model.metadata["tflite"])
    record = published_record(smoke_run.run_dir)
    folder = smoke_run.run_dir.parent / "published" / "hey-jarvis" / sha[:16]
    assert record["location"] == str(folder) and record["sha256"] == sha
    assert sha256_file(folder / model.metadata["tflite"]) == sha
    assert (folder / model.metadata["manifest"]).read_bytes() == (model.path / model.metadata["manifest"]).read_bytes()
    assert (folder / "verification" / "report.html").read_bytes() == smoke_run.outputs["verification"].path.read_bytes()
    assert (record["registry_status"], record["registered_model"], record["model_version"], record["alias"]) == (
        "registered", "wakeline-hey-jarvis", "1", "candidate")
    chain = load_chain(str(folder))  # the published folder alone holds the whole chain
    assert chain.run["pipeline_run"] == next((smoke_run.run_dir / "kfp").iterdir()).name
    assert chain.nodes["student"].sha256 == smoke_run.outputs["student"].metadata["file_sha256"]["model.keras"]
    assert chain.nodes["dataset"].sha256 == smoke_run.dataset_metadata["manifest_sha256"]
    assert {"teacher_a", "teacher_b", "features", "hard_negatives", "config", "cascade"} <= set(chain.ancestors())
    assert "teacher_a" in chain.nodes["published"].parents  # the judge, published under judge/
    assert sum(chain.raw_inputs["generated"][s]["clips"] for s in ("espeak", "piper")) > 50
    assert all(not n.unresolved for n in chain.nodes.values()), {n.id: n.unresolved for n in chain.nodes.values()}


def test_the_cascade_is_evaluated_and_published_beside_the_model(smoke_run):
    """The shipped model as the sentry, teacher A as the judge, on the test split; publish puts the judge and the
    chosen operating point beside the model."""
    import math
    from pathlib import Path

    from components.runtime.judge import load_judge
    from pipeline.summary import published_record

    report = smoke_run.outputs["cascade_report"].path
    assert "<h1>Cascade evaluation</h1>" in report.read_text() and "data:image/png;base64," in report.read_text()
    task_dir = report.parent
    doc = json.loads((task_dir / "cascade").read_text())
    assert doc["judge"]["role"] == "teacher_a" and doc["judge"]["name"] == load_config("smoke").teachers[0].name
    assert doc["judge"]["sha256"] == smoke_run.outputs["teacher_a"].metadata["file_sha256"]["model.keras"]
    # the sentry alone at its shipped cutoff is what verification measured
    blessing = json.loads((smoke_run.outputs["verification"].path.parent / "blessing").read_text())["behaviour"]
    alone = doc["sentry_alone"]
    assert alone["cutoff"] == blessing["cutoff"] == smoke_run.outputs["esphome_model"].metadata["probability_cutoff"]
    assert (alone["frr"], alone["false_accepts"]) == (blessing["frr"], blessing["false_accepts"])
    # a grid over every sentry cutoff from the floor to the shipped one, times every judge cutoff
    assert len(doc["grid"]) == len(doc["sentry_cutoffs"]) * len(doc["judge_cutoffs"])
    assert len(doc["sentry_cutoffs"]) >= 2 and len(doc["judge_cutoffs"]) > 10
    outputs = json.loads((task_dir / "executor_output.json").read_text())["artifacts"]
    metrics = outputs["metrics"]["artifacts"][0]["metadata"]
    assert {"sentry_frr", "sentry_fa_per_hour", "ambient_hours", "judged_segments"} <= set(metrics)
    assert all(math.isfinite(float(v)) for v in metrics.values()), metrics
    print(f"\nsmoke cascade: sentry alone {alone}, chosen {doc['chosen']}, reduction "
          f"{doc['fa_per_hour_reduction']} ({doc['reduction_kind']}: {doc['reduction_reason']})")

    folder = Path(published_record(smoke_run.run_dir)["location"])
    assert (folder / "cascade.json").read_bytes() == (task_dir / "cascade").read_bytes()
    teacher = smoke_run.outputs["teacher_a"].path
    for name in ("model.keras", "model_spec.json", "validation.json"):
        assert (folder / "judge" / name).read_bytes() == (teacher / name).read_bytes(), name
    assert load_judge(folder / "judge").kind == "keras"  # what a judge server would serve
    assert load_judge(folder).kind == "tflite"  # the folder itself is still the ESPHome model


def test_the_student_is_distilled_from_both_teachers_and_is_what_ships(smoke_run):
    student = smoke_run.outputs["student"]
    assert student.metadata["name"] == load_config("smoke").distillation.student.name
    report = json.loads((student.path / "distillation.json").read_text())["models"]
    assert set(report) == {"teacher_a", "teacher_b", "student"}
    for key in ("teacher_a", "teacher_b"):
        assert student.metadata["input_sha256"][f"{key}_model"] == smoke_run.outputs[key].metadata["file_sha256"]["model.keras"]
    quantized = smoke_run.outputs["esphome_model"].metadata
    assert quantized["input_sha256"]["model"] == student.metadata["file_sha256"]["model.keras"]


def test_mined_hard_negatives_reach_the_feature_store(smoke_run):
    mined = smoke_run.outputs["hard_negatives"]
    records = DatasetLayout(mined.path).read_manifest()
    assert len(records) == int(mined.metadata["hard_negatives"]) > 0
    assert {r.split for r in records} == {Split.TRAIN} and {r.label.value for r in records} == {"hard_negative"}
    store = FeatureStoreLayout(smoke_run.outputs["features"].path)
    for epoch in store.epochs(Split.TRAIN):
        labels = [c["label"] for c in store.open(Split.TRAIN, epoch).clip_info()]
        assert labels.count("hard_negative") == len(records)
    assert "hard_negatives_manifest" in store.metadata()["input_sha256"]
    assert "<h1>Background mining</h1>" in smoke_run.outputs["mining_report"].path.read_text()


def test_summary_names_the_outputs_and_counts(smoke_run):
    text = format_summary(smoke_run)
    assert "outputs/dataset" in text and "positive" in text and "Quarantined" in text
    assert "outputs/features" in text and "SNR curriculum" in text and "Teacher mixednet-small" in text
    assert "ESPHome" in text and "parity" in text and "Student student-small" in text
    assert "Mining" in text and "hard negatives" in text and "verification: BLESSED" in text
    assert "worst condition" in text and "FA/h (95% upper)" in text and "FRR per family" in text
    assert "Published   " in text and "MLflow: wakeline-hey-jarvis v1 (alias candidate)" in text
    assert "cascade (judge teacher_a mixednet-small): sentry alone FRR" in text and "FA/h reduction" in text
    assert len(text.splitlines()) < 40  # one screen


def test_run_dir_is_not_overwritten(smoke_run):
    with pytest.raises(FileExistsError):
        run_local(load_config("smoke"), "smoke", smoke_run.run_dir.parent, run_id="smoke-test")


def test_bad_run_form_fails_before_any_stage(tmp_path, capfd):
    """On a cluster the run form is validated by the first task; no stage starts on a bad config."""
    from kfp import local

    from components.common.images import Images
    from pipeline.dag import create_pipeline

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    with pytest.raises(RuntimeError):
        create_pipeline(Images.for_version("test"))(preset="smoke", wake_word="",
                                                     config_json='{"data_prep": {"positivs": {}}}')
    out = capfd.readouterr()
    assert "data_prep.positivs: unknown key" in out.out + out.err
    assert not list(tmp_path.rglob("data-prep"))


def test_every_json_the_run_writes_is_strict(smoke_run):
    """No bare NaN or Infinity in any JSON of the run: files named .json/.jsonl, and the JSON artifacts that
    carry no extension (the config, the blessing, the publish record)."""
    from components.common.jsonio import loads_strict
    from tests.strict_json import strict_files

    root = smoke_run.run_dir.parent  # the runs folder: the run, its store, its mining sessions
    parsed = strict_files(root)
    assert smoke_run.run_dir / "summary.json" in parsed
    named = [p for name in ("config", "blessing", "record") for p in root.rglob(name) if p.is_file()]
    assert {p.name for p in named} >= {"config", "blessing", "record"}
    for path in named:
        loads_strict(path.read_text())
