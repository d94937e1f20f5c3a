"""Evaluation data: voice families, held-out texts, voice splits and long-form speech condition streams."""
from collections import Counter

import numpy as np
import pytest
import scipy.signal  # noqa: F401  (the telephone channel imports it lazily: pay for it at collection)
from hypothesis import given, settings
from hypothesis import strategies as st

from components.common.artifacts import Label, Split
from components.common.config import Ambient, NonEnglish, SpeechCondition, Splits
from components.synthesis.conditions import MissingSpeech, condition_stream
from components.common.config import load_config
from components.data_prep.phrases import (HOUSEHOLD_SENTENCES, NON_ENGLISH_SENTENCES, general_speech,
                                          generated_sentences, greeting_sentences, heldout_texts,
                                          sound_alike_sentences, sound_alike_words)
from components.data_prep.splits import assign_voices, clip_split, shared_voices
from components.data_prep.synth import (NEURAL_ENGINES, Job, family_of, greeting_jobs, hold_out_texts,
                                       sound_alike_jobs, sound_alike_vocabulary, validation_speech_jobs)

SR = 16_000

# --- voice families -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice, family", [
    ("piper:en_US-joe-medium", "piper:joe"),
    ("piper:en_GB-alba-low", "piper:alba"),
    ("espeak:en-us+klatt2", "espeak:klatt"),
    ("espeak:en+klatt", "espeak:klatt"),
    ("espeak:en-gb-x-rp+m3", "espeak:formant"),
    ("espeak:en-us", "espeak:formant"),
    ("espeak:en-us+whisper", "espeak:breathy"),
    ("espeak:en-us+croak", "espeak:breathy"),
    ("espeak:de+m3", "espeak:non_english"),
    ("espeak:fr+klatt2", "espeak:non_english"),
    ("speaker:alice", "user:alice"),
])
def test_family_of(voice, family):
    assert family_of(voice) == family


# --- held-out texts in synthesis jobs -----------------------------------------------------------------------

TEXTS = [f"Sentence number {i} about the kitchen." for i in range(12)]
HELDOUT = set(TEXTS[:4])
TEST_VOICES = ["espeak:en-us+m1", "espeak:en-us+klatt3"]
OTHER_VOICES = ["espeak:en-gb+f2", "piper:en_US-joe-medium"]
NON_ENGLISH_VOICE = "espeak:de+m3"
VOICE_SPLIT = {TEST_VOICES[0]: Split.TEST, TEST_VOICES[1]: Split.TEST, OTHER_VOICES[0]: Split.TRAIN,
               OTHER_VOICES[1]: Split.VALIDATION, NON_ENGLISH_VOICE: Split.TEST}


def make_jobs():
    jobs, i = [], 0
    for voice in TEST_VOICES + OTHER_VOICES:
        for text in TEXTS:  # every voice starts with every text, held out or not
            jobs.append(Job(voice.partition(":")[0], Label.NEGATIVE, text, voice, (("pitch", 50.0),), i))
            i += 1
    jobs += [Job("espeak", Label.POSITIVE, TEXTS[0], OTHER_VOICES[0], (), 500),
             Job("espeak", Label.POSITIVE, TEXTS[5], TEST_VOICES[0], (), 501),
             Job("espeak", Label.ADVERSARIAL_NEGATIVE, TEXTS[1], OTHER_VOICES[0], (), 502),
             # non-English speech is left alone, whatever its text and split
             Job("espeak", Label.NEGATIVE, "Das Essen ist gleich fertig.", NON_ENGLISH_VOICE, (), 503),
             Job("espeak", Label.NEGATIVE, TEXTS[0], "espeak:fr+f1", (), 504)]
    return jobs


