"""Rooms: how alike validation's and test's rooms are under each room split (`data_prep.rirs.split`), no training.

The far-field speech condition reverberates validation's and test's speech through their own rooms, 6 each in
`default` (of 60). Validation's far-field false accepts set the cutoff, so they foresee test's only if the two
splits' rooms are alike. For seeds 0-9 of `default`, each split rule's rooms are drawn as data_prep draws them:

  room_rt60_gap_s_<rule>       median over seeds of |mean RT60 of validation's rooms - test's| (max as a field)
  room_rt60_gap_ratio          by_rt60's median gap / random's (the baseline), same seeds and rooms
"""
from __future__ import annotations

import statistics

import numpy as np

from benchmarks.common import comparison, log, result
from components.common.artifacts import Split

SEEDS = tuple(range(10))


def gaps(seed: int) -> dict[str, float]:
    """|mean RT60 of validation - test| under each rule for `default` at `seed` (the rooms data_prep makes)."""
    from components.common.config import RoomSplit, load_config
    from components.data_prep import splits
    from components.synthesis import rirs

    cfg = load_config("default", overrides=[f"seed={seed}"]).data_prep
    names = [f"rir-{i:04d}" for i in range(cfg.rirs.count)]
    rt60 = {n: rirs.room_impulse_response(cfg.rirs, seed=seed * 7_919 + int(n[4:]))[1]["rt60_s"] for n in names}
    rules = {RoomSplit.RANDOM: splits.assign_files(names, cfg.splits, seed),
             RoomSplit.BY_RT60: splits.assign_by_value(rt60, cfg.splits, seed)}
    out = {}
    for rule, split in rules.items():
        mean = {s: np.mean([rt60[n] for n in names if split[n] is s]) for s in (Split.VALIDATION, Split.TEST)}
        out[rule.value] = float(abs(mean[Split.VALIDATION] - mean[Split.TEST]))
    return out


def run() -> list[dict]:
    per_seed = []
    for seed in SEEDS:
        per_seed.append(gaps(seed))
        log(f"[bench] rooms: seed {seed}: {per_seed[-1]}")
    out = []
    medians = {}
    for rule in per_seed[0]:
        values = [g[rule] for g in per_seed]
        medians[rule] = statistics.median(values)
        out.append(result(f"room_rt60_gap_s_{rule}", medians[rule], "s", seeds=list(SEEDS), max=max(values),
                          values=[round(v, 3) for v in values]))
    out.append(comparison("room_rt60_gap_ratio", medians["by_rt60"], medians["random"], baseline_name="random",
                          unit="s", seeds=list(SEEDS)))
    return out
