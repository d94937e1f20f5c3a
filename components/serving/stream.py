"""The device's wake-word detection on an endless stream, fed chunk by chunk.

`DeviceDetector` is `components.common.metrics.activations` (ESPHome's rule) made incremental: it fires when the
mean of the last `sliding_window` uint8 outputs is above `int(cutoff*255)`, then zeroes the window and waits
until `refractory_inferences` outputs were below that threshold. `ModelStream` runs the model in TFLite-Micro
with its state kept across chunks (as the device does: one interpreter, never reset mid-stream), and
`FeatureStream` is the device frontend fed 10 ms at a time; `DeviceStream` is both for every served model on
one stream, running the audio once it completes a stride. For the same audio the detections equal
`activations(TflmStreamer(...)(features_uint16(audio)), cutoff, settings, quantized=True)`: the tests check it.
`FrameHistory` keeps the stream's last feature frames for a judge to score (`components.serving.confirm`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.frontend import FEATURE_CHANNELS, FEATURE_STEP_MS, FEATURE_WINDOW_MS, FeatureStream
from components.common.metrics import DetectorSettings
from components.runtime.tflm import esphome_input

_FRAME_BYTES = 2 * 16 * FEATURE_STEP_MS  # 10 ms of 16 kHz int16: one frontend step
_WARMUP_FRAMES = FEATURE_WINDOW_MS // FEATURE_STEP_MS - 1  # steps before the first frame (a full window)


class DeviceDetector:
    """ESPHome's decision on uint8 outputs, one at a time. Starts armed (as `activations` does)."""

    def __init__(self, cutoff: float, settings: DetectorSettings) -> None:
        self.threshold = int(cutoff * 255)
        self.window = settings.sliding_window
        self.need = settings.refractory_inferences
        self.ring = [0] * self.window
        self.pos = 0
        self.total = 0
        self.below = 0
        self.fired_once = False

    def push(self, output: int) -> float | None:
        """Take the next uint8 output; when the detector fires on it, the window mean that crossed the cutoff
        (as a probability, uint8 / 256), else None."""
        self.total += output - self.ring[self.pos]
        self.ring[self.pos] = output
        self.pos = (self.pos + 1) % self.window
        if self.fired_once and output < self.threshold:
            self.below += 1
        armed = not self.fired_once or self.below >= self.need
        if armed and self.total / self.window > self.threshold:
            mean = self.total / self.window / 256
            self.ring = [0] * self.window
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


@functools.lru_cache(maxsize=32)
def _model_file(path: str, size: int, mtime_ns: int) -> tuple[bytes, int]:
    """A .tflite's bytes and its resource-variable count, read once per file version (the runtime's own count
    unpacks the whole flatbuffer in Python, tens of ms, on every interpreter it builds)."""
    from tflite_micro.python.tflite_micro import runtime

    data = Path(path).read_bytes()
    return data, runtime.count_resource_variables(data)


def new_interpreter(tflite: Path, arena: int | None):
    """`runtime.Interpreter.from_file(tflite, arena_size=arena)`, built as that constructor builds it (the same
    wrapper, arguments and defaults) from the file's cached bytes and resource-variable count."""
    from tflite_micro.python.tflite_micro import _runtime, runtime

    st = Path(tflite).stat()
    data, variables = _model_file(str(tflite), st.st_size, st.st_mtime_ns)
    interp = runtime.Interpreter.__new__(runtime.Interpreter)
    interp._interpreter = _runtime.InterpreterWrapper(
        data, [], len(data) * 10 if arena is None else arena, variables,
        runtime._ENUM_TRANSLATOR[runtime.InterpreterConfig.kAllocationRecording], 0)
    return interp


