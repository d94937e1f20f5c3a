"""File and resource names made from a wake word: the one place they are made.

A wake word may hold punctuation, accents, a non-Latin script or be very long; the name made from it must
be a safe file name everywhere the project puts one (local disk, S3 keys, MLflow names, KFP run names) and
the same on every machine. Plain ASCII words keep the names they always had: "Hey Jarvis!" -> `hey_jarvis`
(model files, judge names) or `hey-jarvis` (store folders, run and registered-model names).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_SLUG_CHARS = 64  # the config's longest wake word: every valid ASCII wake word keeps its whole name
DIGEST_CHARS = 8
SEPARATORS = ("_", "-")
# Latin letters that Unicode does not decompose into a base letter and an accent
_LATIN = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
# names Windows refuses whatever the extension (CON.tflite is as bad as CON)
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


def slug(text: str, sep: str = "_") -> str:
    """`text` as a name of [a-z0-9] runs joined by `sep` ("_" or "-"), at most MAX_SLUG_CHARS long.

    Accents are dropped ("Olá" -> `ola`), punctuation and spaces become one separator. Whatever cannot be
    spelled in ASCII (a non-Latin script), a cut (too long) or a reserved device name adds a digest of the
    word's letters and digits (case, spacing and punctuation aside), so two such words do not collide and the
    same word always gives the same name: "ok グーグル" and "OK_グーグル!" -> `ok_<8 hex>`, "привет" ->
    `w_<8 hex>`. Raises ValueError on text with nothing in it.
    """
    if sep not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS}, got {sep!r}")
    canonical = unicodedata.normalize("NFC", " ".join(text.split())).casefold()
    if not canonical:
        raise ValueError("an empty wake word has no name")
    folded = "".join(c for c in unicodedata.normalize("NFKD", canonical) if not unicodedata.combining(c))
    folded = folded.translate(_LATIN)
    lossy = any(c.isalnum() and not c.isascii() for c in folded)  # letters or digits ASCII cannot spell
    base = sep.join(re.findall(r"[a-z0-9]+", folded.lower()))
    if not base:
        base, lossy = "w", True  # nothing spellable: the digest is the name
    if base in _RESERVED:
        lossy = True
    if not lossy and len(base) <= MAX_SLUG_CHARS:
        return base
    words = " ".join(t for t in re.split(r"[\W_]+", canonical) if t)  # what is said, in any script
    head = base[:MAX_SLUG_CHARS - DIGEST_CHARS - 1].rstrip(sep)
    return f"{head}{sep}{_digest(words or canonical)}"
