"""Batched waveform ops: realised SNR follows the curriculum, RIR convolution, NumPy/CuPy parity, degenerate input.

Every measurement is taken from what `augment_batch` returns (int16), the way the feature frontend sees it.
"""
import math

import numpy as np
import pytest
from scipy.signal import fftconvolve

from components.augmentation import ops
from components.augmentation.schedule import progress_at, snr_range
from components.common import xp as xpmod
from components.common.config import AugmentOps, ScheduleShape, SnrSchedule
from tests.factories import speechlike

SR = 16_000
N = SR  # 1 s windows keep the batches small
RIR_MAX = SR // 4
ALL_OFF = dict(speed_probability=0.0, eq_probability=0.0, band_stop_probability=0.0, rir_probability=0.0,
               background_probability=0.0, colored_noise_probability=0.0, gain_probability=0.0)
ALL_ON = {k: 1.0 for k in ALL_OFF}


def only(**on: float) -> AugmentOps:
    return AugmentOps(**{**ALL_OFF, **on})


def clean_batch(b: int, seed: int, level: float = 0.1, n: int = N):
    """Speech-like clips of 0.3-0.7 s at random places in silent n-sample windows."""
    rng = np.random.default_rng(seed)
    clean = np.zeros((b, n), np.float32)
    start, end = np.zeros(b, np.int64), np.zeros(b, np.int64)
    for i in range(b):
        x = speechlike(rng.uniform(0.3, 0.7), seed=seed * 1000 + i, level=level)
        s = int(rng.integers(0, n - len(x)))
        clean[i, s:s + len(x)] = x
        start[i], end[i] = s, s + len(x)
    return clean, start, end, (start + end) // 2


