"""Compile the pipeline to KFP IR YAML (what `kfp run create -f` and the KFP UI upload take)."""
from __future__ import annotations

from pathlib import Path

from components.common.artifacts import code_version
from components.common.images import DEFAULT_REGISTRY, Images

COMPILED_IR = Path(__file__).resolve().parent / "compiled" / "wakeline.yaml"


def compile_pipeline(output: Path = COMPILED_IR, registry: str = DEFAULT_REGISTRY,
                     version: str | None = None, gpus_per_task: int = 1) -> Path:
    from kfp import compiler

    from pipeline.dag import create_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    images = Images.for_version(version or code_version(), registry)
    compiler.Compiler().compile(create_pipeline(images, gpus_per_task), str(output))
    return output
