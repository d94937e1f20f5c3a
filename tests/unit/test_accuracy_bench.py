"""The accuracy benchmark's summary over seeds (no training: the per-seed figures are given)."""
from benchmarks import accuracy


def _seed(seed, detected, fa, frr, worst, blessed):
    return {"seed": seed, "real_wakeword_detected": detected, "real_wakeword_clips": 56,
            "real_speech_fa_per_hour": fa, "test_frr": frr, "worst_condition_fa_per_hour": worst, "blessed": blessed}


def test_every_figure_is_summarised_by_its_median_and_range_with_each_seeds_value():
    rows = [_seed(0, 48, 0.0, 0.22, 12.0, 0.0), _seed(1, 27, 6.3, 0.41, 0.0, 1.0), _seed(2, 38, 0.0, 0.30, 6.0, 0.0)]
    out = {r["metric"]: r for r in accuracy.seed_spread(rows)}
    assert set(out) == {f"default_seeds_{f}" for f, _ in accuracy.SEED_FIGURES}
    detected = out["default_seeds_real_wakeword_detected"]
    assert (detected["value"], detected["min"], detected["max"]) == (38, 27, 48)
    assert detected["values"] == [48, 27, 38] and detected["seeds"] == [0, 1, 2] and detected["clips"] == 56
    assert out["default_seeds_test_frr"]["value"] == 0.30
    assert out["default_seeds_worst_condition_fa_per_hour"]["max"] == 12.0
    assert out["default_seeds_blessed"]["values"] == [0.0, 1.0, 0.0]
    assert "clips" not in out["default_seeds_test_frr"]


def test_the_seed_runs_are_the_ablations_kept_runs():
    from benchmarks.ablation import run_spec

    assert run_spec("all", 0) == ("ablation-all", [])
    assert run_spec("all", 2) == ("ablation-all-seed2", ["seed=2"])
    assert accuracy.DEFAULT_SEEDS[0] == 0  # seed 0 is the preset's own: the side-by-side figures come from it
