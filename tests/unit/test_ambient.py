import numpy as np
import pytest

from components.common.config import Ambient, AmbientKind
from components.synthesis.ambient import ambient_file
from tests.factories import speechlike


@pytest.mark.parametrize("kind", list(AmbientKind))
def test_level_duration_and_determinism(kind):
    cfg = Ambient(level_dbfs_range=(-30.0, -25.0))
    speech = [(speechlike(1.5, seed=i) * 32767).astype(np.int16) for i in range(5)]
    a = ambient_file(12.0, kind, cfg, speech, seed=3)
    assert a.dtype == np.int16 and len(a) == 12 * 16_000
    level = 20 * np.log10(np.sqrt(np.mean((a / 32768.0) ** 2)))
    assert -30.1 <= level <= -24.9
    assert np.array_equal(a, ambient_file(12.0, kind, cfg, speech, seed=3))
    assert not np.array_equal(a, ambient_file(12.0, kind, cfg, speech, seed=4))


def test_noise_is_not_flat_over_time():
    a = ambient_file(20.0, AmbientKind.NOISE, Ambient(kinds=[AmbientKind.NOISE]), [], seed=1) / 32768.0
    per_second = 20 * np.log10(np.sqrt(np.mean(a.reshape(20, -1) ** 2, axis=1)))
    assert per_second.max() - per_second.min() > 2.0  # levels drift like a room, not a test tone


def test_channel_speech_and_hum_streams_are_seeded_and_sound_like_their_kind():
    import numpy as np

    from components.common.config import Ambient, AmbientKind
    from components.synthesis import ambient as amb

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    speech = [(np.sin(2 * np.pi * 180 * t) * 8000 * (1 + i)).astype(np.int16) for i in range(3)]
    cfg = Ambient(kinds=[AmbientKind.CHANNEL_SPEECH, AmbientKind.HUM])
    a = amb.ambient_file(5.0, AmbientKind.CHANNEL_SPEECH, cfg, speech, seed=3)
    assert np.array_equal(a, amb.ambient_file(5.0, AmbientKind.CHANNEL_SPEECH, cfg, speech, seed=3))
    x = amb.channel_speech(5 * 16000, speech, np.random.default_rng(1))
    frames = np.abs(x).reshape(-1, 800).max(axis=1)
    assert (frames < 0.05 * frames.max()).any() and (frames > 0.3 * frames.max()).any()  # talk, then gaps
    hum = amb.hum(16000, rng)
    spec = np.abs(np.fft.rfft(hum))
    f = np.fft.rfftfreq(16000, 1 / 16000)
    assert f[np.argmax(spec)] in (50, 60, 100, 120, 150, 180, 200, 240, 250, 300, 350, 360, 420)  # a mains harmonic
