"""espeak-ng through ctypes, from the `espeakng-loader` wheel (no apt package).

espeak-ng keeps synthesis state (pitch flutter phase, Klatt noise, its random seed) in process globals,
so the same text and voice give different audio depending on what this process did before, even after
re-initialising. For reproducible data every clip is synthesised from pristine state (`synthesize_many`):
the result then depends only on the job.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_IPA = 0x02
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    pass


@dataclass(frozen=True)
class EspeakJob:
    text: str
    voice: str  # "<language>+<variant>", e.g. "en-us+m3"
    rate_wpm: int
    pitch: int
    seed: int = 0


class _Engine:
    """One initialised espeak-ng in this process."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                      espeakng_loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise EspeakError("espeak-ng failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, _events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def set_voice(self, voice: str) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice!r}")

    def synthesize(self, job: EspeakJob) -> np.ndarray:
        self.set_voice(job.voice)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(job.rate_wpm), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(job.pitch), 0)
        self._chunks = []
        text = job.text.encode() + b"\0"
        if self.lib.espeak_Synth(text, len(text), 0, 0, 0, _CHARS_UTF8, None, None) != 0:
            raise EspeakError(f"espeak-ng could not synthesise {job.text!r}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def phonemes(self, text: str, voice: str) -> str:
        self.set_voice(voice)
        buf = ctypes.c_char_p(text.encode())
        ptr = ctypes.pointer(buf)
        out = []
        while ptr.contents.value:
            res = self.lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, _IPA)
            if res:
                out.append(res.decode("utf-8", "replace").strip())
        return " ".join(p for p in out if p)


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of `text` (used to find confusable phrases; does not touch synthesis state)."""
    return _engine().phonemes(text, voice)


_pristine: _Engine | None = None


def _synthesize_in_child(job: EspeakJob) -> tuple[np.ndarray, int]:
    """Fork and synthesise in the child from this worker's initialised but never-used engine.

    The worker initialises espeak once and never speaks itself, so every child starts from the same
    state; loading the phoneme data once instead of per clip makes this several times faster.
    """
    global _pristine
    if _pristine is None:
        _pristine = _Engine()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 0
        try:
            os.close(r)
            _pristine.lib.espeak_ng_SetRandSeed(job.seed)
            payload = pickle.dumps(("ok", _pristine.synthesize(job), _pristine.sample_rate))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
            payload, status = pickle.dumps(("error", f"{type(e).__name__}: {e}", 0)), 1
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise EspeakError(f"espeak-ng worker died synthesising {job.text!r} with {job.voice!r}")
    kind, value, sr = pickle.loads(data)
    if kind != "ok":
        raise EspeakError(value)
    return value, sr


def synthesize_many(jobs: Iterable[EspeakJob], workers: int) -> Iterator[tuple[np.ndarray, int]]:
    """Synthesise in job order, each clip from pristine espeak state (see the module docstring).

    Workers are spawned (so they inherit no espeak state from this process) and fork one short-lived
    child per clip, so every clip starts from the same never-used state: ~2 ms of overhead per clip.
    """
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, workers)) as pool:
        yield from pool.imap(_synthesize_in_child, list(jobs), chunksize=4)
