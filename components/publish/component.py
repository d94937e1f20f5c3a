"""publish as a KFP component: typed signature, no logic."""
from kfp import dsl

from components.common.artifacts import HTML, Artifact, Dataset, Input, Model, Output
from components.common.images import PLACEHOLDER_IMAGE


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def publish(config: Input[Artifact], dataset: Input[Dataset], hard_negatives: Input[Dataset],
            features: Input[Dataset], teacher_a: Input[Model], teacher_b: Input[Model], student: Input[Model],
            tflite_model: Input[Model], blessing: Input[Artifact], report: Input[HTML], cascade: Input[Artifact],
            pipeline_run: str, pipeline_run_id: str, record: Output[Artifact]):
    """Runs only for a blessed model: copies it, its manifest, the verification report and blessing, the cascade
    judge (the teacher cascade.json names, under judge/) and cascade.json, and its lineage.json to
    `publish.store` under <wake-word>/<sha256[:16]>/, and registers it in MLflow (alias `candidate`). The
    upstream artifacts are inputs for their metadata: the lineage is the whole chain.
    (On a cluster the launcher downloads every input, the feature store and dataset included.)"""
    from pathlib import Path

    from components.common.config import read_config_artifact
    from components.common.jsonio import finite
    from components.publish.stage import run_stage

    artifacts = {"config": config, "dataset": dataset, "hard_negatives": hard_negatives, "features": features,
                 "teacher_a": teacher_a, "teacher_b": teacher_b, "student": student, "tflite_model": tflite_model,
                 "blessing": blessing, "report": report, "cascade": cascade}
    run_config = read_config_artifact(Path(config.path))
    result = run_stage({name: Path(a.path) for name, a in artifacts.items()}, {"record": Path(record.path)},
                       run_config, metadata={name: dict(a.metadata) for name, a in artifacts.items()},
                       uris={name: a.uri for name, a in artifacts.items()},
                       pipeline_run={"pipeline_run": pipeline_run, "pipeline_run_id": pipeline_run_id})
    record.metadata.update(finite(result.metadata["record"]))
