"""Strict JSON: what the project writes never holds a bare NaN or Infinity, and says why a value is null."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.common.jsonio import NOTE_KEY, dumps, loads_strict


def test_non_finite_numbers_become_null_with_the_reason():
    doc = {"frr": float("nan"), "nested": {"fa": [1.0, float("inf")]}, "ok": 0.25, "n": np.float32(0.5)}
    text = dumps(doc, indent=2)
    back = loads_strict(text)
    assert back["frr"] is None and back["nested"]["fa"] == [1.0, None] and back["ok"] == 0.25 and back["n"] == 0.5
    assert back[NOTE_KEY] == {"frr": "nan", "nested.fa[1]": "inf"}


def test_finite_documents_are_written_as_json_dumps_would():
    doc = {"a": 1, "b": [0.1, "x", None, True], "c": {"d": -2.5}}
    assert dumps(doc, sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_raise_mode_refuses_and_names_the_path():
    with pytest.raises(ValueError, match=r"micro\.probability_cutoff=nan"):
        dumps({"micro": {"probability_cutoff": float("nan")}}, on_non_finite="raise")


def test_numpy_arrays_and_scalars_are_plain_json():
    back = loads_strict(dumps({"a": np.array([1.0, np.nan]), "i": np.int64(3)}))
    assert back["a"] == [1.0, None] and back["i"] == 3 and back[NOTE_KEY] == {"a[1]": "nan"}


def test_the_strict_parser_refuses_what_pythons_accepts():
    for token in ("NaN", "Infinity", "-Infinity"):
        assert json.loads(f'{{"x": {token}}}')  # Python's default parser takes it
        with pytest.raises(ValueError, match="not strict JSON"):
            loads_strict(f'{{"x": {token}}}')


values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                   max_size=4), max_leaves=20)


@settings(derandomize=True, deadline=None)
@given(st.dictionaries(st.text(max_size=4).filter(lambda k: k != NOTE_KEY), values, max_size=5))
def test_any_document_round_trips_through_a_strict_parser(doc):
    back = loads_strict(dumps(doc))
    notes = back.pop(NOTE_KEY, {})

    def same(a, b, path):
        if isinstance(a, float) and not math.isfinite(a):
            assert b is None and path in notes
        elif isinstance(a, dict):
            assert set(a) == set(b)
            for k in a:
                same(a[k], b[k], f"{path}.{k}" if path else str(k))
        elif isinstance(a, list):
            assert len(a) == len(b)
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{path}[{i}]")
        else:
            assert a == b

    same(doc, back, "")


def test_kfp_metadata_is_made_strict_before_kfp_writes_it():
    from components.common.jsonio import finite, finite_scalars

    md = finite({"frr": float("nan"), "n": np.int64(2), "ok": 0.5})
    assert md == {"frr": None, "n": 2, "ok": 0.5, NOTE_KEY: {"frr": "nan"}}
    assert json.dumps(md, allow_nan=False)  # what kfp writes: no NaN left
    assert finite_scalars({"a": 1, "b": float("inf"), "c": True, "d": None, "e": 0.25}) == {"a": 1.0, "c": 1.0,
                                                                                             "e": 0.25}
