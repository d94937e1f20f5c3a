"""Scorers: what gives every window of the background audio its probability.

A scorer has an `identity` (its kind and the sha256 of its weights: the same model reached by another URI is the
same scorer), a `Geometry` (stride, where output 0 ends, how much history an output needs) and
`score(raw) -> probabilities`, one per output, for raw uint16 device features of one continuous stretch of audio.

- `NumpyMixedNet`: a MixedNet (the probe, or a previous Keras model that is one) run fully convolutionally in
  NumPy: the body over the whole chunk once, the dense head as a convolution, so overlapping windows share their
  work (about 30x fewer operations than scoring window by window). Picklable: it runs in the scan's workers.
- `KerasWindowScorer`: any other Keras model over `[batch, input_frames, 40]`, window by window, in the main process.
- `TfliteScorer`: a streaming ESPHome `.tflite` in TFLite-Micro (`runtime.tflm.TflmStreamer`) with
  ESPHome's integer input mapping; probability = uint8 output / 256. Runs in the workers (one interpreter each).

`resolve_previous_model` turns `mining.previous_model` (a local path, `s3://bucket/key`, `models:/name@alias`,
`models:/name/version` or `runs:/id/path`) into a local file or directory; `load_scorer` opens it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from components.common.artifacts import ArtifactError, Kind, ModelLayout, find, sha256_file
from components.common.config import Architecture, ModelSpec
from components.common.frontend import FLOAT_SCALE

TFLITE_CONTEXT_FRAMES = 300  # history a streaming .tflite may depend on; the chunk warm-up covers it
DEFAULT_STRIDE = 3  # ESPHome's feature frames per inference, for a Keras file without a spec


@dataclass(frozen=True)
class Geometry:
    """Where a scorer's outputs fall in the feature frames of a recording."""

    stride: int  # frames per output
    first_end: int  # frame at which output 0 ends
    context: int  # frames of history one output depends on (the warm-up covers at least this)

    def outputs(self, frames: int) -> int:
        """Outputs for `frames` feature frames."""
        return 0 if frames <= self.first_end else (frames - 1 - self.first_end) // self.stride + 1

    def end_frame(self, n: int) -> int:
        return self.first_end + n * self.stride

    def first_output_ending_at_or_after(self, frame: int) -> int:
        return max(0, -(-(frame - self.first_end) // self.stride))


class Scorer(Protocol):
    kind: str  # "probe" | "keras" | "tflite"
    identity: str
    geometry: Geometry

    def score(self, raw: np.ndarray) -> np.ndarray: ...

    def portable(self) -> "Scorer | None":
        """A picklable scorer for worker processes, or None: then workers featurise and the main process scores."""


class ModelNotFound(FileNotFoundError):
    pass


# --------------------------------------------------------------------------------------------------
# MixedNet in NumPy


@dataclass
class _Block:
    sizes: list[int]  # channels per group
    kernels: list[np.ndarray]  # per group: depthwise kernel [k, channels]
    pointwise: np.ndarray  # [C_in, C_out], BatchNorm folded in
    bias: np.ndarray  # [C_out]


class NumpyMixedNet:
    """A Keras MixedNet (components.training.models.mixednet) as a fully convolutional NumPy function."""

    def __init__(self, spec: ModelSpec, first: np.ndarray, blocks: list[_Block], head: np.ndarray, head_bias: float,
                 *, kind: str, identity: str) -> None:
        self.spec, self.first, self.blocks, self.head, self.head_bias = spec, first, blocks, head, float(head_bias)
        self.kind, self.identity = kind, identity
        self.geometry = Geometry(spec.stride, spec.input_frames - 1, spec.input_frames)

    @classmethod
    def from_keras(cls, model, spec: ModelSpec, *, kind: str, identity: str) -> "NumpyMixedNet":
        def w(name: str) -> list[np.ndarray]:
            return [np.asarray(v, np.float32) for v in model.get_layer(name).get_weights()]

        first = w("first_conv")[0]  # [k1, 1, 40, F]
        first = first.reshape(spec.first_conv_kernel * 40, first.shape[-1])
        channels = first.shape[-1]
        blocks = []
        for b, (filters, kernels) in enumerate(zip(spec.pointwise_filters, spec.mixconv_kernels)):
            sizes = [channels // len(kernels)] * len(kernels)
            sizes[0] += channels - sum(sizes)
            dws = [w(f"b{b}_dw{k}")[0][:, 0, :, 0] for k in kernels]  # [k, 1, C_g, 1] -> [k, C_g]
            pw = w(f"b{b}_pointwise")[0][0, 0]  # [C_in, C_out]
            bn = model.get_layer(f"b{b}_bn")
            gamma, beta, mean, var = (np.asarray(v, np.float64) for v in bn.get_weights())
            scale = gamma / np.sqrt(var + bn.epsilon)
            blocks.append(_Block(sizes, dws, (pw * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)))
            channels = filters
        kernel, bias = w("probability")
        head = kernel.reshape(-1, channels)  # Flatten of [frames, 1, C]: index t * C + c
        return cls(spec, first, blocks, head, float(bias[0]), kind=kind, identity=identity)

    def portable(self) -> "NumpyMixedNet":
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits of every window (start 0, stride, ...) of float features `x` [T, 40]."""
        s, k1 = self.spec.stride, self.spec.first_conv_kernel
        n1 = (len(x) - k1) // s + 1
        if n1 <= 0:
            return np.zeros(0, np.float32)
        cols = np.lib.stride_tricks.sliding_window_view(x, (k1, 40))[::s, 0][:n1].reshape(n1, k1 * 40)
        h = np.maximum(cols @ self.first, 0)
        for blk in self.blocks:
            longest = max(len(k) for k in blk.kernels)
            out_len = len(h) - longest + 1
            if out_len <= 0:
                return np.zeros(0, np.float32)
            parts, a = [], 0
            for size, kern in zip(blk.sizes, blk.kernels):
                g = h[:, a:a + size]
                a += size
                k = len(kern)
                n = len(h) - k + 1
                acc = g[:n] * kern[0]
                tmp = np.empty_like(acc)
                for i in range(1, k):
                    acc += np.multiply(g[i:i + n], kern[i], out=tmp)
                parts.append(acc[n - out_len:])  # keep the newest frames: branches end together
            h = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            h = np.maximum(h @ blk.pointwise + blk.bias, 0)
        frames = len(self.head)
        n_out = len(h) - frames + 1
        if n_out <= 0:
            return np.zeros(0, np.float32)
        per_frame = h @ self.head.T  # [frames_total, head frames]: each frame's term at each head position
        z = per_frame[:n_out, 0] + np.float32(self.head_bias)
        for t in range(1, frames):
            z += per_frame[t:t + n_out, t]
        return z

    def score(self, raw: np.ndarray) -> np.ndarray:
        x = np.asarray(raw, np.float32) * np.float32(FLOAT_SCALE)
        z = self.logits(x).astype(np.float64)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# other Keras models, TFLite


class KerasWindowScorer:
    """Any Keras model over `[batch, input_frames, 40]` float features, one window per stride."""

    def __init__(self, model, input_frames: int, stride: int, *, identity: str, batch: int = 2048) -> None:
        self.model, self.batch, self.kind, self.identity = model, batch, "keras", identity
        self.geometry = Geometry(stride, input_frames - 1, input_frames)

    def portable(self) -> None:
        return None

    def score(self, raw: np.ndarray) -> np.ndarray:
        from components.training.batches import stream_windows

        g = self.geometry
        windows = stream_windows(np.asarray(raw), g.context, g.stride)
        out = [np.asarray(self.model(windows[i:i + self.batch].astype(np.float32) * np.float32(FLOAT_SCALE),
                                     training=False)).reshape(-1)
               for i in range(0, len(windows), self.batch)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class TfliteScorer:
    """A streaming ESPHome model in TFLite-Micro, fed `stride` frames per invoke from fresh state per chunk
    (the chunk's warm-up refills its ring buffers). It travels to workers as its path: each opens its own
    interpreter."""

    def __init__(self, path: Path, *, identity: str, arena: int | None = None) -> None:
        self.path, self.arena, self.kind, self.identity = Path(path), arena, "tflite", identity
        self._streamer = None
        stride = self._interpreter().stride
        self.geometry = Geometry(stride, stride - 1, TFLITE_CONTEXT_FRAMES)

    def _interpreter(self):
        if self._streamer is None:
            from components.runtime.tflm import TflmStreamer

            self._streamer = TflmStreamer(self.path, self.arena)
        return self._streamer

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_streamer": None}

    def portable(self) -> "TfliteScorer":
        return self

    def score(self, raw: np.ndarray) -> np.ndarray:
        return self._interpreter()(np.asarray(raw)).astype(np.float32) / np.float32(256)


# --------------------------------------------------------------------------------------------------
# finding and opening a previous model


def resolve_previous_model(uri: str, cache_dir: Path) -> Path:
    """A local file or directory for `uri`: local paths as they are; `s3://` objects or prefixes downloaded
    with the minio client; `models:/...` and `runs:/...` through MLflow (the tracking URI the stages use)."""
    uri = uri.strip()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        return _download_s3(uri, cache_dir)
    if uri.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        from components.common.tracking import download_artifacts

        return download_artifacts(uri, cache_dir)  # models:/ through the registry of that same store
    path = Path(uri).expanduser()
    if not path.exists():
        raise ModelNotFound(f"mining.previous_model: {uri!r} does not exist")
    return path


def _download_s3(uri: str, cache_dir: Path) -> Path:
    from components.common.storage import StorageError, materialize, s3_client, split_s3

    bucket, key = split_s3(uri)
    client = s3_client()
    if key.endswith((".tflite", ".keras")):
        from minio.error import S3Error

        local = cache_dir / Path(key).name
        try:
            client.fget_object(bucket, key, str(local))
        except S3Error as e:
            raise StorageError(f"mining.previous_model: {uri}: {e.code}: {e.message}") from None
        return local
    files = materialize(uri, cache_dir, client)
    if not files:
        raise ModelNotFound(f"mining.previous_model: nothing under {uri}")
    return cache_dir / bucket / key.strip("/")


def load_scorer(path: Path) -> Scorer:
    """Open a resolved previous model (`find`'s `Kind.MODEL`, sub-folders included: a registry download nests
    them): a `.tflite` (its manifest's arena when one names it), a `.keras` file, or a folder holding one of them
    (a Keras `ModelLayout` folder, quantization's `<name>.tflite` + `<name>.json`)."""
    try:
        found = find(Path(path), Kind.MODEL, recursive=True)
        manifest = found.read_manifest()
        layout = ModelLayout(found.main.parent)
        doc = layout.read_spec() if found.kind is Kind.KERAS_MODEL and layout.spec.is_file() else None
    except ArtifactError as e:
        raise ModelNotFound(f"mining.previous_model: {e}") from None
    model_file = found.main
    digest = sha256_file(model_file)
    if found.kind is Kind.ESPHOME_MODEL:
        return TfliteScorer(model_file, identity=f"tflite:{digest}", arena=None if manifest is None else manifest.arena)
    import keras

    model = keras.models.load_model(model_file, compile=False)
    identity = f"keras:{digest}"
    if doc is not None:
        spec = ModelSpec.model_validate(doc["spec"])
        if spec.architecture is Architecture.MIXEDNET:
            return NumpyMixedNet.from_keras(model, spec, kind="keras", identity=identity)
        stride = int(doc.get("features", {}).get("stride_frames", spec.stride))
        return KerasWindowScorer(model, spec.input_frames, stride, identity=identity)
    return KerasWindowScorer(model, int(model.input_shape[1]), DEFAULT_STRIDE, identity=identity)


def describe(scorer: Scorer) -> dict[str, Any]:
    g = scorer.geometry
    out = {"kind": scorer.kind, "identity": scorer.identity, "stride_frames": g.stride, "context_frames": g.context}
    if scorer.kind != "tflite":
        out["window_frames"] = g.first_end + 1
    return out


def identity_hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