def backgrounds(seed: int = 0) -> list[np.ndarray]:
    """int16 long-form noise, as data_prep stores it; one shorter than a window (looped by `_segment`)."""
    rng = np.random.default_rng(seed)
    white = (rng.standard_normal(3 * SR) * 2000).astype(np.int16)
    hum = (speechlike(2.5, seed=seed + 1, level=0.2) * 32767).astype(np.int16)
    short = (rng.standard_normal(SR // 3) * 500).astype(np.int16)
    return [white, hum, short]


def realised_snr_db(pcm: np.ndarray, clean: np.ndarray, start, end) -> np.ndarray:
    noise = pcm.astype(np.float64) / 32767 - clean
    out = []
    for i in range(len(pcm)):
        s, e = start[i], end[i]
        out.append(10 * math.log10(np.sum(clean[i, s:e].astype(np.float64) ** 2) / np.sum(noise[i, s:e] ** 2)))
    return np.array(out)


def empty_bank(xp=np, n: int = N) -> ops.RirBank:
    return ops.RirBank([], n, RIR_MAX, xp)


# --------------------------------------------------------------------------------------------------
# SNR and the curriculum


SCHEDULE = dict(start_db_range=(20.0, 30.0), end_db_range=(-5.0, 10.0))


@pytest.mark.parametrize("shape", list(ScheduleShape))
@pytest.mark.parametrize("noise", ["background", "colored", "both"])
def test_realised_snr_follows_the_schedule_within_half_a_db(shape, noise):
    epochs, b = 5, 48
    schedule = SnrSchedule(**SCHEDULE, shape=shape)
    aug_ops = only(background_probability=float(noise != "colored"),
                   colored_noise_probability=float(noise != "background"))
    bank, bgs = empty_bank(), backgrounds()
    means = []
    for epoch in range(epochs):
        lo, hi = snr_range(schedule, epoch, epochs)
        clean, start, end, anchor = clean_batch(b, seed=100 + epoch)
        rng = np.random.default_rng([7, epoch])
        p = ops.draw_params(rng, start, end, anchor, N, aug_ops, (lo, hi), 0, bgs, np.ones(b, bool))
        pcm = ops.augment_batch(clean, p, bank, np)
        assert pcm.dtype == np.int16 and pcm.shape == (b, N)
        assert np.abs(pcm).max() < ops.PEAK_LIMIT * 32767, "the peak guard would distort the measurement"
        assert not np.isnan(p.snr_db).any(), "every clip gets noise here"
        assert np.all((p.snr_db >= lo) & (p.snr_db <= hi)), f"epoch {epoch}: targets outside [{lo}, {hi}]"
        realised = realised_snr_db(pcm, clean, start, end)
        err = np.abs(realised - p.snr_db)
        assert err.max() <= 0.5, f"epoch {epoch}: realised SNR off by up to {err.max():.3f} dB"
        means.append(realised.mean())
    # Easy to hard: the batches get noisier every epoch.
    assert all(a > b_ for a, b_ in zip(means, means[1:])), means


@pytest.mark.parametrize("shape", list(ScheduleShape))
def test_schedule_moves_from_start_to_end_range(shape):
    schedule = SnrSchedule(**SCHEDULE, shape=shape)
    epochs = 5
    ranges = [snr_range(schedule, e, epochs) for e in range(epochs)]
    assert ranges[0] == pytest.approx(SCHEDULE["start_db_range"])
    assert ranges[-1] == pytest.approx(SCHEDULE["end_db_range"])
    for (lo0, hi0), (lo1, hi1) in zip(ranges, ranges[1:]):
        assert lo1 < lo0 and hi1 < hi0
        assert lo1 <= hi1
    # Halfway through, both shapes are at the midpoint of start and end.
    assert ranges[2] == pytest.approx((7.5, 20.0))
    t1 = progress_at(1, epochs, shape)
    if shape is ScheduleShape.COSINE:
        assert t1 == pytest.approx((1 - math.cos(math.pi / 4)) / 2)  # 0.1464: eases in
        assert ranges[1] == pytest.approx((20 - 25 * t1, 30 - 20 * t1))
    else:
        assert t1 == pytest.approx(0.25)
        assert ranges[1] == pytest.approx((13.75, 25.0))


def test_cosine_midpoint_for_an_even_epoch_count():
    schedule = SnrSchedule(**SCHEDULE, shape=ScheduleShape.COSINE)
    # 4 epochs: t = (1 - cos(pi * e / 3)) / 2 -> 0, 1/4, 3/4, 1.
    expected = [0.0, 0.25, 0.75, 1.0]
    for e, t in enumerate(expected):
        assert progress_at(e, 4, ScheduleShape.COSINE) == pytest.approx(t)
        assert snr_range(schedule, e, 4) == pytest.approx((20 - 25 * t, 30 - 20 * t))


def test_a_single_epoch_uses_the_start_range():
    for shape in ScheduleShape:
        assert snr_range(SnrSchedule(**SCHEDULE, shape=shape), 0, 1) == pytest.approx((20.0, 30.0))


def test_gain_scales_signal_and_noise_together():
    b = 16
    clean, start, end, anchor = clean_batch(b, seed=3)
    aug_ops = only(background_probability=1.0, gain_probability=1.0)
    p = ops.draw_params(np.random.default_rng(1), start, end, anchor, N, aug_ops.model_copy(
        update={"gain_db_range": (-12.0, 0.0)}), (0.0, 20.0), 0, backgrounds(), np.ones(b, bool))
    pcm = ops.augment_batch(clean, p, empty_bank(), np)
    g = 10 ** (p.gain_db / 20)
    scaled = pcm.astype(np.float64) / g[:, None]  # undo the gain: what was mixed before it
    realised = realised_snr_db(scaled.round().astype(np.int64), clean, start, end)
    assert np.abs(realised - p.snr_db).max() <= 0.5


# --------------------------------------------------------------------------------------------------
# Room impulse responses


def synthetic_rir(delay: int, length: int, seed: int, scale: float = 0.3, decay: float = 300.0) -> np.ndarray:
    """Silence, a direct path at `delay` and a decaying noise tail; peak `scale` (the bank normalises it)."""
    rng = np.random.default_rng(seed)
    r = np.zeros(length, np.float32)
    t = np.arange(length - delay - 1)
    r[delay + 1:] = 0.25 * rng.standard_normal(t.size) * np.exp(-t / decay)
    r[delay] = 1.0
    return (r * scale).astype(np.float32)


def test_convolve_rir_matches_scipy_fftconvolve():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4000))
    for rir in (synthetic_rir(17, 900, seed=1), rng.standard_normal(1), rng.standard_normal(4097)):
        ours = ops.convolve_rir(x, rir, np)
        ref = np.stack([fftconvolve(row, rir) for row in x])
        assert ours.shape == ref.shape == (3, 4000 + len(rir) - 1)
        np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max(), rtol=0)


