"""Frozen speech-embedding front end: openWakeWord's melspectrogram + embedding TFLite models.

Why: every wakeline model so far has only heard synthetic speech. The embedding model behind openWakeWord
(a re-implementation of Google's `speech_embedding` TFHub module, pre-trained on large amounts of real
speech) gives 96-d features in which real and synthetic speech of the same phrase land close together, so a
small head on top of it can act as a teacher, a judge or a mining scorer that has "heard real speech".

Pipeline (as openWakeWord's streaming detector computes it): 16 kHz audio in int16 scale, cut into
1760-sample chunks every 80 ms -> `melspectrogram.tflite` (10 ms hop, 32 mel bins, 60-3800 Hz, 8 frames a
chunk) -> `x / 10 + 2` -> windows of 76 mel frames (775 ms) stepping 8 frames (80 ms) ->
`embedding_model.tflite` -> one 96-d embedding per 80 ms. Output matches `pyopen_wakeword`'s own
`OpenWakeWordFeatures.process_streaming`; windows of many clips are batched into one interpreter call.

Licence: the models are read from the installed `pyopen-wakeword` 1.1.0 wheel (`pyopen_wakeword/models/`),
whose METADATA says `License: Apache-2.0` and whose dist-info LICENSE is the plain Apache-2.0 text; the
package README says nothing about the models' own licence. Upstream openWakeWord's README says its code is
Apache-2.0, that the embedding backbone is Google's `speech_embedding` TFHub module released under
Apache-2.0 (manually re-implemented) and that the melspectrogram model is an ONNX port of a fixed Torch
function (no training data) - but also that "all of the included pre-trained models" are CC BY-NC-SA 4.0
because of their training data. We read the latter as the wake-word heads (alexa, hey_jarvis, ...), which
this module never loads; the embedding model's status should still be confirmed before it ships in an
artifact. Nothing here is imported on module import: TensorFlow and the models load on first use.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

SAMPLE_RATE = 16000
MEL_BINS = 32
WINDOW_FRAMES = 76  # mel frames per embedding (775 ms)
STEP_FRAMES = 8  # mel frames between embeddings (80 ms)
STEP_SAMPLES = 1280  # 80 ms: new audio per streaming step, one embedding each
CHUNK_SAMPLES = 1760  # audio per melspectrogram call (80 ms + 30 ms context) -> 8 mel frames
EMBEDDING_DIM = 96
BATCH = 256  # embedding windows per interpreter call


def samples_for(n_windows: int) -> int:
    """Audio samples that yield exactly `n_windows` embeddings (the last mel chunk ending at the last sample)."""
    chunks = n_windows + (WINDOW_FRAMES - 1) // STEP_FRAMES  # each window spans parts of 10 chunks
    return CHUNK_SAMPLES + STEP_SAMPLES * (chunks - 1)


def default_models_dir() -> Path:
    """`pyopen_wakeword/models` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pyopen-wakeword is not installed (it ships the embedding models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def to_int16_scale(audio: np.ndarray) -> np.ndarray:
    """Mono audio as float32 in int16 units: int16 stays as is, float (in [-1, 1]) is scaled by 32767."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"mono audio expected, got shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32)
    return (a.astype(np.float32) * 32767.0).astype(np.float32)


class SpeechEmbedding:
    """Loads the two TFLite models once; maps 16 kHz mono audio to `[n_windows, 96]` float32 embeddings.

    Deterministic: one interpreter per model, a fixed thread count, and the same per-window computation
    whatever the batch (windows are independent)."""

    def __init__(self, models_dir: Path | str | None = None, num_threads: int = 1):
        import tensorflow as tf  # heavy: only when a front end is actually built

        d = Path(models_dir) if models_dir is not None else default_models_dir()
        with warnings.catch_warnings():  # tf.lite.Interpreter's "use ai_edge_litert" notice
            warnings.simplefilter("ignore", UserWarning)
            self._mel = tf.lite.Interpreter(model_path=str(d / "melspectrogram.tflite"), num_threads=num_threads)
            self._emb = tf.lite.Interpreter(model_path=str(d / "embedding_model.tflite"), num_threads=num_threads)
        self._shapes: dict[int, tuple[int, ...]] = {}

    def _run(self, interp, x: np.ndarray, out_dim: int) -> np.ndarray:
        """Invoke `interp` on the rows of `x`, `BATCH` rows at a time; `[len(x), out_dim]` float32."""
        out = np.zeros((len(x), out_dim), np.float32)
        inp, res = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
        for i in range(0, len(x), BATCH):
            chunk = np.ascontiguousarray(x[i:i + BATCH], dtype=np.float32)
            if self._shapes.get(id(interp)) != chunk.shape:
                interp.resize_tensor_input(0, list(chunk.shape))
                interp.allocate_tensors()
                self._shapes[id(interp)] = chunk.shape
            interp.set_tensor(inp, chunk)
            interp.invoke()
            out[i:i + len(chunk)] = interp.get_tensor(res).reshape(len(chunk), out_dim)
        return out

    def mels(self, audio: np.ndarray) -> np.ndarray:
        """`[frames, 32]` log-mel frames scaled as the embedding model expects (`x / 10 + 2`).

        Computed as the streaming detector does, on 1760-sample chunks (80 ms of new audio + 30 ms of
        context) stepping 80 ms, 8 frames each, one model call per chunk: the model floors its dB values
        relative to the loudest value in the whole input tensor, so a call over a whole clip (or a batch
        of chunks) gives different, length-dependent values."""
        x = to_int16_scale(audio)
        if len(x) < CHUNK_SAMPLES:
            return np.zeros((0, MEL_BINS), np.float32)
        chunks = np.lib.stride_tricks.sliding_window_view(x, CHUNK_SAMPLES)[::STEP_SAMPLES]
        # one chunk per call: the floor is taken over the whole input tensor, batch included
        mels = np.concatenate([self._run(self._mel, c[None], STEP_FRAMES * MEL_BINS) for c in chunks])
        return mels.reshape(-1, MEL_BINS) / 10.0 + 2.0

    @staticmethod
    def windows(mels: np.ndarray) -> np.ndarray:
        """`[n, 76, 32]` views of the mel frames, one every 8 frames (80 ms)."""
        if len(mels) < WINDOW_FRAMES:
            return np.zeros((0, WINDOW_FRAMES, MEL_BINS), np.float32)
        v = np.lib.stride_tricks.sliding_window_view(mels, WINDOW_FRAMES, axis=0)  # [f-75, 32, 76]
        return v[::STEP_FRAMES].transpose(0, 2, 1)

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings of `[n, 76, 32]` mel windows."""
        return self._run(self._emb, windows[..., None], EMBEDDING_DIM)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """`[n_windows, 96]` embeddings of one clip or stream, one per 80 ms (none under ~0.78 s)."""
        return self.embed_windows(self.windows(self.mels(audio)))

    def embed_many(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """`embed` for many clips, with the windows of all clips batched together (faster for short clips)."""
        wins = [self.windows(self.mels(c)) for c in clips]
        flat = self.embed_windows(np.concatenate(wins)) if wins else np.zeros((0, EMBEDDING_DIM), np.float32)
        return np.split(flat, np.cumsum([len(w) for w in wins])[:-1])

    @staticmethod
    def pad_front(audio: np.ndarray, n_last: int = 16) -> np.ndarray:
        """Silence in front so the clip yields >= `n_last` embeddings and its last sample ends the last chunk."""
        need = samples_for(n_last)
        n = max(len(audio), need)
        n += (-(n - need)) % STEP_SAMPLES
        return np.concatenate([np.zeros(n - len(audio), audio.dtype), audio])

    def for_clip(self, audio: np.ndarray, n_last: int = 16) -> np.ndarray:
        """`[n_last, 96]`: the last `n_last` embeddings (2.03 s of audio for 16) of a front-padded clip."""
        return self.embed(self.pad_front(np.asarray(audio), n_last))[-n_last:]

    def for_clips(self, clips: Sequence[np.ndarray], n_last: int = 16) -> np.ndarray:
        """`[n_clips, n_last, 96]`, batched."""
        embs = self.embed_many([self.pad_front(np.asarray(c), n_last) for c in clips])
        return np.stack([e[-n_last:] for e in embs]) if embs else np.zeros((0, n_last, EMBEDDING_DIM), np.float32)


_DEFAULT: SpeechEmbedding | None = None


def default() -> SpeechEmbedding:
    """A process-wide front end, built on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SpeechEmbedding()
    return _DEFAULT


def embeddings_for_clip(audio: np.ndarray, n_last: int = 16) -> np.ndarray:
    """The last `n_last` embeddings of a clip, front-padded with silence when it is short."""
    return default().for_clip(audio, n_last)
