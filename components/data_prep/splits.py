"""Deterministic train/validation/test assignment that never lets a voice or speaker cross splits (except, when
asked, single synthetic voices shared between training and validation: never test)."""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

from components.common.artifacts import Label, Split
from components.common.config import Splits


def _fractions(cfg: Splits) -> dict[Split, float]:
    return {Split.TRAIN: 1 - cfg.validation_fraction - cfg.test_fraction,
            Split.VALIDATION: cfg.validation_fraction, Split.TEST: cfg.test_fraction}


def _tiebreak(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def assign_groups(positives: Mapping[str, int], totals: Mapping[str, int], cfg: Splits,
                  seed: int) -> dict[str, Split]:
    """Assign whole groups (voices, speakers) to splits.

    Groups with positives are balanced on their positive count (so every split gets wake-word clips),
    the rest on their total clip count. Largest first, each into the split furthest below its target
    share; ties broken by a seeded hash, so the result depends only on the inputs and the seed.
    """
    frac = _fractions(cfg)
    out: dict[str, Split] = {}
    with_pos = [g for g in totals if positives.get(g, 0) > 0]
    without = [g for g in totals if positives.get(g, 0) == 0]
    for groups, weight in ((with_pos, positives), (without, totals)):
        total = sum(weight[g] for g in groups)
        order = sorted(groups, key=lambda g: (-weight[g], _tiebreak(g, seed)))
        filled = {s: 0.0 for s in frac}
        if len(order) >= 3:
            # Validation and test each first get the group closest to their target share (never the
            # largest group), so they are never empty while train takes the big ones.
            for split in (Split.VALIDATION, Split.TEST):
                g = min(order[1:], key=lambda g: (abs(weight[g] - frac[split] * total), _tiebreak(g, seed)))
                out[g] = split
                filled[split] += weight[g]
                order.remove(g)
        for g in order:
            split = max(frac, key=lambda s: frac[s] * total - filled[s])
            out[g] = split
            filled[split] += weight[g]
    return out


def assign_files(names: Sequence[str], cfg: Splits, seed: int) -> dict[str, Split]:
    """Split independent files (ambient recordings, RIRs); validation and test each get at least one
    file when there are three or more."""
    frac = _fractions(cfg)
    order = sorted(names, key=lambda n: _tiebreak(n, seed))
    n = len(order)
    n_val = max(1 if n >= 3 else 0, round(n * frac[Split.VALIDATION]))
    n_test = max(1 if n >= 3 else 0, round(n * frac[Split.TEST]))
    out = {}
    for i, name in enumerate(order):
        out[name] = Split.VALIDATION if i < n_val else Split.TEST if i < n_val + n_test else Split.TRAIN
    return out


def assign_by_value(values: Mapping[str, float], cfg: Splits, seed: int) -> dict[str, Split]:
    """Split independent files so that validation and test each span the range of `values` (a room's RT60): the
    files, sorted by value, fall into as many contiguous bands as the larger of the two has files, and each band
    gives validation one file and test one (a seeded draw within the band) while they still need one. The same
    counts as `assign_files`."""
    frac = _fractions(cfg)
    n = len(values)
    n_val = max(1 if n >= 3 else 0, round(n * frac[Split.VALIDATION]))
    n_test = max(1 if n >= 3 else 0, round(n * frac[Split.TEST]))
    order = sorted(values, key=lambda name: (values[name], _tiebreak(name, seed)))
    bands = max(n_val, n_test, 1)
    out = {name: Split.TRAIN for name in order}
    for b in range(bands):
        band = sorted(order[b * n // bands:(b + 1) * n // bands], key=lambda name: _tiebreak(name, seed))
        picks = [s for s, need in ((Split.VALIDATION, n_val), (Split.TEST, n_test)) if b < need]
        for name, split in zip(band, picks):
            out[name] = split
    return out


def assign_voices(positives: Mapping[str, int], totals: Mapping[str, int], families: Mapping[str, str],
                  cfg: Splits, seed: int, eval_only_families: Sequence[str] = ()) -> dict[str, Split]:
    """Whole voices to splits: voices of `cfg.heldout_families` go to test only, voices of `eval_only_families`
    alternate between validation and test (training never hears them), the rest by `assign_groups`."""
    heldout = set(cfg.heldout_families)
    out: dict[str, Split] = {}
    rest_pos, rest_tot = {}, {}
    eval_only = sorted((v for v in totals if families[v] in eval_only_families and families[v] not in heldout),
                       key=lambda v: _tiebreak(v, seed))
    for i, v in enumerate(eval_only):
        out[v] = (Split.VALIDATION, Split.TEST)[i % 2]
    for v, n in totals.items():
        if families[v] in heldout:
            out[v] = Split.TEST
        elif v not in out:
            rest_tot[v] = n
            rest_pos[v] = positives.get(v, 0)
    out.update(assign_groups(rest_pos, rest_tot, cfg, seed))
    return out


def shared_voices(voice_split: Mapping[str, Split], families: Mapping[str, str], engines: Sequence[str]) -> set[str]:
    """Voices that are their family's only voice, are spoken by one of `engines` and went to training."""
    per_family: dict[str, set[str]] = {}
    for v, f in families.items():
        per_family.setdefault(f, set()).add(v)
    return {v for v, split in voice_split.items() if split is Split.TRAIN and v.partition(":")[0] in engines
            and len(per_family.get(families.get(v, v), ())) == 1}


def clip_split(voice: str, label: Label, text: str | None, origin: str, voice_split: Mapping[str, Split],
               shared: set[str], fraction: float, seed: int) -> Split:
    """A clip's split: its voice's, except that a `fraction` of a shared voice's clips go to validation. Speech
    moves by whole text (validation never hears a sentence a shared voice says in training); positives, which
    all say the wake word, move clip by clip."""
    if voice not in shared or fraction <= 0:
        return voice_split[voice]
    key = origin if label is Label.POSITIVE or not text else f"text|{text}"
    draw = int(_tiebreak(key, seed)[:12], 16) / 16 ** 12
    return Split.VALIDATION if draw < fraction else voice_split[voice]
