"""espeak-ng through ctypes, from the `espeakng-loader` wheel (no apt package).

espeak-ng keeps synthesis state (pitch flutter phase, Klatt noise) in process globals, so the same text
and voice give slightly different audio depending on what was spoken before. For reproducible data every
clip is synthesised in a fresh worker process (`synthesize_many`); the result then depends only on the job.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
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


def _synthesize_fresh(job: EspeakJob) -> tuple[np.ndarray, int]:
    engine = _Engine()
    engine.lib.espeak_ng_SetRandSeed(job.seed)  # initialisation seeds from the clock otherwise
    return engine.synthesize(job), engine.sample_rate


def synthesize_many(jobs: Iterable[EspeakJob], workers: int) -> Iterator[tuple[np.ndarray, int]]:
    """Synthesise in job order, each clip in its own fresh process (see the module docstring)."""
    # fork, not forkserver: a forkserver child re-imports the main module for every clip (~70 ms each).
    # Children only call into espeak and return arrays, so forking a process with idle threads is safe.
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, workers), maxtasksperchild=1) as pool:
        yield from pool.imap(_synthesize_fresh, list(jobs), chunksize=1)