def test_hold_out_texts_puts_heldout_texts_in_test_only():
    jobs = make_jobs()
    out = hold_out_texts(jobs, VOICE_SPLIT, HELDOUT, seed=3)
    assert len(out) == len(jobs)
    english_negatives = 0
    for before, after in zip(jobs, out):
        assert (after.voice, after.label, after.params, after.index, after.engine) == \
               (before.voice, before.label, before.params, before.index, before.engine)
        if before.label is Label.NEGATIVE and before.family != "espeak:non_english":
            english_negatives += 1
            if VOICE_SPLIT.get(before.voice) is Split.TEST:
                assert after.text in HELDOUT
            else:
                assert after.text not in HELDOUT and after.text in TEXTS
            if (before.text in HELDOUT) == (VOICE_SPLIT.get(before.voice) is Split.TEST):
                assert after == before  # already on the right side: untouched
        else:
            assert after == before
    assert english_negatives == 48
    # replacements are spread over the side's pool, not all one text
    assert len({j.text for j in out if j.voice in TEST_VOICES and j.label is Label.NEGATIVE}) > 1


def test_hold_out_texts_is_deterministic_and_seeded():
    jobs = make_jobs()
    a = hold_out_texts(jobs, VOICE_SPLIT, HELDOUT, seed=3)
    assert a == hold_out_texts(jobs, VOICE_SPLIT, HELDOUT, seed=3)
    assert [j.text for j in a] != [j.text for j in hold_out_texts(jobs, VOICE_SPLIT, HELDOUT, seed=4)]


def test_hold_out_texts_without_heldout_texts_changes_nothing():
    jobs = make_jobs()
    assert hold_out_texts(jobs, VOICE_SPLIT, set(), seed=3) == jobs


# --- phrases ------------------------------------------------------------------------------------------------

def test_generated_sentences_are_distinct_and_seeded():
    a = generated_sentences(200, 5)
    assert len(a) == 200 and len(set(a)) == 200
    assert a == generated_sentences(200, 5)
    assert a != generated_sentences(200, 6)
    assert all(s[0].isupper() and s[-1] in ".?" for s in a)


def test_greetings_are_distinct_seeded_and_open_with_a_greeting():
    a = greeting_sentences(300, 5)
    assert len(a) == 300 and len(set(a)) == 300
    assert a == greeting_sentences(300, 5) and a != greeting_sentences(300, 6)
    openers = ("Hey", "Hi ", "Hello", "Oh hey", "Morning", "Okay", "Excuse me")
    assert all(s.startswith(openers) and s[-1] in ".?!" for s in a)
    assert sum(s.startswith("Hey") for s in a) > 150  # most open like a "hey <name>" wake word


GREETING_SPLIT = {"espeak:en-us+m1": Split.TRAIN, "espeak:en-us+f2": Split.TRAIN, "espeak:en-us+klatt": Split.TEST,
                  "espeak:de+m1": Split.VALIDATION, "espeak:en-gb+m3": Split.VALIDATION,
                  "kokoro:jf_alpha": Split.TRAIN, "kokoro:jf_nezumi": Split.TEST, "hibari:heart": Split.TRAIN}


def test_greeting_jobs_use_training_voices_only_and_avoid_test_texts():
    cfg = load_config("smoke", overrides=["wake_word=hey marvin", "data_prep.greetings.espeak_clips=150",
                                          "data_prep.greetings.kokoro_clips=40", "data_prep.greetings.hibari_clips=10"])
    avoid = set(greeting_sentences(200, cfg.seed)[:50])
    jobs = greeting_jobs(cfg, GREETING_SPLIT, avoid)
    assert Counter(j.engine for j in jobs) == {"espeak": 150, "kokoro": 40, "hibari": 10}
    assert {j.voice for j in jobs} == {v for v, s in GREETING_SPLIT.items() if s is Split.TRAIN}
    assert all(j.label is Label.NEGATIVE and j.text not in avoid for j in jobs)
    assert not any("hey marvin" in j.text.lower() for j in jobs)  # the wake word is never a negative
    assert jobs == greeting_jobs(cfg, GREETING_SPLIT, avoid)
    assert greeting_jobs(load_config("smoke"), GREETING_SPLIT, avoid) == []