def test_augment_batch_reverb_is_fftconvolve_shifted_by_the_direct_path():
    from components.common.config import RoomImpulseResponses
    from components.synthesis.rirs import room_impulse_response

    room, _ = room_impulse_response(RoomImpulseResponses(max_image_order=6, rt60_s_range=(0.2, 0.4)), seed=5)
    rirs = [synthetic_rir(0, 1200, seed=2), synthetic_rir(37, 3000, seed=3, scale=2.0),
            synthetic_rir(150, RIR_MAX + 2000, seed=4),  # longer than the bank keeps: truncated
            room]
    b = 8
    clean, start, end, anchor = clean_batch(b, seed=9, level=0.05)
    bank = ops.RirBank(rirs, N, RIR_MAX, np)
    p = ops.draw_params(np.random.default_rng(2), start, end, anchor, N, only(rir_probability=1.0), (0, 0),
                        len(rirs), [], np.ones(b, bool))
    p.rir_index[:] = np.arange(b) % len(rirs)  # every RIR, twice
    pcm = ops.augment_batch(clean, p, bank, np)
    for i in range(b):
        r = rirs[p.rir_index[i]][:RIR_MAX]
        r = r / np.abs(r).max()
        delay = int(np.argmax(np.abs(r)))
        assert bank.delays[p.rir_index[i]] == delay
        expected = fftconvolve(clean[i].astype(np.float64), r)[delay:delay + N]
        assert np.abs(expected).max() < 0.9, "keep the level below the peak guard"
        np.testing.assert_allclose(pcm[i] / 32767, expected, atol=1.5 / 32767, rtol=0)
    # The direct path stays where the speech was placed: with a causal RIR (nothing before the direct path;
    # the room RIR's fractional-delay filter rings a little before it) the silence before the speech stays.
    for i in np.flatnonzero(p.rir_index < 3):
        assert not pcm[i, :start[i]].any()
        assert pcm[i, start[i]:end[i]].any()


# --------------------------------------------------------------------------------------------------
# Backend choice and NumPy/CuPy parity


def _gpu_usable() -> bool:
    return xpmod.gpu_status()[0]


def test_gpu_request_without_a_gpu_fails_naming_the_key():
    if _gpu_usable():
        pytest.skip("a GPU is usable here; the failure path is covered by the monkeypatched test")
    with pytest.raises(xpmod.GPUUnavailableError, match=r"augmentation\.device") as e:
        xpmod.select("gpu", key="augmentation.device")
    assert "auto" in str(e.value)  # says how to fall back
    backend = xpmod.select("auto", key="augmentation.device")
    assert backend.name == "numpy" and backend.xp is np and not backend.is_gpu
    assert backend.reason.startswith("augmentation.device=auto") and "NumPy" in backend.reason


def test_backend_choice_follows_gpu_status(monkeypatch):
    monkeypatch.setattr(xpmod, "gpu_status", lambda: (False, "no driver here"))
    with pytest.raises(xpmod.GPUUnavailableError, match=r"augmentation\.device is 'gpu'.*no driver here"):
        xpmod.select("gpu", key="augmentation.device")
    auto = xpmod.select(xpmod.ComputeDevice.AUTO, key="augmentation.device")
    assert auto.name == "numpy" and "no driver here" in auto.reason
    cpu = xpmod.select("cpu", key="augmentation.device")
    assert cpu.name == "numpy" and cpu.reason == "augmentation.device=cpu"
    with pytest.raises(ValueError):
        xpmod.select("tpu")


