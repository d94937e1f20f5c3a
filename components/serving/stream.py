"""The device's wake-word detection on an endless stream, fed chunk by chunk.

`DeviceDetector` is `components.common.metrics.activations` (ESPHome's rule) made incremental: it fires when the
mean of the last `sliding_window` uint8 outputs is above `int(cutoff*255)`, then zeroes the window and waits
until `refractory_inferences` outputs were below that threshold. `ModelStream` runs the model in TFLite-Micro
with its state kept across chunks (as the device does: one interpreter, never reset mid-stream), and
`FeatureStream` is the device frontend fed 10 ms at a time. For the same audio the detections equal
`activations(TflmStreamer(...)(features_uint16(audio)), cutoff, settings, quantized=True)`: the tests check it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.frontend import FEATURE_CHANNELS, FEATURE_STEP_MS, FEATURE_WINDOW_MS, FeatureStream  # noqa: F401
from components.common.metrics import DetectorSettings
from components.quantization.stage import esphome_input



class DeviceDetector:
    """ESPHome's decision on uint8 outputs, one at a time. Starts armed (as `activations` does)."""

    def __init__(self, cutoff: float, settings: DetectorSettings) -> None:
        self.threshold = int(cutoff * 255)
        self.window = settings.sliding_window
        self.need = settings.refractory_inferences
        self.ring = np.zeros(self.window, np.int64)
        self.pos = 0
        self.total = 0
        self.below = 0
        self.fired_once = False

    def push(self, output: int) -> float | None:
        """Take the next uint8 output; when the detector fires on it, the window mean that crossed the cutoff
        (as a probability, uint8 / 256), else None."""
        self.total += output - int(self.ring[self.pos])
        self.ring[self.pos] = output
        self.pos = (self.pos + 1) % self.window
        if self.fired_once and output < self.threshold:
            self.below += 1
        armed = not self.fired_once or self.below >= self.need
        if armed and self.total / self.window > self.threshold:
            mean = self.total / self.window / 256
            self.ring[:] = 0
            self.total = 0
            self.below = 0
            self.fired_once = True
            return mean
        return None


@dataclass(frozen=True)
class Firing:
    """One detection: the inference that fired and where its audio ends, in ms from the stream's start."""

    inference: int
    end_ms: int
    probability: float  # the window mean that crossed the cutoff


def inference_end_ms(inference: int, stride_frames: int) -> int:
    """Where inference `inference`'s audio ends: its last feature frame k covers [10k, 10k + 30) ms."""
    last_frame = (inference + 1) * stride_frames - 1
    return last_frame * FEATURE_STEP_MS + FEATURE_WINDOW_MS


class ModelStream:
    """One model on one stream: a TFLite-Micro interpreter whose state runs on across chunks, the frames not
    yet making a full stride, and the device detector."""

    def __init__(self, tflite: Path, arena: int | None, cutoff: float, settings: DetectorSettings) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.interp = runtime.Interpreter.from_file(str(tflite), arena_size=arena)
        self.stride = int(self.interp.get_input_details(0)["shape"][1])
        if self.stride != settings.stride_frames:
            raise ValueError(f"{tflite}: stride {self.stride} frames, settings say {settings.stride_frames}")
        self.detector = DeviceDetector(cutoff, settings)
        self._pending = np.zeros((0, FEATURE_CHANNELS), np.int8)
        self.inferences = 0

    def feed(self, frames: np.ndarray) -> list[Firing]:
        """Run every full stride of features; the detections among them."""
        q = np.concatenate([self._pending, esphome_input(frames)]) if len(self._pending) else esphome_input(frames)
        fired: list[Firing] = []
        n = len(q) // self.stride
        for i in range(n):
            self.interp.set_input(q[i * self.stride:(i + 1) * self.stride][None], 0)
            self.interp.invoke()
            out = int(np.asarray(self.interp.get_output(0)).reshape(-1)[0])
            mean = self.detector.push(out)
            if mean is not None:
                fired.append(Firing(self.inferences, inference_end_ms(self.inferences, self.stride), round(mean, 4)))
            self.inferences += 1
        self._pending = q[n * self.stride:]
        return fired
