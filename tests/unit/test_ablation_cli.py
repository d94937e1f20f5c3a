"""The ablation benchmark's command line: variants and seeds map to kept runs and config overrides that load."""
import pytest

from benchmarks import ablation
from components.common.config import load_config


def test_seed_zero_is_the_preset_run_and_another_seed_is_its_own_run():
    assert ablation.run_spec("no-channels") == ("ablation-no-channels", ["augmentation.ops.channel_probability=0"])
    name, overrides = ablation.run_spec("no-channels", 2)
    assert name == "ablation-no-channels-seed2"
    assert overrides == ["augmentation.ops.channel_probability=0", "seed=2"]


def test_another_word_is_its_own_kept_run_and_only_the_recorded_word_has_real_recordings(tmp_path, monkeypatch):
    assert ablation.run_spec("all", 1, "hey jarvis") == ("ablation-hey-jarvis-all-seed1", ["seed=1"])
    assert ablation.run_spec("all", 0, ablation.WORD) == ("ablation-all", [])
    (tmp_path / "real-wakeword-dev" / "hey_chatterbox").mkdir(parents=True)
    monkeypatch.setenv("WAKELINE_SHARED_DATA", str(tmp_path))
    assert ablation.real_wakeword_dir("hey chatterbox") == tmp_path / "real-wakeword-dev" / "hey_chatterbox"
    assert ablation.real_wakeword_dir("hey jarvis") is None


@pytest.mark.parametrize("variant", sorted(ablation.VARIANTS))
def test_every_variant_at_another_seed_is_a_valid_config(variant):
    _, overrides = ablation.run_spec(variant, 1)
    config = load_config("default", overrides=overrides, wake_word=ablation.WORD)
    assert config.seed == 1
    assert config.sha256() != load_config("default", overrides=ablation.run_spec(variant)[1],
                                          wake_word=ablation.WORD).sha256()


@pytest.mark.parametrize("argv, message", [(["bogus"], "unknown variant(s) ['bogus']"),
                                           (["--seed", "-1", "all"], "--seed must be >= 0"),
                                           (["--wake-word", " ", "all"], "--wake-word must not be empty")])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        ablation.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_the_table_shows_real_detections_at_fixed_cutoffs_where_measured():
    row = {"variant": "all", "real_wakeword_frr": 0.25, "real_wakeword_detected": 42, "real_wakeword_clips": 56,
           "real_speech_fa_per_hour": 0.0, "real_speech_false_accepts": 0, "heldout_family_frr": 0.5,
           "heldout_family": "espeak:klatt", "worst_condition_fa_per_hour": 12.0, "worst_condition": "telephone_speech",
           "cutoff": 0.62, "blessed": False}
    at = {f"{c:.2f}": {"real_wakeword_detected": 50 + i, "real_speech_false_accepts": i}
          for i, c in enumerate(ablation.FIXED_CUTOFFS)}
    cands = [{"index": k, "chosen": k == 1, "validation_frr": frr, "cutoff": 0.6, "real_wakeword_detected": n,
              "real_speech_false_accepts": 0} for k, (frr, n) in enumerate(((0.6, 30), (0.341, 42), (0.58, 47)))]
    judged = {"real_wakeword_detected_mean": 41.25, "shipped_student_real_detected_mean": 47.0,
              "test_false_accepts": 30, "real_speech_false_accepts": 0}
    lines = ablation.table([{**row, "real_at_fixed_cutoffs": at, "candidates": cands, "judge": judged},
                            row]).splitlines()
    assert "real detected (FAs) at 0.3 / 0.4 / 0.5" in lines[0] and "* shipped" in lines[0] and "judge" in lines[0]
    assert lines[1].count("|") == lines[0].count("|") == lines[2].count("|") == lines[3].count("|")
    assert lines[2].endswith("| 0.62 | no | 50 (0) / 51 (1) / 52 (2) | 30 (60%) / 42* (34%) / 47 (58%) | 41.2 / 47.0 |")
    assert lines[3].endswith("| 0.62 | no | – | – | – |")  # a row kept from before any was measured
    unrecorded = {**row, "variant": "hey-jarvis-all", "real_wakeword_frr": None, "real_wakeword_detected": None,
                  "real_wakeword_clips": 0, "real_at_fixed_cutoffs": {k: {**v, "real_wakeword_detected": None}
                                                                      for k, v in at.items()},
                  "candidates": [{**c, "real_wakeword_detected": None} for c in cands],
                  "judge": {**judged, "real_wakeword_detected_mean": None, "shipped_student_real_detected_mean": None,
                            "test_frr_mean": 0.125}}
    line = ablation.table([unrecorded]).splitlines()[-1]
    assert line.startswith("| hey-jarvis-all | – (no real recordings) | 0.0 (0) |")
    assert line.endswith("| – (0) / – (1) / – (2) | – (60%) / –* (34%) / – (58%) | test FRR 12.5%, test FAs 30 |")


def test_a_kept_run_drops_its_shard_feature_stores_and_keeps_the_gathered_one(tmp_path):
    from benchmarks.accuracy import _drop_shard_copies

    run = tmp_path / "runs" / "run" / "kfp" / "wakeline-1"  # what benchmarks.accuracy.train's kfp.local run writes
    shards = [run / f"for-loop-1-iteration-{i}" / "augmentation" / "features" for i in range(2)]
    gathered = run / "gather-features" / "features"
    other_run = tmp_path / "runs" / "run" / "kfp" / "wakeline-0" / "for-loop-1-iteration-0" / "augmentation" / "features"
    for d in (*shards, gathered, other_run):
        (d / "train" / "epoch-000").mkdir(parents=True)
        (d / "train" / "epoch-000" / "frames.u16").write_bytes(b"\0" * 64)
    _drop_shard_copies(gathered)
    assert not any(d.exists() for d in shards)
    assert (run / "for-loop-1-iteration-0" / "augmentation").is_dir()
    assert (gathered / "train" / "epoch-000" / "frames.u16").stat().st_size == 64
    assert other_run.is_dir()  # only this run's shards