def test_validation_speech_jobs_use_training_voices_and_sentences_no_other_clip_says():
    cfg = load_config("smoke", overrides=["data_prep.validation_speech.piper_clips=5",
                                          "data_prep.validation_speech.kokoro_clips=20",
                                          "data_prep.validation_speech.hibari_clips=30"])
    said = set(general_speech(cfg.phrases, cfg.data_prep.generated_sentences, cfg.seed))
    jobs = validation_speech_jobs(cfg, GREETING_SPLIT | {"piper:en_US-joe-medium": Split.TRAIN}, set())
    assert Counter(j.engine for j in jobs) == {"piper": 5, "kokoro": 20, "hibari": 30}
    assert {j.voice for j in jobs if j.engine != "piper"} == {"kokoro:jf_alpha", "hibari:heart"}
    texts = [j.text for j in jobs]
    assert len(set(texts)) == len(texts) and not set(texts) & said  # unheard sentences, each said once
    assert all(j.label is Label.NEGATIVE for j in jobs)
    assert len({j.origin for j in jobs}) == len(jobs)
    avoided = validation_speech_jobs(cfg, GREETING_SPLIT | {"piper:en_US-joe-medium": Split.TRAIN}, set(texts[:10]))
    assert len(avoided) == len(jobs) and not {j.text for j in avoided} & set(texts[:10])  # e.g. a greeting's text
    assert validation_speech_jobs(load_config("smoke"), GREETING_SPLIT, set()) == []


def test_greeting_jobs_need_a_training_voice_of_each_engine_asked_for():
    cfg = load_config("smoke", overrides=["data_prep.greetings.piper_clips=5"])
    with pytest.raises(ValueError, match="data_prep.greetings.*piper"):
        greeting_jobs(cfg, GREETING_SPLIT, set())


def test_sound_alikes_are_ranked_by_phones_and_leave_out_homophones_and_the_word_itself():
    lexicon = {"marvin": "mˈɑɹvɪn", "harvest": "hˈɑɹvəst", "service": "sˈɜɹvəs", "jarviss": "ʤˈɑɹvɪs",
               "jervis": "ʤˈɜɹvɪs", "jarvises": "ʤˈɑɹvɪsɪz", "table": "tˈAbəl"}
    phonemize = {"jarvis": "ʤˈɑɹvɪs"}.get
    # marvin 2/6 and service 2/6 (two vowels at half cost), harvest 2.5/6; "jarviss" sounds the same and "jervis"
    # differs by one vowel (half an edit), "jarvises" holds the word, "table" is too far
    assert sound_alike_words(["Jarvis"], lexicon, phonemize, 5) == ["marvin", "service", "harvest"]
    assert sound_alike_words(["jarvis"], lexicon, phonemize, 2) == ["marvin", "service"]
    assert sound_alike_words(["jarvis"], lexicon, phonemize, 5, max_relative_distance=0.4) == ["marvin", "service"]


def test_sound_alikes_of_the_shipped_lexicon_are_real_words_near_the_wake_word():
    from components.synthesis.neural_tts import english_lexicon, phonemes

    words = sound_alike_words(["jarvis"], english_lexicon(), phonemes, 40)
    assert len(words) == 40 and {"nervous", "service", "carving"} <= set(words)
    assert not any("jarvis" in w for w in words)
    texts = sound_alike_sentences(words, 100, 3)
    assert len(set(texts)) == 100 and texts == sound_alike_sentences(words, 100, 3)
    assert all(any(w in t.lower() for w in words) for t in texts)


def test_sound_alike_jobs_use_training_voices_only_and_never_say_the_wake_word():
    cfg = load_config("smoke", overrides=["wake_word=hey jarvis", "data_prep.sound_alikes.espeak_clips=60",
                                          "data_prep.sound_alikes.kokoro_clips=10"])
    jobs = sound_alike_jobs(cfg, GREETING_SPLIT, set())
    assert Counter(j.engine for j in jobs) == {"espeak": 60, "kokoro": 10}
    assert {j.voice for j in jobs} <= {v for v, s in GREETING_SPLIT.items() if s is Split.TRAIN}
    assert all(j.label is Label.NEGATIVE and "jarvis" not in j.text.lower() for j in jobs)
    words = sound_alike_vocabulary(cfg.phrases)
    assert {"marvin", "purvis"} <= set(words)  # first names the lexicon lacks are scored too
    assert "jervis" not in words  # one vowel away: an accent's "jarvis"
    assert all(any(w in j.text.lower() for w in words) for j in jobs)
    assert len({j.index for j in jobs} | {j.index for j in greeting_jobs(
        load_config("smoke", overrides=["data_prep.greetings.espeak_clips=60"]), GREETING_SPLIT, set())}) == 130
    with pytest.raises(ValueError, match="data_prep.sound_alikes.*piper"):
        sound_alike_jobs(load_config("smoke", overrides=["data_prep.sound_alikes.piper_clips=5"]), GREETING_SPLIT,
                         set())


