"""Speaker perturbation: the target pitch is reached, the vocal tract moves the formants, and a clip is a
function of its drawn speaker (Praat's PSOLA randomness is seeded)."""
import numpy as np
import pytest

from components.common.config import PerturbationMethod, SpeakerClass, SpeakerPerturbation
from components.synthesis import perturb

SR = 16_000


def _vowel(f0: float = 120.0, seconds: float = 1.0, formants=(700.0, 1200.0, 2600.0)) -> np.ndarray:
    """A glottal pulse train through three formant resonators: a sustained /a/ at `f0`."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    x = np.zeros(n)
    x[(np.arange(0, seconds, 1 / f0) * SR).astype(int)] = 1.0
    for f in formants:
        r = np.exp(-np.pi * 80 / SR)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def test_target_pitch_is_reached_and_formants_rise_for_a_child():
    x = _vowel()
    assert perturb.median_pitch_hz(x, SR) == pytest.approx(120, rel=0.05)
    child = perturb.Speaker(SpeakerClass.CHILD, 280.0, 1.0, 1.0, 1.0, seed=3)
    y = perturb.apply(x, SR, child)
    assert perturb.median_pitch_hz(y, SR) == pytest.approx(280, rel=0.08)
    f1_x, f2_x = perturb.formants_hz(x, SR)
    f1_y, f2_y = perturb.formants_hz(y, SR)
    assert f2_y > f2_x * 1.12  # a man's vocal tract (source pitch 120 Hz) scaled to a child's: +30 % nominal


def test_same_speaker_same_audio_and_the_seed_matters():
    x = _vowel(seconds=0.6)
    s = perturb.Speaker(SpeakerClass.WOMAN, 210.0, 1.3, 1.1, 1.02, seed=11)
    a, b = perturb.apply(x, SR, s), perturb.apply(x, SR, s)
    assert np.array_equal(a, b)
    assert len(a) == pytest.approx(len(x) * 1.1, rel=0.02)  # duration factor


def test_silence_is_left_alone():
    x = np.zeros(SR // 2, np.float32)
    assert np.array_equal(perturb.apply(x, SR, perturb.Speaker(SpeakerClass.MAN, 100, 1, 1, 1)), x)


def test_draws_cover_the_classes_and_respect_probability_and_method():
    cfg = SpeakerPerturbation(probability=1.0)
    rng = np.random.default_rng(0)
    drawn = [perturb.draw_speaker(cfg, rng) for _ in range(300)]
    assert {s.target for s in drawn} == set(SpeakerClass)
    for s in drawn:
        lo, hi = perturb.PITCH_HZ[s.target]
        assert lo <= s.pitch_median_hz <= hi
    half = SpeakerPerturbation(probability=0.5)
    kept = sum(perturb.draw_speaker(half, rng) is None for _ in range(400))
    assert 150 < kept < 250
    off = SpeakerPerturbation(method=PerturbationMethod.NONE)
    assert all(perturb.draw_speaker(off, rng) is None for _ in range(20))


def test_class_weights_must_match_classes():
    with pytest.raises(ValueError, match="class_weights"):
        SpeakerPerturbation(classes=[SpeakerClass.MAN], class_weights=[0.5, 0.5])


def test_a_wide_contour_never_drives_the_pitch_to_zero():
    """A creak at a third of the median with a 1.6 range factor once hung Praat's resynthesis forever."""
    f0 = np.array([60.0, 180.0, 185.0, 190.0, 200.0])
    factor = perturb.safe_range_factor(f0, 1.6)
    low = 1 + (60 / 185 - 1) * factor
    assert factor < 1.6 and low >= perturb.MIN_PITCH_RATIO - 1e-9
    assert perturb.safe_range_factor(np.array([170.0, 180.0, 190.0]), 1.2) == 1.2  # narrow contours untouched


def test_a_stuck_perturbation_fails_with_the_clip_named(monkeypatch):
    import multiprocessing as mp

    from components.data_prep import synth

    class Stuck:
        def next(self, timeout=None):
            raise mp.TimeoutError

    job = synth.Job("espeak", synth.Label.POSITIVE, "hey", "espeak:en-us+m1", (), 7)
    with pytest.raises(RuntimeError, match="hey.*perturbation.method=none"):
        list(synth._watched(Stuck(), [job]))
