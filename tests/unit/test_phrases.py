import numpy as np

from components.synthesis import espeak
from components.data_prep.phrases import adversarial_phrases, rendition_texts, speech_sentences


def test_adversarial_excludes_homophones_and_keeps_user_phrases():
    out = adversarial_phrases(["hey jarvis"], espeak.phonemize, ["hey travis", "hay jarvis"], 30)
    assert out[0] == "hey travis"
    assert "hay jarvis" not in out  # sounds exactly like the wake word: must never be a negative
    assert "hey jarvis" not in out
    assert "jarvis" in out  # the classic partial false accept
    assert len(out) == len(set(out)) == 30
    wake = espeak.phonemize("hey jarvis")
    assert all(espeak.phonemize(p) != wake for p in out)


def test_adversarial_is_deterministic_and_varied():
    a = adversarial_phrases(["okay nabu"], espeak.phonemize, [], 20)
    assert a == adversarial_phrases(["okay nabu"], espeak.phonemize, [], 20)
    assert any(p.startswith("okay ") for p in a) and any(not p.startswith("okay ") for p in a)


def test_renditions_vary_punctuation_and_use_every_variant():
    texts = rendition_texts(["hey jarvis", "hey jar vis"], 40, np.random.default_rng(0))
    assert {t.rstrip(".!?").replace(",", "").replace("...", "").lower() for t in texts} == {"hey jarvis",
                                                                                           "hey jar vis"}
    assert len(set(texts)) > 6


def test_speech_never_contains_the_wake_word():
    assert all("the kettle" not in s.lower() for s in speech_sentences(["the kettle"]))
    assert len(speech_sentences(["hey jarvis"])) > 50
