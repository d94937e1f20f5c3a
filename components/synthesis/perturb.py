"""Speaker perturbation: one synthetic voice becomes many speakers (men, women, children).

A clip is re-spoken by Praat's "Change gender" (PSOLA resynthesis, through praat-parselmouth, GPL-3.0+): a new
median pitch, a formant shift (vocal-tract length), a pitch-range factor and a duration factor. The target class
sets the pitch and the vocal-tract length; the formant shift is relative to the *source* voice's class, read
from its own median pitch, so a woman's voice made into a child's moves less than a man's.

Typical values (adult speech corpora, e.g. Peterson & Barney 1952; Hillenbrand et al. 1995): median F0 about
85-155 Hz for men, 165-255 Hz for women, 220-330 Hz for children; formants of women about 15 % and of children
about 30 % above men's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.config import PerturbationMethod, SpeakerClass, SpeakerPerturbation

PITCH_HZ = {SpeakerClass.MAN: (85.0, 155.0), SpeakerClass.WOMAN: (165.0, 255.0), SpeakerClass.CHILD: (220.0, 330.0)}
VOCAL_TRACT_SCALE = {SpeakerClass.MAN: 1.0, SpeakerClass.WOMAN: 1.15, SpeakerClass.CHILD: 1.3}
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 600.0
MALE_BELOW_HZ = 160.0  # a source whose median pitch is below this is read as a man's voice


@dataclass(frozen=True)
class Speaker:
    """One drawn target speaker. `formant_jitter` multiplies the class's vocal-tract scale."""

    target: SpeakerClass
    pitch_median_hz: float
    pitch_range_factor: float
    duration_factor: float
    formant_jitter: float
    seed: int = 0  # Praat's PSOLA draws random numbers: seeded per clip, so a clip is a function of its job

    def as_params(self) -> tuple[tuple[str, float | str], ...]:
        return (("speaker", self.target.value), ("f0", round(self.pitch_median_hz, 1)),
                ("f0_range", round(self.pitch_range_factor, 3)), ("dur", round(self.duration_factor, 3)),
                ("vtl", round(self.formant_jitter, 3)))


def draw_speaker(cfg: SpeakerPerturbation, rng: np.random.Generator) -> Speaker | None:
    """A target speaker, or None (clip left as synthesised) with probability 1 - cfg.probability."""
    keep = rng.random() >= cfg.probability
    w = np.asarray(cfg.class_weights, float)
    target = cfg.classes[int(rng.choice(len(cfg.classes), p=w / w.sum()))]
    speaker = Speaker(target, float(rng.uniform(*PITCH_HZ[target])), float(rng.uniform(*cfg.pitch_range_factor_range)),
                      float(rng.uniform(*cfg.duration_factor_range)),
                      float(1 + rng.uniform(-cfg.formant_jitter, cfg.formant_jitter)), int(rng.integers(1, 2 ** 31)))
    return None if keep or cfg.method is PerturbationMethod.NONE else speaker


def _sound(samples: np.ndarray, sr: int):
    import parselmouth

    return parselmouth.Sound(np.asarray(samples, np.float64), sampling_frequency=float(sr))


def _voiced_f0(samples: np.ndarray, sr: int) -> np.ndarray:
    from parselmouth.praat import call

    pitch = call(_sound(samples, sr), "To Pitch", 0.0, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    f0 = pitch.selected_array["frequency"]
    return f0[f0 > 0]


def median_pitch_hz(samples: np.ndarray, sr: int) -> float:
    """Median F0 over voiced frames (NaN when nothing is voiced)."""
    f0 = _voiced_f0(samples, sr)
    return float(np.median(f0)) if f0.size else float("nan")


MIN_PITCH_RATIO = 0.5  # the lowest new pitch stays at least half the new median


def safe_range_factor(f0: np.ndarray, factor: float) -> float:
    """Praat maps each pitch to new_median * (1 + (f0 / median - 1) * factor); with a wide contour (a creak, an
    octave jump) and a large factor that goes to zero or below and Praat's resynthesis never returns (measured:
    2 clips in 5,420). Cap the factor so that the lowest pitch stays above MIN_PITCH_RATIO of the median."""
    low = float(np.min(f0) / np.median(f0))
    return factor if low >= 1 else min(factor, (1 - MIN_PITCH_RATIO) / (1 - low))


def apply(samples: np.ndarray, sr: int, speaker: Speaker) -> np.ndarray:
    """The clip (float, any rate) spoken by `speaker`; the input is returned unchanged if it has no voicing."""
    import parselmouth
    from parselmouth.praat import call, run

    f0 = _voiced_f0(samples, sr)
    if not f0.size:
        return np.asarray(samples, np.float32)
    source_f0 = float(np.median(f0))
    factor = safe_range_factor(f0, speaker.pitch_range_factor)
    source = SpeakerClass.MAN if source_f0 < MALE_BELOW_HZ else SpeakerClass.WOMAN
    shift = VOCAL_TRACT_SCALE[speaker.target] / VOCAL_TRACT_SCALE[source] * speaker.formant_jitter
    run(f"random_initializeWithSeedUnsafelyButPredictably ({speaker.seed})\n")
    try:
        out = call(_sound(samples, sr), "Change gender", PITCH_FLOOR_HZ, PITCH_CEILING_HZ, shift,
                   speaker.pitch_median_hz, factor, speaker.duration_factor)
    except parselmouth.PraatError:  # too little voicing to resynthesise (measured: ~1 clip in 1,000)
        return np.asarray(samples, np.float32)
    y = np.asarray(out.values[0], np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y * (0.95 / peak) if peak > 0.999 else y


def formants_hz(samples: np.ndarray, sr: int) -> tuple[float, float]:
    """Median F1 and F2 over voiced frames (Burg), for measuring the speaker spread."""
    from parselmouth.praat import call

    snd = _sound(samples, sr)
    formant = call(snd, "To Formant (burg)", 0.0, 5, 5500.0, 0.025, 50.0)
    pitch = call(snd, "To Pitch", 0.0, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
    times = [t for t, f in zip(pitch.xs(), pitch.selected_array["frequency"]) if f > 0]
    if not times:
        return float("nan"), float("nan")
    f1 = [call(formant, "Get value at time", 1, t, "Hertz", "Linear") for t in times]
    f2 = [call(formant, "Get value at time", 2, t, "Hertz", "Linear") for t in times]
    return float(np.nanmedian(f1)), float(np.nanmedian(f2))


def spread(clips: list[tuple[np.ndarray, int]]) -> dict[str, dict[str, float]]:
    """Percentiles (5, 50, 95) of median F0, F1 and F2 over clips: how wide the speakers range."""
    rows = []
    for samples, sr in clips:
        rows.append((median_pitch_hz(samples, sr), *formants_hz(samples, sr)))
    out = {}
    for name, col in zip(("f0_hz", "f1_hz", "f2_hz"), np.asarray(rows, float).T if rows else [[], [], []]):
        col = np.asarray(col)[np.isfinite(col)]
        out[name] = ({f"p{q}": round(float(np.percentile(col, q)), 1) for q in (5, 50, 95)} | {"clips": int(col.size)}
                     if col.size else {"clips": 0})
    return out
