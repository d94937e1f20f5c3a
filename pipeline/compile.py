"""Compile the pipeline to KFP IR YAML (what `kfp run create -f` and the KFP UI upload take)."""
from __future__ import annotations

from pathlib import Path

from components.common.artifacts import code_version
from components.common.config import DEFAULT_CLUSTER, KubernetesSettings
from components.common.images import DEFAULT_REGISTRY, Images

COMPILED_IR = Path(__file__).resolve().parent / "compiled" / "wakeline.yaml"


def compile_pipeline(output: Path = COMPILED_IR, registry: str = DEFAULT_REGISTRY,
                     version: str | None = None, cluster: KubernetesSettings = DEFAULT_CLUSTER) -> Path:
    """Write the IR for the images `registry`/wakeline-{cpu,gpu}:`version` (default: the package version) and
    the Kubernetes settings `cluster` (a config's `kubernetes` section; the default one is the committed IR's)."""
    from kfp import compiler

    from pipeline.dag import create_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    images = Images.for_version(version or code_version(), registry)
    compiler.Compiler().compile(create_pipeline(images, cluster), str(output))
    return output