def _all_ops_batch(b: int = 16, seed: int = 11):
    clean, start, end, anchor = clean_batch(b, seed=seed)
    rirs = [synthetic_rir(d, 2500, seed=d) for d in (0, 40, 90)]
    p = ops.draw_params(np.random.default_rng(seed), start, end, anchor, N, AugmentOps(**ALL_ON), (-5.0, 20.0),
                        len(rirs), backgrounds(), np.ones(b, bool))
    return clean, p, rirs


@pytest.mark.gpu
def test_numpy_and_cupy_agree_on_the_same_params():
    import cupy

    clean, p, rirs = _all_ops_batch()
    ref, ref_x, ref_noise = ops.augment_batch(clean, p, ops.RirBank(rirs, N, RIR_MAX, np), np, return_parts=True)
    got, got_x, got_noise = ops.augment_batch(clean, p, ops.RirBank(rirs, N, RIR_MAX, cupy), cupy,
                                              return_parts=True)
    assert isinstance(got, np.ndarray) and got.dtype == np.int16 and got.shape == ref.shape
    # Both run the same float32 arithmetic; cuFFT and pocketfft (and the reductions for the SNR and peak)
    # differ by float32 rounding (~1e-6 of full scale, well under 0.1 LSB), which can still move a sample
    # across a rounding boundary: at most 1 LSB, 2 allowed for the rare sample where two such steps add up.
    diff = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() <= 2, f"max diff {diff.max()} LSB"
    assert diff.mean() < 0.1
    np.testing.assert_allclose(got_x, ref_x, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_noise, ref_noise, atol=1e-4, rtol=0)


def test_numpy_path_is_deterministic_with_every_op_on():
    clean, p, rirs = _all_ops_batch()
    a = ops.augment_batch(clean, p, ops.RirBank(rirs, N, RIR_MAX, np), np)
    b = ops.augment_batch(clean, p, ops.RirBank(rirs, N, RIR_MAX, np), np)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= math.ceil(ops.PEAK_LIMIT * 32767)


# --------------------------------------------------------------------------------------------------
# Degenerate input


def test_silent_clip_stays_silent():
    """Silence has no power to set an SNR against, so no noise is mixed in: the output is exact silence
    (finite, no NaN from 0/0), whatever else is switched on."""
    b = 4
    clean = np.zeros((b, N), np.float32)
    start, end = np.full(b, 1000), np.full(b, 9000)
    p = ops.draw_params(np.random.default_rng(0), start, end, (start + end) // 2, N, AugmentOps(**ALL_ON),
                        (0.0, 10.0), 2, backgrounds(), np.ones(b, bool))
    assert not np.isnan(p.snr_db).any()  # a target was drawn ...
    pcm, x, noise = ops.augment_batch(clean, p, ops.RirBank([synthetic_rir(5, 500, 1)] * 2, N, RIR_MAX, np), np,
                                      return_parts=True)
    assert np.isfinite(x).all() and np.isfinite(noise).all()
    assert not pcm.any()  # ... but nothing was mixed
    assert not noise.any()


def test_empty_speech_region_is_not_mixed():
    b = 2
    clean, _, _, anchor = clean_batch(b, seed=4)
    start = end = np.array([100, 5000])  # [s, s): no samples to measure the speech over
    p = ops.draw_params(np.random.default_rng(0), start, end, anchor, N, only(background_probability=1.0),
                        (0.0, 10.0), 0, backgrounds(), np.ones(b, bool))
    pcm = ops.augment_batch(clean, p, empty_bank(), np)
    np.testing.assert_allclose(pcm / 32767, clean, atol=1 / 32767)


