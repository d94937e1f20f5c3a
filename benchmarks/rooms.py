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
    from components.data_prep.stage import make_rooms, split_rooms

    config = load_config("default", overrides=[f"seed={seed}"])
    rooms = make_rooms(config)
    out = {}
    for rule in RoomSplit:
        split = split_rooms(rooms, rule, config)
        mean = {s: np.mean([info["rt60_s"] for n, (_, info) in rooms.items() if split[n] is s])
                for s in (Split.VALIDATION, Split.TEST)}
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
