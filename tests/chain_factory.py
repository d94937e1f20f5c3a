"""A frozen tiny pipeline run as kfp.local leaves it: one folder per task, each output artifact beside an
`executor_output.json` holding its metadata, with the lineage metadata the real stages write (file hashes, input
hashes, config hash, code version) computed from the files written here. The model being published is an
official ESPHome model (tests/fixtures), verified for real by the ESPHome verification stage (contract only)."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from components.common.artifacts import Label, Lineage, ManifestRecord, Split, code_version, sha256_file, write_jsonl
from components.common.config import WakelineConfig, write_config_artifact
from components.publish.stage import Upstream

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "esphome-models" / "v2"
USER_ROOT = "s3://recordings/users/positives"


@dataclass
class FrozenRun:
    run_dir: Path
    pipeline_dir: Path
    upstream: dict[str, Upstream]
    config: WakelineConfig


def _record(label: Label, split: Split, source: str, n: int, origin: str = "", voice: str = "") -> ManifestRecord:
    sha = f"{source}-{label.value}-{n}".encode().hex().ljust(64, "0")[:64]
    return ManifestRecord(f"clips/{label.value}/{sha[:16]}.wav", label, split, voice or f"{source}:v{n % 3}", source,
                          1.0, sha, None, origin or f"tts:{source}:v{n % 3}#{n}")


def _write_output(pipeline_dir: Path, task: str, name: str, metadata: dict) -> Path:
    out = pipeline_dir / task / "executor_output.json"
    doc = json.loads(out.read_text()) if out.is_file() else {"artifacts": {}}
    uri = str(pipeline_dir / task / name)
    doc["artifacts"][name] = {"artifacts": [{"name": name, "uri": uri, "metadata": metadata}]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))
    return Path(uri)


def verify_fixture(model_name: str, folder: Path) -> tuple[Path, Path, Path, dict]:
    """(model dir, blessing file, report file, verdict) for an official model, verified for real: the contract,
    and behaviour on a little audio (two speech-like clips as "positives", 20 s of noise as ambient; the bar is
    set so that it passes: what matters here is that FRR and FA/h are real measurements)."""
    import numpy as np

    from components.esphome_verification.stage import run as verify
    from tests.factories import speechlike, write

    folder.mkdir(parents=True, exist_ok=True)
    model_dir = folder / "tflite_model"
    model_dir.mkdir(exist_ok=True)
    for suffix in (".tflite", ".json"):
        shutil.copy(FIXTURES / f"{model_name}{suffix}", model_dir / f"{model_name}{suffix}")
    audio = folder / "audio"
    for i in range(2):
        write(audio / "positive" / f"{i}.wav", speechlike(1.5, seed=i), subtype="PCM_16")
    noise = np.random.default_rng(0).normal(0, 0.02, 20 * 16_000).astype(np.float32)
    write(audio / "ambient.wav", noise, subtype="PCM_16")
    verdict = verify(model_dir, None, folder / "verification", target_fa_per_hour=1000.0, max_frr=1.0,
                     audio_dir=audio)
    assert verdict.blessed, verdict.reasons
    return model_dir, folder / "verification" / "verdict.json", folder / "verification" / "report.html", verdict.as_dict()


def build_run(root: Path, config: WakelineConfig, model_name: str = "hey_jarvis",
              previous_model_sha: str | None = None) -> FrozenRun:
    """Write the run under `root/runs/frozen/`; returns it and the publish stage's inputs."""
    run_dir = root / "runs" / "frozen"
    pipeline_dir = run_dir / "kfp" / "wakeline-2026-01-01-00-00-00-000000"
    cfg_sha, code = config.sha256(), code_version()

    def lineage(inputs: dict[str, str], files: dict[str, str]) -> dict:
        return Lineage(cfg_sha, code, inputs, files).as_metadata()

    up: dict[str, Upstream] = {}
    config_path = pipeline_dir / "validate-config" / "config"
    config_md = write_config_artifact(config, config_path, "smoke")
    _write_output(pipeline_dir, "validate-config", "config", config_md)
    up["config"] = Upstream(config_path, config_md, str(config_path))

    dataset = pipeline_dir / "data-prep" / "dataset"
    records = [_record(Label.POSITIVE, Split.TRAIN, "espeak", i) for i in range(5)]
    records += [_record(Label.POSITIVE, Split.TRAIN, "piper", i) for i in range(3)]
    records += [_record(Label.BACKGROUND, Split.TEST, "synthetic_ambient", i) for i in range(2)]
    records += [_record(Label.POSITIVE, Split.TRAIN, "user", i, f"{USER_ROOT}/alice/take-{i}.wav", "speaker:alice")
                for i in range(2)]
    records += [_record(Label.NEGATIVE, Split.TRAIN, "user", 9, "/home/me/negatives/kitchen.wav", "file:kitchen")]
    manifest_sha = write_jsonl(dataset / "manifest.jsonl", sorted(records, key=lambda r: r.path))
    quarantine_sha = write_jsonl(dataset / "quarantine.jsonl", [])
    ds_md = {**lineage({}, {"manifest.jsonl": manifest_sha, "quarantine.jsonl": quarantine_sha}),
             "manifest_sha256": manifest_sha, "clips": len(records), "quarantined": 0, "wake_word": config.wake_word}
    _write_output(pipeline_dir, "data-prep", "dataset", ds_md)
    up["dataset"] = Upstream(dataset, ds_md, str(dataset))

    mined = pipeline_dir / "background-mining" / "hard_negatives"
    hn_sha = write_jsonl(mined / "manifest.jsonl", [_record(Label.HARD_NEGATIVE, Split.TRAIN, "mined", 1)])
    hn_inputs = {"dataset_manifest": manifest_sha}
    if previous_model_sha:
        hn_inputs["previous_model"] = previous_model_sha
    hn_md = {**lineage(hn_inputs, {"manifest.jsonl": hn_sha}), "manifest_sha256": hn_sha, "hard_negatives": 1,
             "hours_scanned": 0.1, "threshold": 0.5, "scorer": {"kind": "probe", "identity": "probe:abc"}}
    _write_output(pipeline_dir, "background-mining", "hard_negatives", hn_md)
    _write_output(pipeline_dir, "background-mining", "report", {})
    up["hard_negatives"] = Upstream(mined, hn_md, str(mined))

    shard = pipeline_dir / "for-loop-1-iteration-0" / "augmentation"
    features_inputs = {"dataset_manifest": manifest_sha, "hard_negatives_manifest": hn_sha}
    _write_output(shard.parent, "augmentation", "features", {**lineage(features_inputs, {}), "shard_index": 0})
    features = pipeline_dir / "gather-features" / "features"
    features.mkdir(parents=True)
    (features / "metadata.json").write_text(json.dumps({"frames_per_clip": 148, "shards": 1}))
    features_sha = sha256_file(features / "metadata.json")
    f_md = {**lineage(features_inputs, {}), "shards": 1, "frames_per_clip": 148, "array_backend": "numpy",
            "sets": {"train/epoch-000": {"clips": 8}, "train/epoch-001": {"clips": 8}}}
    _write_output(pipeline_dir, "gather-features", "features", f_md)
    up["features"] = Upstream(features, f_md, str(features))

    keras_sha = {}
    for key, task, body in (("teacher_a", "teacher-training", b"teacher a weights"),
                            ("teacher_b", "teacher-training-2", b"teacher b weights")):
        folder = pipeline_dir / task / "model"
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(body)
        keras_sha[key] = sha256_file(folder / "model.keras")
        md = {**lineage({"features_metadata": features_sha}, {"model.keras": keras_sha[key]}), "name": key,
              "architecture": "mixednet", "steps": 10, "validation": {"frr": 0.1, "fa_per_hour": 0.5}}
        _write_output(pipeline_dir, task, "model", md)
        _write_output(pipeline_dir, task, "metrics", {"val_frr": 0.1})
        up[key] = Upstream(folder, md, str(folder))

    student = pipeline_dir / "distillation" / "model"
    student.mkdir(parents=True)
    (student / "model.keras").write_bytes(b"student weights")
    student_sha = sha256_file(student / "model.keras")
    st_md = {**lineage({"features_metadata": features_sha, "teacher_a_model": keras_sha["teacher_a"],
                        "teacher_b_model": keras_sha["teacher_b"]}, {"model.keras": student_sha}),
             "name": "student-small", "architecture": "mixednet", "parameters": 6000, "steps": 10}
    _write_output(pipeline_dir, "distillation", "model", st_md)
    up["student"] = Upstream(student, st_md, str(student))

    model_dir, blessing, report, verdict = verify_fixture(model_name, root / "verified")
    quantized = pipeline_dir / "quantization" / "tflite_model"
    shutil.copytree(model_dir, quantized)
    tflite = f"{model_name}.tflite"
    q_md = {**lineage({"model": student_sha, "features_metadata": features_sha},
                      {tflite: sha256_file(quantized / tflite),
                       f"{model_name}.json": sha256_file(quantized / f"{model_name}.json")}),
            "tflite": tflite, "manifest": f"{model_name}.json", "file_size_bytes": (quantized / tflite).stat().st_size}
    _write_output(pipeline_dir, "quantization", "tflite_model", q_md)
    up["tflite_model"] = Upstream(quantized, q_md, str(quantized))

    task = pipeline_dir / "esphome-verification"
    task.mkdir(parents=True)
    shutil.copy(blessing, task / "blessing")
    shutil.copy(report, task / "report")
    _write_output(pipeline_dir, "esphome-verification", "blessing", verdict)
    _write_output(pipeline_dir, "esphome-verification", "report", {})
    up["blessing"] = Upstream(task / "blessing", verdict, str(task / "blessing"))
    up["report"] = Upstream(task / "report", {}, str(task / "report"))
    up["cascade"] = _cascade(pipeline_dir, config, q_md["file_sha256"][tflite], keras_sha["teacher_a"],
                             features_sha, features)
    return FrozenRun(run_dir, pipeline_dir, up, config)


