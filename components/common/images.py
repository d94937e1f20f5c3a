"""Container images the components run in. The runner (compile, submit) chooses them; nothing reads the
environment. Tags follow the package version so an image always matches the code it was built from."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REGISTRY = "ghcr.io/wakeline"


@dataclass(frozen=True)
class Images:
    cpu: str
    gpu: str

    @classmethod
    def for_version(cls, version: str, registry: str = DEFAULT_REGISTRY) -> "Images":
        registry = registry.rstrip("/")
        return cls(cpu=f"{registry}/wakeline-cpu:{version}", gpu=f"{registry}/wakeline-gpu:{version}")


# The placeholder every component is declared with; pipelines always override it with Images.cpu/gpu.
PLACEHOLDER_IMAGE = f"{DEFAULT_REGISTRY}/wakeline-cpu:unset"