@pytest.mark.parametrize("n", [4, 20, 200, 401])
def test_heldout_texts_takes_the_fraction_as_a_subset(n):
    texts = generated_sentences(n, 1)
    h = heldout_texts(texts, 0.25, 9)
    assert h <= set(texts) and len(h) >= 1
    # each text is held out on its own hash: a binomial count, within 4 standard deviations of n/4
    assert abs(len(h) - n * 0.25) <= 4 * (n * 0.25 * 0.75) ** 0.5 + 1
    assert h == heldout_texts(list(reversed(texts)), 0.25, 9)  # order of the list does not matter
    assert h == heldout_texts(texts, 0.25, 9)
    assert heldout_texts(texts, 0.0, 9) == set()


def test_heldout_texts_depend_on_the_seed():
    texts = generated_sentences(200, 1)
    assert heldout_texts(texts, 0.25, 1) != heldout_texts(texts, 0.25, 2)


def test_heldout_membership_is_stable_when_unrelated_texts_are_appended():
    texts = generated_sentences(100, 0)
    more = texts + [f"An unrelated sentence number {i}." for i in range(200)]
    before = heldout_texts(texts, 0.25, 7)
    after = heldout_texts(more, 0.25, 7)
    assert after & set(texts) == before


def test_general_speech_never_contains_a_wake_word():
    full = general_speech([], 300, 2)
    assert general_speech(["hey jarvis"], 300, 2) == full  # no sentence says it
    assert all("hey jarvis" not in s.lower() for s in full)
    # a phrase that does occur is filtered out, case-insensitively, and only those sentences go
    for phrase in ("anna", "THE KETTLE"):
        hits = [s for s in full if phrase.lower() in s.lower()]
        assert hits
        kept = general_speech([phrase], 300, 2)
        assert all(phrase.lower() not in s.lower() for s in kept)
        assert len(kept) == len(full) - len(hits)
    assert set(HOUSEHOLD_SENTENCES) <= set(full)


def test_non_english_sentences_cover_the_default_languages():
    languages = NonEnglish.model_fields["languages"].default
    assert languages
    for lang in languages:
        assert len(set(NON_ENGLISH_SENTENCES[lang])) >= 6, lang
    assert not set().union(*NON_ENGLISH_SENTENCES.values()) & set(HOUSEHOLD_SENTENCES)


# --- voice splits -------------------------------------------------------------------------------------------

def voice_inventory():
    families, positives, totals = {}, {}, {}
    for i in range(3):
        families[f"espeak:en-us+klatt{i + 2}"] = "espeak:klatt"
    for i, v in enumerate(("whisper", "whisperf", "croak")):
        families[f"espeak:en-us+{v}"] = "espeak:breathy"
        families[f"espeak:en-gb+{v}"] = "espeak:breathy"
    families["espeak:de+m1"] = "espeak:non_english"
    for i in range(12):
        families[f"espeak:en-us+m{i}"] = "espeak:formant"
    families["piper:en_US-joe-medium"] = "piper:joe"
    for j, v in enumerate(sorted(families)):
        totals[v] = 20 + 7 * j
        positives[v] = 0 if families[v] == "espeak:non_english" else 5 + j
    totals["piper:en_US-joe-medium"] = 400
    positives["piper:en_US-joe-medium"] = 200
    return positives, totals, families


def test_assign_voices_hold_out_and_eval_only_families():
    positives, totals, families = voice_inventory()
    cfg = Splits(heldout_families=["espeak:klatt"])
    eval_only = ["espeak:breathy", "espeak:non_english"]
    a = assign_voices(positives, totals, families, cfg, 11, eval_only_families=eval_only)
    assert set(a) == set(totals)
    for v, fam in families.items():
        if fam == "espeak:klatt":
            assert a[v] is Split.TEST
    eo = [v for v in totals if families[v] in eval_only]
    counts = Counter(a[v] for v in eo)
    assert Split.TRAIN not in counts
    assert counts[Split.VALIDATION] == 4 and counts[Split.TEST] == 3  # alternating over 7 voices
    rest = [v for v in totals if families[v] not in eval_only and families[v] != "espeak:klatt"]
    assert {a[v] for v in rest} == set(Split)
    assert a["piper:en_US-joe-medium"] is Split.TRAIN  # the largest voice trains
    assert a == assign_voices(positives, totals, families, cfg, 11, eval_only_families=eval_only)