class ModelStream:
    """One model on one stream: a TFLite-Micro interpreter whose state runs on across chunks, the frames not
    yet making a full stride, and the device detector."""

    def __init__(self, tflite: Path, arena: int | None, cutoff: float, settings: DetectorSettings) -> None:
        self.interp = new_interpreter(tflite, arena)
        self.stride = int(self.interp.get_input_details(0)["shape"][1])
        if self.stride != settings.stride_frames:
            raise ValueError(f"{tflite}: stride {self.stride} frames, settings say {settings.stride_frames}")
        self.detector = DeviceDetector(cutoff, settings)
        self._pending = np.zeros((0, FEATURE_CHANNELS), np.int8)
        self.inferences = 0

    @property
    def pending_frames(self) -> int:
        return len(self._pending)

    def feed(self, frames: np.ndarray) -> list[Firing]:
        """Run every full stride of features; the detections among them."""
        q = np.concatenate([self._pending, esphome_input(frames)]) if len(self._pending) else esphome_input(frames)
        fired: list[Firing] = []
        n = len(q) // self.stride
        interp, push, stride = self.interp._interpreter, self.detector.push, self.stride
        for i in range(n):
            interp.SetInputTensor(q[None, i * stride:(i + 1) * stride], 0)
            interp.Invoke()
            mean = push(int(interp.GetOutputTensor(0).reshape(-1)[0]))
            if mean is not None:
                fired.append(Firing(self.inferences, inference_end_ms(self.inferences, stride), round(mean, 4)))
            self.inferences += 1
        self._pending = q[n * stride:]
        return fired


class FrameHistory:
    """The stream's most recent raw uint16 feature frames [n, 40], addressed by their index on the stream (frame
    k covers [10k, 10k + 30) ms): what a judge scores around a detection. `trim` bounds it to the last `keep`."""

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1 frame, got {keep}")
        self.keep = keep
        self.frames = np.zeros((0, FEATURE_CHANNELS), np.uint16)
        self.first = 0  # the stream index of frames[0]

    @property
    def total(self) -> int:
        """Frames the stream has produced so far."""
        return self.first + len(self.frames)

    def extend(self, frames: np.ndarray) -> None:
        if len(frames):
            self.frames = np.concatenate([self.frames, frames]) if len(self.frames) else np.asarray(frames, np.uint16)

    def segment(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of the stream, `stop` clipped to what has arrived."""
        if start < self.first:
            raise ValueError(f"frame {start} was dropped (the history starts at {self.first}, keeps {self.keep})")
        return self.frames[start - self.first:max(start, min(stop, self.total)) - self.first]

    def trim(self) -> None:
        drop = len(self.frames) - self.keep
        if drop > 0:
            self.frames = self.frames[drop:].copy()
            self.first += drop


class DeviceStream:
    """Every selected model on one stream: one frontend, one `ModelStream` per model, fed 16 kHz mono int16
    bytes as they arrive. The audio waits until it completes some model's next stride (the only moment a
    detection can happen), then runs in one go: the same detections, at the same point of the audio, as feeding
    every chunk on arrival, with a third of the calls for 10 ms chunks. `flush` runs what waits (a client
    asking whether everything so far was answered, or the end of the stream)."""

    SAFETY_BYTES = 16 * _FRAME_BYTES  # never hold more than this, whatever the frontend's warm-up turns out to be

    def __init__(self, models: list[ModelStream], history: FrameHistory | None = None) -> None:
        self.features = FeatureStream()
        self.models = models
        self.history = history  # when given, every feature frame also goes there (for a judge)
        self._buf = bytearray()
        self._received = 0  # bytes fed so far
        self._need = self._next()

    def _next(self) -> int:
        """How many bytes in all complete the next stride of some model: the frontend yields frame k once
        (k + WARMUP_FRAMES + 1) x 10 ms of audio arrived (`n_frames`)."""
        frames = self.features.frames + min(m.stride - m.pending_frames for m in self.models)
        return (frames + _WARMUP_FRAMES) * _FRAME_BYTES

    def feed(self, pcm: bytes) -> list[tuple[int, Firing]]:
        """(model index, firing) for every detection that `pcm` completes, in the order of the audio."""
        self._buf += pcm
        self._received += len(pcm)
        if self._received < self._need and len(self._buf) < self.SAFETY_BYTES:
            return []
        return self.flush()

    def flush(self) -> list[tuple[int, Firing]]:
        frames = self.features.feed_bytes(bytes(self._buf))
        self._buf.clear()
        if self.history is not None:
            self.history.extend(frames)
        fired = [(i, f) for i, m in enumerate(self.models) for f in m.feed(frames)]
        self._need = self._next()
        return sorted(fired, key=lambda x: x[1].end_ms) if len(fired) > 1 else fired
