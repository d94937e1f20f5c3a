import numpy as np
import pytest

from components.common.config import Ambient, AmbientKind
from components.data_prep.ambient import ambient_file
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
