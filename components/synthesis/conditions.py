"""Long-form speech per condition, built from a split's own speech clips.

data_prep builds them for validation and test: FA/h is measured per condition, and the cutoff is chosen so that
the worst validation condition meets the target. background_mining can build the same recipes from the training
split's speech and mine them for hard negatives. Each stream is a function of its inputs and seed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from components.common.artifacts import SAMPLE_RATE_HZ
from components.synthesis.channels import change_speed, reverberate, telephone
from components.common.config import Ambient, SpeechCondition
from components.synthesis.ambient import _db, _normalise, coloured_noise, music_like

SR = SAMPLE_RATE_HZ
PAUSE_S = (0.15, 1.2)
SLOW_RANGE, FAST_RANGE = (0.7, 0.85), (1.2, 1.45)
FAR_FIELD_SEGMENT_S = 15.0


class MissingSpeech(ValueError):
    """A condition needs speech the split does not have."""


def speech_stream(n: int, clips: Sequence[np.ndarray], rng: np.random.Generator, *,
                  fast_slow: bool = False) -> np.ndarray:
    """One talker after another: random clips at random levels (12 dB spread) with short pauses."""
    x = np.zeros(n)
    pos = int(rng.uniform(*PAUSE_S) * SR)
    while pos < n:
        clip = clips[int(rng.integers(len(clips)))].astype(np.float32) / 32768.0
        if fast_slow:
            lo, hi = SLOW_RANGE if rng.random() < 0.5 else FAST_RANGE
            clip = change_speed(clip, float(rng.uniform(lo, hi)))
        m = min(len(clip), n - pos)
        x[pos:pos + m] += clip[:m] * _db(rng.uniform(-6, 6))
        pos += m + int(rng.uniform(*PAUSE_S) * SR)
    return x


def condition_stream(kind: SpeechCondition, duration_s: float, cfg: Ambient, speech: Sequence[np.ndarray],
                     non_english: Sequence[np.ndarray], rirs: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """One condition's stream as int16 at a level drawn from `cfg.level_dbfs_range`."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SR)
    source = non_english if kind is SpeechCondition.NON_ENGLISH_SPEECH else speech
    if not len(source):
        raise MissingSpeech(f"{kind.value}: the split has no "
                            f"{'non-English' if source is non_english else 'general'} speech clips")
    x = speech_stream(n, source, rng, fast_slow=kind is SpeechCondition.FAST_SLOW_SPEECH)
    x = _normalise(x, -20.0)
    if kind is SpeechCondition.TELEPHONE_SPEECH:
        x = telephone(x.astype(np.float32)).astype(np.float64)
    elif kind is SpeechCondition.FAR_FIELD_SPEECH:
        if not len(rirs):
            raise MissingSpeech(f"{kind.value}: the split has no room impulse responses (data_prep.rirs.count)")
        seg = int(FAR_FIELD_SEGMENT_S * SR)
        for a in range(0, n, seg):
            rir = rirs[int(rng.integers(len(rirs)))]
            x[a:a + seg] = reverberate(x[a:a + seg].astype(np.float32), rir)
        x = x + coloured_noise(n, rng) * _db(-25.0)
    elif kind is SpeechCondition.SPEECH_OVER_MUSIC:
        x = x + music_like(n, rng) * _db(-rng.uniform(0, 10))
    x = _normalise(x, rng.uniform(*cfg.level_dbfs_range))
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
