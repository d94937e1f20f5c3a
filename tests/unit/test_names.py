"""The one slug: any wake word gives a safe, stable name, and plain ASCII words keep the names they had."""
from __future__ import annotations

import datetime as dt
import re
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from components.common.config import ConfigError, load_config
from components.common.names import MAX_SLUG_CHARS, slug

SAFE = {"_": re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$"), "-": re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")}
RESERVED = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}

# any text with something in it: letters of every script, marks, symbols, punctuation, emoji, odd spaces
words = st.text(min_size=1, max_size=300).filter(lambda t: t.strip())
fixed = settings(derandomize=True, deadline=None)  # the same examples on every run and machine
ascii_words = st.text(alphabet=string.ascii_letters + string.digits + " ',.!?-_", min_size=1, max_size=64).filter(
    lambda t: re.search(r"[A-Za-z0-9]", t))


@fixed
@given(words, st.sampled_from(["_", "-"]))
@example("hey jarvis?", "_")
@example("ok グーグル", "_")
@example("привет", "-")
@example("!!!", "_")
@example("a" * 1000, "-")
@example("CON", "_")
@example("Ｈｅｙ　Ｊａｒｖｉｓ", "_")
@example("../../etc/passwd", "-")
def test_any_text_gives_a_safe_bounded_name(text, sep):
    name = slug(text, sep)
    assert SAFE[sep].match(name), name
    assert len(name) <= MAX_SLUG_CHARS and name not in RESERVED
    assert slug(text, sep) == name  # stable within a process; the digest is sha256, so across machines too


@fixed
@given(words)
def test_the_two_separators_spell_the_same_name(text):
    assert slug(text, "-") == slug(text, "_").replace("_", "-")


@fixed
@given(words)
def test_case_and_spacing_do_not_change_the_name(text):
    assert slug(" ".join(text.split()).casefold()) == slug("  " + text + "\t")


@fixed
@given(st.lists(st.text(alphabet=st.characters(categories=["L", "Nd"]), min_size=1, max_size=8), min_size=1,
                max_size=5), st.sampled_from([" ", "_", "-", ", ", "! "]))
def test_separators_and_punctuation_between_words_do_not_change_the_name(parts, joiner):
    assert slug(joiner.join(parts)) == slug(" ".join(parts))


@fixed
@given(ascii_words)
def test_plain_ascii_words_keep_the_names_published_before(text):
    """The formulas used before: store folders, run and registered-model names (`-`); model files and judge
    names (`_`, the same as `wake_word.lower().replace(" ", "_")` for words of letters and single spaces)."""
    old_folder = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if old_folder in RESERVED:
        assert slug(text, "-").startswith(old_folder + "-")
        return
    assert slug(text, "-") == old_folder
    if re.fullmatch(r"[a-z0-9 -]+", text.lower()):
        assert slug(text) == "_".join(text.strip().lower().replace("-", " ").split())


@pytest.mark.parametrize("word, name", [
    ("hey jarvis", "hey_jarvis"), ("Hey Jarvis!", "hey_jarvis"), ("hey jarvis?", "hey_jarvis"),
    ("hey-jarvis", "hey_jarvis"), ("okay nabu", "okay_nabu"), ("Olá amigo", "ola_amigo"), ("Søren", "soren"),
    ("straße", "strasse"), ("Ｈｅｙ　Ｊａｒｖｉｓ", "hey_jarvis"),
])
def test_names_of_known_words(word, name):
    assert slug(word) == name


def test_what_ascii_cannot_spell_gets_a_digest_so_words_stay_apart():
    a, b = slug("ok グーグル"), slug("ok アレクサ")
    assert a.startswith("ok_") and b.startswith("ok_") and a != b
    assert re.fullmatch(r"w_[0-9a-f]{8}", slug("привет")) and slug("привет") != slug("здравствуй")
    assert slug("ПРИВЕТ") == slug("привет")  # case still does not matter
    assert slug("ok_グーグル") == slug("OK グーグル!") == slug("ok-グーグル")  # nor separators, punctuation


def test_long_words_are_cut_and_keep_their_tails_apart():
    stem = "hey " * 40
    one, two = slug(stem + "jarvis"), slug(stem + "nabu")
    assert len(one) == len(two) == MAX_SLUG_CHARS and one != two
    longest = "a" * MAX_SLUG_CHARS
    assert slug(longest) == longest  # the config's longest wake word keeps its whole name


def test_reserved_device_names_are_not_used_bare():
    assert slug("con") != "con" and slug("con").startswith("con_")


def test_nothing_to_name_is_an_error():
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(ValueError):
            slug(blank)
    with pytest.raises(ValueError):
        slug("hey", "/")


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.text(alphabet=st.characters(categories=["L", "M", "Nd", "Zs"]) | st.sampled_from("',.!?-_"),
               min_size=2, max_size=64))
def test_every_wake_word_the_config_accepts_names_files_runs_and_models(word):
    """Config values: whatever `wake_word` validates, every name made from it is a file that can be written."""
    from components.publish.registry import model_name
    from components.publish.store import version_key
    from pipeline.cluster import run_name, schedule_name
    from pipeline.local import new_run_id

    try:
        config = load_config("smoke", wake_word=word)
    except ConfigError:
        assume(False)  # the config refuses it; nothing is named after it
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    names = [f"{slug(config.wake_word)}.tflite", f"{slug(config.wake_word)}.json", new_run_id(config, now),
             run_name(config, now), schedule_name(config), model_name(config.wake_word),
             *version_key(config.wake_word, "0" * 64).split("/")]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name), name
            (Path(tmp) / name).write_text("x")
            assert (Path(tmp) / name).read_text() == "x"
