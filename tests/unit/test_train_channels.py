"""Training channels: same length, finite, level kept where promised, and each does what its name says."""
import numpy as np
import pytest

from components.synthesis import channels as ch
from components.common.config import Channel

SR = 16_000


def _speechlike(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 660, 1500, 3000, 5500, 7000), 1))
    return (0.1 * x * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.005 * rng.standard_normal(SR)).astype(np.float32)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_keeps_length_and_is_finite_and_deterministic(channel):
    x = _speechlike()
    settings = ch.draw_channel(channel, np.random.default_rng(1))
    y = ch.apply_channel(x, channel, settings)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(y, ch.apply_channel(x, channel, settings))
    assert not np.allclose(y, x, atol=1e-4)  # the channel changed something


def test_narrowband_channels_remove_the_top_band():
    x = _speechlike()
    for channel in (Channel.TELEPHONE, Channel.GSM):
        y = ch.apply_channel(x, channel, ch.draw_channel(channel, np.random.default_rng(0)))
        assert _band_energy(y, 4500, 8000) < 0.01 * _band_energy(x, 4500, 8000)


def test_level_channels_keep_rms_and_clipping_flattens_peaks():
    x = _speechlike()
    rms = float(np.sqrt(np.mean(x ** 2)))
    for channel in (Channel.AGC, Channel.CLIPPING):
        y = ch.apply_channel(x, channel, ch.draw_channel(channel, np.random.default_rng(2)))
        assert float(np.sqrt(np.mean(y ** 2))) == pytest.approx(rms, rel=0.02)
    hard = ch.apply_channel(x, Channel.CLIPPING, {"drive_db": 20.0, "soft": 0.0})
    assert np.mean(np.abs(hard) >= 0.999 * np.abs(hard).max()) > 0.05  # many samples sit at the clip level


def test_microphone_rolls_off_the_lows():
    x = _speechlike()
    y = ch.apply_channel(x, Channel.MICROPHONE, {"highpass_hz": 400.0, "lowpass_hz": 7000.0, "peak_hz": 3000.0,
                                                 "peak_db": 6.0})
    assert _band_energy(y, 150, 300) < 0.5 * _band_energy(x, 150, 300)
