"""Strict JSON for everything the project writes: no bare NaN or Infinity, which `json.dumps` emits by default
and strict parsers (JavaScript, jq, Go, KFP's UI) refuse.

A number that is not finite means nothing was measured. It is written as null, and the document says why:
its top-level `null_because_not_finite` maps each such key path to what the value was ("nan", "inf"). A
document that must not carry that key (an ESPHome manifest, whose keys are checked) passes `on_non_finite=
"raise"` and fails loudly instead of writing a file a device or a parser would refuse.
"""
from __future__ import annotations

import json
import math
from typing import Any

NOTE_KEY = "null_because_not_finite"


def _clean(value: Any, path: str, found: dict[str, str]) -> Any:
    """`value` with every non-finite float replaced by None (its path recorded) and numpy scalars/arrays as
    plain Python; anything else is left for json.dumps (and its `default`) to handle."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found[path or "."] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {k: _clean(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and type(value).__module__.startswith("numpy"):
        return _clean(tolist(), path, found)
    return value


def dumps(obj: Any, *, on_non_finite: str = "null", **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity. `on_non_finite`: "null" (record the paths under
    NOTE_KEY when `obj` is a dict) or "raise" (ValueError naming the paths)."""
    if on_non_finite not in ("null", "raise"):
        raise ValueError(f"on_non_finite must be 'null' or 'raise', got {on_non_finite!r}")
    found: dict[str, str] = {}
    clean = _clean(obj, "", found)
    if found and on_non_finite == "raise":
        raise ValueError(f"not finite, cannot be written as JSON: {', '.join(f'{k}={v}' for k, v in found.items())}")
    if found and isinstance(clean, dict):
        clean = {**clean, NOTE_KEY: {**clean.get(NOTE_KEY, {}), **found}}
    return json.dumps(clean, allow_nan=False, **kwargs)


def finite(obj: Any) -> Any:
    """`obj` as strict JSON will carry it: what KFP writes for an artifact's metadata (kfp.local and the
    executor write it with Python's json, which would emit NaN)."""
    return json.loads(dumps(obj))


def finite_scalars(scalars: dict[str, Any]) -> dict[str, float]:
    """KFP Metrics take numbers only: the finite ones, as floats (a value that is not is left out; the stage's
    own report says why it was not measured)."""
    out = {}
    for k, v in scalars.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
        elif isinstance(v, bool):
            out[k] = float(v)
    return out


def _refuse(token: str) -> Any:
    raise ValueError(f"not strict JSON: {token}")


def loads_strict(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (Python's parser accepts them by default)."""
    return json.loads(text, parse_constant=_refuse)
