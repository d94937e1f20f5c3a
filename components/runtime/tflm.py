"""The device's model runtime: the INT8 model in TFLite-Micro, fed features as ESPHome feeds them.

Shared by quantization (parity), verification, mining, the cascade, the judge and `wakeline serve`, so that
every number wakeline reports comes from the one path the device runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from components.common.frontend import FLOAT_SCALE


def _esphome_mapping(raw: np.ndarray) -> np.ndarray:
    return np.clip((raw.astype(np.int64) * 256 + 333) // 666 - 128, -128, 127).astype(np.int8)


_ESPHOME_TABLE = _esphome_mapping(np.arange(1 << 16))  # every uint16 value, mapped once


def esphome_input(raw: np.ndarray) -> np.ndarray:
    """ESPHome's integer feature mapping: `(raw*256 + 333) // 666 - 128`, clamped to int8 (a table lookup for
    the frontend's uint16 features, the same values)."""
    raw = np.asarray(raw)
    if raw.dtype == np.uint16:
        return _ESPHOME_TABLE[raw]
    return _esphome_mapping(raw)


def exact_input(raw: np.ndarray) -> np.ndarray:
    """The model's own input quantization (scale 26/255, zero point -128) of the float features."""
    return np.clip(np.round(raw.astype(np.float64) * FLOAT_SCALE / (26 / 255)) - 128, -128, 127).astype(np.int8)


class TflmStreamer:
    """The INT8 model in TFLite-Micro, fed `stride` frames per call, fresh state per clip (`reset`).
    `device=True` maps features as ESPHome does (0.33 % steeper than the model's scale); False uses the
    model's exact input quantization, to measure quantization error alone."""

    def __init__(self, path: Path, arena: int | None = None, *, device: bool = True) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.interp = runtime.Interpreter.from_file(str(path), arena_size=arena)
        self.stride = int(self.interp.get_input_details(0)["shape"][1])
        self.mapping = esphome_input if device else exact_input

    def __call__(self, raw_frames: np.ndarray) -> np.ndarray:
        """uint8 outputs for raw uint16 features, one per `stride` frames."""
        self.interp.reset()
        q = self.mapping(raw_frames)
        out = np.empty(len(q) // self.stride, np.uint8)
        for i in range(len(out)):
            self.interp.set_input(q[i * self.stride:(i + 1) * self.stride][None], 0)
            self.interp.invoke()
            out[i] = np.asarray(self.interp.get_output(0)).reshape(-1)[0]
        return out
