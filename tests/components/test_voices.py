"""The neural voices and the synthesis plan: Kokoro and hibari speak English offline and deterministically,
the plan spreads engines and target speakers as configured, and the content cache gives back the very clips
a cold run made."""
import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from components.common.artifacts import Label
from components.common.config import load_config
from components.data_prep import synth
from components.synthesis import neural_tts
from components.data_prep.synth_cache import SynthCache


def _config(*sets):
    return load_config("smoke", overrides=[
        "data_prep.positives.piper_clips=2", "data_prep.positives.espeak_clips=4",
        "data_prep.positives.kokoro_clips=3", "data_prep.positives.hibari_clips=3",
        "data_prep.adversarial.piper_clips=0", "data_prep.adversarial.espeak_clips=2",
        "data_prep.speech.piper_clips=1", "data_prep.speech.espeak_clips=2", "data_prep.speech.hibari_clips=2",
        "data_prep.other_languages.espeak_clips=2", *sets], wake_word="hey chatterbox")


def _digest(clips):
    return hashlib.sha256(b"".join(c.samples.tobytes() for c in clips)).hexdigest()


@pytest.mark.slow
def test_kokoro_and_hibari_speak_english_deterministically():
    kokoro = neural_tts._Kokoro()
    hibari = neural_tts._Hibari()
    for engine, job in ((kokoro, neural_tts.NeuralJob("kokoro", "Hey chatterbox", "jm_kumo", 1.0, "us")),
                        (kokoro, neural_tts.NeuralJob("kokoro", "Hey chatterbox", "blend-01", 1.1, "gb")),
                        (hibari, neural_tts.NeuralJob("hibari", "Hey chatterbox", "heart", 0.9, "us", seed=4))):
        a = engine.synthesize(job)
        assert 0.5 < len(a) / neural_tts.KOKORO_SR < 4 and np.abs(a).max() > 0.05
        assert np.array_equal(a, engine.synthesize(job))
    assert neural_tts.blend_recipe("blend-03") == neural_tts.blend_recipe("blend-03")
    assert "ʧ" in neural_tts.phonemes("hey chatterbox")  # misaki-style phonemes, from the offline G2P


def test_plan_spreads_engines_families_and_speakers():
    cfg = _config()
    jobs = synth.plan(cfg, synth.label_texts(cfg))
    pos = [j for j in jobs if j.label is Label.POSITIVE]
    assert [j.engine for j in pos].count("kokoro") == 3 and [j.engine for j in pos].count("hibari") == 3
    assert {j.family for j in pos if j.engine == "hibari"} == {"hibari:heart"}
    assert all(j.family.startswith("kokoro:") for j in pos if j.engine == "kokoro")
    other = [j for j in jobs if j.family == synth.OTHER_LANGUAGE_FAMILY]
    assert len(other) == 2 and all(j.voice.split(":")[1].split("+")[0] in cfg.data_prep.other_languages.languages
                                   for j in other)
    assert sum(j.speaker is not None for j in jobs) > len(jobs) // 2  # probability 0.85
    off = _config("data_prep.perturbation.method=none")
    assert all(j.speaker is None for j in synth.plan(off, synth.label_texts(off)))


@pytest.mark.slow
def test_a_warm_cache_gives_the_cold_run_clips(tmp_path):
    cfg = _config()
    jobs = synth.plan(cfg, synth.label_texts(cfg))
    cold_cache = SynthCache(tmp_path)
    cold, rej_cold = synth.run_jobs(jobs, cfg, 1, lambda it, **_: it, cold_cache)
    warm_cache = SynthCache(tmp_path)
    warm, rej_warm = synth.run_jobs(jobs, cfg, 1, lambda it, **_: it, warm_cache)
    assert cold_cache.hits == 0 and warm_cache.misses == 0 and warm_cache.hits == cold_cache.misses > 0
    assert _digest(cold) == _digest(warm) and rej_cold == rej_warm
    assert {c.source for c in cold} == {"piper", "espeak", "kokoro", "hibari"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_synthesis_needs_no_network():
    """Every engine synthesises inside a network namespace with no interface up (`unshare -rn`)."""
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("this kernel does not allow an unprivileged network namespace")
    code = (
        "from components.synthesis import neural_tts, piper_tts, espeak\n"
        "k = neural_tts._Kokoro().synthesize(neural_tts.NeuralJob('kokoro', 'hey there', 'jf_alpha', 1.0, 'us'))\n"
        "h = neural_tts._Hibari().synthesize(neural_tts.NeuralJob('hibari', 'hey there', 'heart', 1.0, 'gb'))\n"
        "p = next(piper_tts.synthesize_many([piper_tts.PiperJob('hey there', 1.0, 0.6, 0.8)], seed=0))[0]\n"
        "e = espeak._Engine().synthesize(espeak.EspeakJob('hey there', 'en-us+m3', 160, 50))\n"
        "assert min(len(k), len(h), len(p), len(e)) > 1000, (len(k), len(h), len(p), len(e))\n"
        "print('offline ok')\n")
    out = subprocess.run(["unshare", "-rn", sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "offline ok" in out.stdout
