import numpy as np
import pytest
import soundfile as sf

from components.common.artifacts import QuarantineReason
from components.common.config import Quality
from components.common.storage import materialize
from components.data_prep.ingest import Quarantined, condition, load_source_file
from tests.factories import broken_files, speechlike, write

Q = Quality()


def _load(path, trim=True, min_s=Q.min_clip_duration_s):
    [src] = materialize(str(path), path.parent)
    return load_source_file(src, Q, trim=trim, min_duration_s=min_s)


def test_each_broken_file_gets_its_reason(tmp_path):
    for name, (path, reason) in broken_files(tmp_path).items():
        with pytest.raises(Quarantined) as e:
            _load(path)
        assert e.value.reason is QuarantineReason(reason), f"{name}: {e.value}"
        assert e.value.detail, name


def test_8khz_stereo_is_resampled_to_16khz_mono(tmp_path):
    left = speechlike(1.5, sr=8_000, seed=5)
    stereo = np.stack([left, 0.5 * left], axis=1)
    out = _load(write(tmp_path / "stereo8k.wav", stereo, sr=8_000, subtype="PCM_16"), trim=False)
    assert out.dtype == np.int16 and out.ndim == 1
    assert len(out) == pytest.approx(1.5 * 16_000, abs=2)
    # The mono mix keeps the 0.75 average gain of the two channels.
    assert np.sqrt(np.mean((out / 32768.0) ** 2)) == pytest.approx(
        0.75 * np.sqrt(np.mean(left.astype(np.float64) ** 2)), rel=0.05)


@pytest.mark.parametrize("fmt,sr,kw", [("flac", 44_100, {}), ("ogg", 22_050, {"subtype": "VORBIS"}),
                                       ("wav", 48_000, {"subtype": "FLOAT"})])
def test_formats_and_rates(tmp_path, fmt, sr, kw):
    out = _load(write(tmp_path / f"clip.{fmt}", speechlike(1.0, sr=sr, seed=6), sr=sr, **kw), trim=False)
    assert len(out) == pytest.approx(16_000, abs=2)


def test_leading_and_trailing_silence_is_trimmed(tmp_path):
    x = speechlike(1.0, seed=7, lead_silence_s=1.0)  # 1 s silence, 1 s speech, 1 s silence
    out = _load(write(tmp_path / "padded.wav", x, subtype="PCM_16"))
    # 1 s of speech plus at most 100 ms padding on each side (and one 10 ms frame of slack).
    assert 1.0 <= len(out) / 16_000 <= 1.0 + 2 * Q.trim_padding_ms / 1000 + 0.02


def test_condition_rejects_clipping_only_above_limit():
    x = speechlike(1.0, seed=8)[:, None]
    x[:50] = 1.0  # 0.3% of samples at full scale: within the 1% limit
    assert condition(x, 16_000, Q, trim=False, min_duration_s=0.1).size == 16_000
    x[:400] = 1.0  # 2.5%
    with pytest.raises(Quarantined) as e:
        condition(x, 16_000, Q, trim=False, min_duration_s=0.1)
    assert e.value.reason is QuarantineReason.CLIPPED and "2.5%" in e.value.detail


def test_int16_roundtrip_is_exact(tmp_path):
    x = np.round(speechlike(1.0, seed=9) * 32767) / 32767
    out = _load(write(tmp_path / "pcm.wav", x, subtype="PCM_16"), trim=False)
    ref, _ = sf.read(str(tmp_path / "pcm.wav"), dtype="int16")
    assert np.max(np.abs(out.astype(int) - ref.astype(int))) <= 1