def _cascade(pipeline_dir: Path, config: WakelineConfig, tflite_sha: str, judge_sha: str, features_sha: str,
             features: Path) -> Upstream:
    """The cascade evaluation's document for the published model with teacher A as its judge (numbers made up,
    shaped as components.cascade_evaluation.stage writes them), and its artifact metadata as the stage computes it."""
    from components.cascade_evaluation.stage import artifact_metadata
    from components.common.artifacts import CASCADE_SCHEMA as SCHEMA

    chosen = {"sentry_cutoff": 0.62, "judge_cutoff": 0.5, "frr": 0.05, "false_accepts": 0, "fa_per_hour": 0.0,
              "judge_requests_per_hour": 12.0}
    alone = {"cutoff": 0.97, "frr": 0.1, "false_accepts": 1, "fa_per_hour": 10.0}
    settings = {"judge_context_s": 2.0, "judge_after_s": 0.3, "sentry_cutoff_floor": 0.1, "sentry_cutoff_step": 0.05,
                "judge_cutoff_step": 0.05, "target_fa_per_hour": config.target_false_accepts_per_hour}
    doc = {"schema": SCHEMA, "wake_word": config.wake_word,
           "sentry": {"tflite": "hey_jarvis.tflite", "sha256": tflite_sha, "shipped_cutoff": 0.97},
           "judge": {"role": "teacher_a", "name": "teacher_a", "kind": "keras", "model_file": "model.keras",
                     "sha256": judge_sha, "calibrated_cutoff": 0.5},
           "settings": settings,
           "operating_point": {"sentry_cutoff": 0.62, "judge_cutoff": 0.5, "judge_context_s": 2.0,
                               "judge_after_s": 0.3, "judge": "judge/", "frr": 0.05, "fa_per_hour": 0.0},
           "sentry_alone": alone, "chosen": chosen, "fa_per_hour_reduction": 1.0, "reduction_kind": "lower_bound",
           "ambient_hours": 0.1, "positives": 20, "grid": [chosen], "code_version": code_version(),
           "config_sha256": config.sha256()}
    path = pipeline_dir / "cascade-evaluation" / "cascade"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc, indent=2))
    md = artifact_metadata(doc, path, features)
    assert md["input_sha256"]["features_metadata"] == features_sha
    _write_output(pipeline_dir, "cascade-evaluation", "cascade", md)
    _write_output(pipeline_dir, "cascade-evaluation", "report", {})
    return Upstream(path, md, str(path))


def record_publish(run: FrozenRun, record: dict) -> None:
    """What kfp.local writes after the publish task: its record artifact with the stage's metadata."""
    _write_output(run.pipeline_dir, "publish", "record", record)