def test_assign_voices_heldout_wins_over_eval_only():
    positives, totals, families = voice_inventory()
    cfg = Splits(heldout_families=["espeak:breathy"])
    a = assign_voices(positives, totals, families, cfg, 0, eval_only_families=["espeak:breathy"])
    assert all(a[v] is Split.TEST for v in totals if families[v] == "espeak:breathy")


def test_single_voices_share_training_clips_with_validation_by_text_never_with_test():
    positives, totals, families = voice_inventory()
    families["hibari:heart"], totals["hibari:heart"], positives["hibari:heart"] = "hibari:heart", 300, 100
    a = assign_voices(positives, totals, families, Splits(heldout_families=["espeak:klatt"]), 3)
    a["hibari:heart"] = Split.TRAIN
    shared = shared_voices(a, families, NEURAL_ENGINES)
    # one neural voice per family and trained on: espeak's (even a family of one, like de+m1) never move
    assert shared == {"piper:en_US-joe-medium", "hibari:heart"}
    texts = [f"sentence {i}" for i in range(400)]
    negatives = [(v, t, f"tts:{v}#{i}:{t}") for v in sorted(shared) for i, t in enumerate(texts * 2)]
    got = {(v, o): clip_split(v, Label.NEGATIVE, t, o, a, shared, 0.15, 3) for v, t, o in negatives}
    moved = [o for (v, o), s in got.items() if s is Split.VALIDATION]
    assert set(got.values()) == {Split.TRAIN, Split.VALIDATION}
    assert 0.10 < len(moved) / len(got) < 0.20
    by_text: dict[str, set] = {}
    for (v, t, o) in negatives:
        by_text.setdefault(t, set()).add(got[(v, o)])
    assert all(len(s) == 1 for s in by_text.values()), "a sentence is said in both training and validation"
    pos = [clip_split("hibari:heart", Label.POSITIVE, "hey jarvis", f"tts:hibari:heart#{i}:hey jarvis", a, shared,
                      0.15, 3) for i in range(400)]
    assert 0.10 < pos.count(Split.VALIDATION) / len(pos) < 0.20 and Split.TEST not in pos
    for v in totals:  # voices not shared keep their split; nothing moves at fraction 0
        if v not in shared:
            assert clip_split(v, Label.NEGATIVE, "sentence 1", "o", a, shared, 0.15, 3) is a[v]
        assert clip_split(v, Label.POSITIVE, "hey jarvis", "o", a, shared, 0.0, 3) is a[v]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 9))
def test_assign_voices_never_trains_on_eval_only_or_heldout_voices(seed, n_eval_only):
    positives, totals, families = voice_inventory()
    for i in range(n_eval_only):
        v = f"espeak:sv+f{i}"
        families[v], totals[v], positives[v] = "espeak:non_english", 10 + i, 0
    cfg = Splits(heldout_families=["espeak:klatt"])
    a = assign_voices(positives, totals, families, cfg, seed, eval_only_families=["espeak:non_english"])
    assert a == assign_voices(dict(reversed(list(positives.items()))), dict(reversed(list(totals.items()))),
                              families, cfg, seed, eval_only_families=["espeak:non_english"])
    eo = Counter(a[v] for v in totals if families[v] == "espeak:non_english")
    assert Split.TRAIN not in eo and eo[Split.VALIDATION] - eo[Split.TEST] == (n_eval_only + 1) % 2
    assert all(a[v] is Split.TEST for v in totals if families[v] == "espeak:klatt")
    assert {a[v] for v in totals if families[v] in ("espeak:formant", "piper:joe", "espeak:breathy")} == set(Split)


# --- condition streams --------------------------------------------------------------------------------------

