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

    def cpu_only(self) -> "Images":
        """Every stage in the cpu image: for a machine where no gpu image was built (the GPU stages then run
        on the CPU, as they do on a machine without a GPU)."""
        return Images(cpu=self.cpu, gpu=self.cpu)


# The placeholder every component is declared with; pipelines always override it with Images.cpu/gpu.
PLACEHOLDER_IMAGE = f"{DEFAULT_REGISTRY}/wakeline-cpu:unset"
