"""Real-world channels: telephone band and codec, tape-like speed change, room reverberation."""
import numpy as np
import pytest
import scipy.signal  # noqa: F401  (the channels import it lazily: pay for it at collection, not in a test)

from components.synthesis.channels import change_speed, mu_law, reverberate, telephone

SR = 16_000


def tone(freq, seconds=1.0, amp=0.3, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms(x):
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def db(ratio):
    return 20 * np.log10(max(ratio, 1e-12))


def peak_hz(x, sr=SR):
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def middle(x):
    """Away from the filters' start-up and end transients."""
    n = len(x)
    return x[n // 4: 3 * n // 4]


# --- telephone ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [16000, 12345, 801])
def test_telephone_keeps_the_length_and_is_finite(n):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    y = telephone(x)
    assert y.shape == (n,)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))


def test_telephone_passes_1khz():
    x = tone(1000)
    y = telephone(x)
    assert abs(db(rms(middle(y)) / rms(middle(x)))) < 3.0
    assert peak_hz(middle(y)) == pytest.approx(1000, abs=10)


@pytest.mark.parametrize("freq", [6000, 100])
def test_telephone_attenuates_outside_the_band(freq):
    x = tone(freq)
    y = telephone(x)
    assert db(rms(middle(y)) / rms(middle(x))) < -20.0


def test_telephone_removes_energy_above_4khz_from_noise():
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    spec = np.abs(np.fft.rfft(middle(telephone(x)).astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(middle(x)), 1 / SR)
    assert spec[freqs > 4200].sum() < 1e-3 * spec.sum()


# --- mu-law -------------------------------------------------------------------------------------------------

def test_mu_law_round_trip_is_close_for_mid_level_signals():
    x = np.random.default_rng(2).uniform(0.05, 0.8, 5000) * np.random.default_rng(3).choice([-1, 1], 5000)
    y = mu_law(x)
    # half a step of 8-bit mu-law is at most ~2.2 % of the value (plus a tiny floor near zero)
    assert np.all(np.abs(y - x) <= 0.025 * np.abs(x) + 1e-3)
    assert np.all(np.sign(y) == np.sign(x))
    assert np.abs(y - x).max() > 0  # it does quantise


def test_mu_law_output_is_within_unit_range_and_odd():
    x = np.linspace(-3, 3, 6001)
    y = mu_law(x)
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert y.max() == pytest.approx(1.0, abs=1e-6) and y.min() == pytest.approx(-1.0, abs=1e-6)
    np.testing.assert_allclose(mu_law(-x), -y, atol=1e-7)
    assert mu_law(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_mu_law_has_at_most_255_levels_at_8_bits():
    x = np.linspace(-1.2, 1.2, 400_001)
    assert 200 < len(np.unique(mu_law(x))) <= 255
    assert len(np.unique(mu_law(x, bits=4))) <= 15


def test_mu_law_is_monotonic():
    x = np.linspace(-1, 1, 20001)
    assert np.all(np.diff(mu_law(x)) >= 0)


# --- speed --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [1.25, 0.8, 2.0, 0.7, 1.45])
def test_change_speed_length(factor):
    x = np.random.default_rng(4).standard_normal(16000).astype(np.float32)
    y = change_speed(x, factor)
    assert abs(len(y) - len(x) / factor) <= 2
    assert np.all(np.isfinite(y))


def test_change_speed_raises_the_pitch_like_a_tape():
    y = change_speed(tone(500), 2.0)
    assert peak_hz(y) == pytest.approx(1000, abs=10)
    y = change_speed(tone(1000), 0.8)
    assert peak_hz(y) == pytest.approx(800, abs=10)


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_change_speed_rejects_non_positive_factors(factor):
    with pytest.raises(ValueError):
        change_speed(tone(500), factor)


# --- reverberation ------------------------------------------------------------------------------------------

def test_reverberate_with_a_delta_returns_the_input():
    x = np.random.default_rng(5).standard_normal(4000).astype(np.float32) * 0.2
    rir = np.zeros(300, np.float32)
    rir[37] = 1.0
    y = reverberate(x, rir)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-5)


def test_reverberate_aligns_on_the_direct_path_and_keeps_the_rms():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(8000) * 0.2).astype(np.float32)
    rir = np.zeros(4000, np.float32)
    rir[120] = 1.0
    tail = np.arange(4000 - 121)
    rir[121:] = rng.standard_normal(len(tail)) * 0.3 * np.exp(-tail / 600)
    y = reverberate(x, rir)
    assert y.shape == x.shape
    assert rms(y) == pytest.approx(rms(x), rel=1e-4)
    assert not np.allclose(y, x, atol=1e-3)  # it did reverberate
    # aligned on the direct path: the output correlates best with the input at lag 0
    corr = [np.dot(x[:7000], y[lag:lag + 7000]) for lag in range(0, 200)]
    assert int(np.argmax(corr)) == 0


@pytest.mark.parametrize("rir", [np.zeros(500, np.float32), np.zeros(0, np.float32)])
def test_reverberate_without_a_response_returns_a_copy(rir):
    x = np.random.default_rng(7).standard_normal(1000).astype(np.float32)
    y = reverberate(x, rir)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