def speech_clips(seed=0, n=5):
    """Stand-ins for speech: noise bursts with an on/off envelope and a few tones, as int16."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        m = int(rng.uniform(0.3, 0.8) * SR)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * np.arange(m) / SR)
        clips.append((rng.standard_normal(m) * env * 4000).astype(np.int16))
    t = np.arange(int(0.5 * SR)) / SR
    clips.append((np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16))
    return clips


def non_english_clips():
    t = np.arange(int(0.6 * SR)) / SR
    return [(np.sin(2 * np.pi * f * t) * 5000).astype(np.int16) for f in (250, 700)]


def rir():
    rng = np.random.default_rng(42)
    t = np.arange(3000)
    r = (rng.standard_normal(3000) * np.exp(-t / 400)).astype(np.float32)
    r[0] = 1.0
    return r


def stream(kind, seed=5, duration_s=3.0, speech=None, non_english=None, rirs=None):
    return condition_stream(kind, duration_s, Ambient(), speech_clips() if speech is None else speech,
                            non_english_clips() if non_english is None else non_english,
                            [rir()] if rirs is None else rirs, seed)


def level_dbfs(x):
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / 32767)


@pytest.mark.parametrize("kind", list(SpeechCondition))
def test_condition_stream_format_and_level(kind):
    x = stream(kind, duration_s=2.5)
    assert x.dtype == np.int16
    assert x.shape == (int(2.5 * SR),)
    assert np.count_nonzero(x) > len(x) // 4
    lo, hi = Ambient().level_dbfs_range
    assert lo - 1 <= level_dbfs(x) <= hi + 1


@pytest.mark.parametrize("kind", list(SpeechCondition))
def test_condition_stream_is_a_function_of_its_seed(kind):
    a = stream(kind, seed=5)
    np.testing.assert_array_equal(a, stream(kind, seed=5))
    assert not np.array_equal(a, stream(kind, seed=6))


def test_far_field_stream_longer_than_one_segment():
    x = stream(SpeechCondition.FAR_FIELD_SPEECH, duration_s=16.0)
    assert x.shape == (16 * SR,)
    lo, hi = Ambient().level_dbfs_range
    assert lo - 1 <= level_dbfs(x) <= hi + 1


def test_missing_speech_raises():
    with pytest.raises(MissingSpeech):
        stream(SpeechCondition.NON_ENGLISH_SPEECH, non_english=[])
    with pytest.raises(MissingSpeech):
        stream(SpeechCondition.FAR_FIELD_SPEECH, rirs=[])
    with pytest.raises(MissingSpeech):
        stream(SpeechCondition.CLEAN_SPEECH, speech=[])
    assert issubclass(MissingSpeech, ValueError)
    # non-English speech needs only non-English clips, the others only general speech
    assert stream(SpeechCondition.NON_ENGLISH_SPEECH, speech=[]).size == 3 * SR
    assert stream(SpeechCondition.CLEAN_SPEECH, non_english=[], rirs=[]).size == 3 * SR


def test_non_english_stream_is_made_of_non_english_clips():
    x = stream(SpeechCondition.NON_ENGLISH_SPEECH).astype(np.float64)
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    near_tones = (np.abs(freqs - 250) < 20) | (np.abs(freqs - 700) < 20)
    assert spec[near_tones].sum() > 0.95 * spec.sum()


def _share_above(x, hz):
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return spec[np.fft.rfftfreq(len(x), 1 / SR) > hz].sum() / spec.sum()


def test_telephone_stream_is_band_limited_compared_with_clean():
    noise_speech = speech_clips()[:-1]  # the broadband clips only
    clean = stream(SpeechCondition.CLEAN_SPEECH, seed=8, speech=noise_speech)
    tel = stream(SpeechCondition.TELEPHONE_SPEECH, seed=8, speech=noise_speech)
    assert _share_above(clean, 3600) > 0.3  # the noise-burst "speech" is broadband
    assert _share_above(tel, 3600) < 0.01 * _share_above(clean, 3600)
    # same seed, same placement: the talkers are in the same places in both streams
    env_c = np.abs(clean.astype(np.float64)).reshape(-1, 800).mean(axis=1)
    env_t = np.abs(tel.astype(np.float64)).reshape(-1, 800).mean(axis=1)
    assert np.corrcoef(env_c, env_t)[0, 1] > 0.9