def test_no_backgrounds_means_no_background_mixing():
    b = 6
    clean, start, end, anchor = clean_batch(b, seed=5)
    p = ops.draw_params(np.random.default_rng(0), start, end, anchor, N, only(background_probability=1.0),
                        (0.0, 10.0), 0, [], np.ones(b, bool))
    assert np.isnan(p.snr_db).all()
    assert not p.background.any() and not p.colored_gain.any()
    pcm = ops.augment_batch(clean, p, empty_bank(), np)
    np.testing.assert_allclose(pcm / 32767, clean, atol=1 / 32767)
    # Coloured noise still works without background files.
    q = ops.draw_params(np.random.default_rng(0), start, end, anchor, N,
                        only(background_probability=1.0, colored_noise_probability=1.0), (0.0, 10.0), 0, [],
                        np.ones(b, bool))
    assert not np.isnan(q.snr_db).any() and np.all(q.colored_gain == 1.0)
    realised = realised_snr_db(ops.augment_batch(clean, q, empty_bank(), np), clean, start, end)
    assert np.abs(realised - q.snr_db).max() <= 0.5


def test_unmixable_rows_get_no_noise_and_no_target():
    b = 4
    clean, start, end, anchor = clean_batch(b, seed=6)
    mixable = np.array([True, False, True, False])
    p = ops.draw_params(np.random.default_rng(0), start, end, anchor, N,
                        only(background_probability=1.0, colored_noise_probability=1.0), (0.0, 10.0), 0,
                        backgrounds(), mixable)
    assert np.isnan(p.snr_db[~mixable]).all() and not np.isnan(p.snr_db[mixable]).any()
    pcm = ops.augment_batch(clean, p, empty_bank(), np)
    np.testing.assert_allclose(pcm[~mixable] / 32767, clean[~mixable], atol=1 / 32767)


def test_no_rirs_means_no_reverberation():
    b = 4
    clean, start, end, anchor = clean_batch(b, seed=7)
    p = ops.draw_params(np.random.default_rng(0), start, end, anchor, N, only(rir_probability=1.0), (0, 0), 0,
                        [], np.ones(b, bool))
    assert np.all(p.rir_index == -1)
    np.testing.assert_allclose(ops.augment_batch(clean, p, empty_bank(), np) / 32767, clean, atol=1 / 32767)


def test_clip_shorter_than_the_frontend_window_has_no_frames():
    from components.common.frontend import features_uint16, n_frames

    for n in (0, 100, 479):
        feats = features_uint16(np.zeros(n, np.int16))
        assert feats.shape == (0, 40) and feats.dtype == np.uint16
        assert n_frames(n) == 0
    assert features_uint16(np.zeros(480, np.int16)).shape == (1, 40) and n_frames(480) == 1


def test_speed_change_keeps_the_anchor_in_place():
    b = 6
    clean, start, end, _ = clean_batch(b, seed=12)
    anchor = end.copy()  # positives: the end of the wake word stays put
    p = ops.draw_params(np.random.default_rng(0), start, end, anchor, N, only(speed_probability=1.0), (0, 0), 0,
                        [], np.ones(b, bool))
    assert np.all(p.speed != 1.0)
    pcm = ops.augment_batch(clean, p, empty_bank(), np)
    for i in range(b):
        a = anchor[i] - 1  # the last speech sample maps onto itself (to within interpolation)
        assert abs(pcm[i, a] / 32767 - clean[i, a]) <= 2 / 32767 + abs(clean[i, a] - clean[i, a - 1])
        # Faster speech (factor > 1) is shorter: it starts later; slower starts earlier.
        # (cut at the window start when it no longer fits).
        nz = np.flatnonzero(pcm[i])
        assert anchor[i] - nz[0] == pytest.approx(min((end[i] - start[i]) / p.speed[i], anchor[i]), abs=3)
        assert nz[-1] < anchor[i] + 1
