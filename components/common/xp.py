"""Array-module selection: CuPy when a GPU is usable, NumPy otherwise; one code path for both."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from types import ModuleType

import numpy as np


class ComputeDevice(str, enum.Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class GPUUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class ArrayBackend:
    xp: ModuleType
    name: str  # "numpy" or "cupy"
    reason: str  # why this one was chosen

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def asnumpy(self, a) -> np.ndarray:
        return self.xp.asnumpy(a) if self.is_gpu else np.asarray(a)


def gpu_status() -> tuple[bool, str]:
    """Whether CuPy can use a GPU here, and why not when it cannot."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed"
    try:
        if not cupy.is_available():
            return False, "CuPy found no usable CUDA device (no driver or no GPU)"
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return True, f"CUDA device 0: {name.decode() if isinstance(name, bytes) else name}"
    except Exception as e:  # CUDARuntimeError and friends: no driver, wrong driver
        return False, f"CuPy cannot use the GPU: {e}"


def select(device: ComputeDevice | str, *, key: str = "device") -> ArrayBackend:
    """`auto` picks the GPU when usable; `gpu` fails with the reason when it is not; `cpu` is NumPy."""
    device = ComputeDevice(device)
    if device is ComputeDevice.CPU:
        return ArrayBackend(np, "numpy", f"{key}=cpu")
    ok, why = gpu_status()
    if ok:
        import cupy

        return ArrayBackend(cupy, "cupy", f"{key}={device.value}: {why}")
    if device is ComputeDevice.GPU:
        raise GPUUnavailableError(f"{key} is 'gpu' but no GPU is usable: {why}. Use 'auto' to fall back to "
                                  f"the CPU, or run this stage on a GPU node.")
    return ArrayBackend(np, "numpy", f"{key}=auto: {why}; using NumPy on the CPU")
