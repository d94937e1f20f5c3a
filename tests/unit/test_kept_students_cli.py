"""The kept-students analyses' command line: a folder that is not a kept run, or an unknown command, is
refused by name before anything loads; the rules are what their names say."""

import pytest

from benchmarks import kept_students


def test_a_folder_without_a_kept_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a kept run"):
        kept_students.main(["cutoff-rules", str(tmp_path)])


def test_the_rules_are_zero_one_and_two_false_accepts_in_ten_minutes():
    minutes = 10
    for allowed, target in kept_students.RULES.items():
        assert allowed <= target * minutes / 60 < allowed + 1


def test_an_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        kept_students.main(["bogus"])
    assert e.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_a_kept_run_name_gives_its_recipe_and_seed():
    assert kept_students.recipe_of("ablation-greetings-seed2") == ("greetings", 2)
    assert kept_students.recipe_of("ablation-greetings") == ("greetings", 0)
    assert kept_students.recipe_of("no-greetings-seed13") == ("no-greetings", 13)
    assert kept_students.recipe_of("seed-mining") == ("seed-mining", 0)


def test_the_judge_cutoff_is_the_lowest_with_at_most_the_allowed_false_accepts():
    from components.common.metrics import OperatingPoint

    points = [OperatingPoint(c, frr, n, float(n)) for c, frr, n in
              [(0.5, 0.6, 0), (0.1, 0.1, 9), (0.2, 0.2, 4), (0.3, 0.3, 2), (0.4, 0.5, 1)]]
    assert [kept_students.lowest_cutoff(points, k).cutoff for k in (0, 1, 2, 3, 4, 8, 9)] == \
        [0.5, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1]
    # no cutoff meets it: the highest one, never a made-up point
    assert kept_students.lowest_cutoff(points[1:4], 1).cutoff == 0.3


def test_the_judge_summary_pairs_recipes_seed_by_seed():
    def rows(run, *detected):
        return [{"run": run, "real_wakeword_detected": d, "real_speech_false_accepts": d == 1, "chosen": k == 0,
                 "test_false_accepts": 2 + (run == "ablation-new"), "test_frr": 0.25,
                 "test_frr_at_as_many_test_false_accepts": 0.2} for k, d in enumerate(detected)]

    data = (rows("ablation-base", 30, 40) + rows("ablation-base-seed1", 20, 20) + rows("ablation-base-seed2", 50, 50)
            + rows("ablation-new", 38, 38) + rows("ablation-new-seed1", 22, 24) + rows("ablation-new-seed3", 1, 1))
    s = kept_students.judge_summary(data, "base")
    real = s["base"]["real_detected"]
    assert real["per_seed"] == {0: 35.0, 1: 20.0, 2: 50.0} and "against_baseline" not in real
    assert real["mean"] == pytest.approx(35.0) and real["sd"] == pytest.approx(15.0)
    assert s["base"]["real_speech_false_accepts"] == 0 and s["new"]["real_speech_false_accepts"] == 2
    vs = s["new"]["real_detected"]["against_baseline"]
    assert vs["seeds"] == [0, 1] and vs["differences"] == [3.0, 3.0]  # seed 3 has no baseline to pair with
    assert vs["mean_difference"] == 3.0 and vs["standard_error"] == 0.0
    assert s["new"]["test_false_accepts"]["against_baseline"]["differences"] == [1.0, 0.0]
    shipped = s["new"]["shipped_student_real_detected"]  # the first student of each run is the chosen one
    assert shipped["per_seed"] == {0: 38.0, 1: 22.0, 3: 1.0}
    assert shipped["against_baseline"]["differences"] == [8.0, 2.0]
    table = kept_students.format_judge(s)
    assert ("| new | 0,1,3 | 38.0 / 23.0 / 1.0 | 20.7 (18.6) | +3.0 (0.0) at seeds 0,1 | 38.0 / 22.0 / 1.0 | "
            "20.3 (18.6) | +5.0 (3.0) at seeds 0,1 | 3.0 / 2.0 / 2.0 | 2.3 (0.6) | +0.5 (0.5) at seeds 0,1 | "
            "25.0% / 25.0% / 25.0% | 25.0% (0.0%) | +0.0% (0.0%) at seeds 0,1 | 20.0% / 20.0% / 20.0% | "
            "20.0% (0.0%) | +0.0% (0.0%) at seeds 0,1 | 2 |") in table
    assert all(line.count("|") == 19 for line in table.splitlines())


def test_a_word_without_real_recordings_is_judged_on_its_synthetic_test():
    rows = [{"run": run, "real_wakeword_detected": None, "real_speech_false_accepts": 0, "chosen": k == 0,
             "test_false_accepts": fas, "test_frr": frr, "test_frr_at_as_many_test_false_accepts": frr / 2}
            for run, fas, frr in
            (("ablation-hey-jarvis-all-seed1", 4, 0.2), ("ablation-hey-jarvis-no-greetings-seed1", 1, 0.3))
            for k in range(2)]
    s = kept_students.judge_summary(rows, "hey-jarvis-all")
    new = s["hey-jarvis-no-greetings"]
    assert new["real_detected"] is None and new["shipped_student_real_detected"] is None
    assert new["test_false_accepts"]["against_baseline"]["differences"] == [-3.0]
    assert new["test_frr"]["against_baseline"]["differences"] == [pytest.approx(0.1)]
    line = kept_students.format_judge(s).splitlines()[-1]
    assert line.startswith("| hey-jarvis-no-greetings | 1 | – | – | – | – | – | – | 1.0 | 1.0 (–) | -3.0 at seeds 1 | ")
    assert new["test_frr_at_as_many_test_false_accepts"]["against_baseline"]["differences"] == [pytest.approx(0.05)]
    assert line.count("|") == 19


def test_a_baseline_that_is_none_of_the_runs_recipes_is_refused_before_anything_loads(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        kept_students.main(["judge", "--baseline", "defualt", str(tmp_path / "ablation-default-seed1"),
                            str(tmp_path / "ablation-greetings")])
    assert e.value.code == 2
    assert "--baseline 'defualt' is none of the runs' recipes ['default', 'greetings']" in capsys.readouterr().err


def _source_row(split, family, heldout, heard, channel, clips, fired, at="shipped", cutoff=0.5):
    return {"run": "ablation-all", "at": at, "cutoff": cutoff, "split": split, "family": family,
            "heldout_family": heldout, "text_heard_in_training": heard, "channel": channel, "clips": clips,
            "fired": fired}


def test_the_sources_table_separates_held_out_families_engines_and_unheard_sentences():
    rows = [_source_row("test", "espeak:klatt", True, False, "clean", 10, 4),
            _source_row("test", "piper:joe", False, True, "clean", 20, 1),
            _source_row("test", "piper:joe", False, False, "clean", 30, 3),
            _source_row("validation", "piper:joe", False, True, "telephone", 40, 2),
            _source_row("test", "espeak:formant", False, True, "clean", 15, 2),
            _source_row("test", None, False, True, "clean", 5, 0),  # a user clip without a family
            _source_row("test", "espeak:klatt", True, False, "clean", 10, 7, at="1 validation FA", cutoff=0.3)]
    lines = kept_students.format_sources(rows).splitlines()
    assert "(cutoff 0.50)" in lines[3] and "(cutoff 0.30)" in lines[3]
    cells = {}
    for line in lines[4:]:
        if line:
            split, channel, rest = line[:12].strip(), line[12:23].strip(), line[23:]
            cells[(split, channel, rest[:31].strip())] = rest[31:].split()
    assert cells[("test", "clean", "all")][:2] == ["10/80", "12.5%"]
    assert cells[("test", "clean", "all")][2:] == ["7/10", "70.0%"]  # the second cutoff: klatt rows only
    assert cells[("test", "clean", "held-out families")][0] == "4/10"
    assert cells[("test", "clean", "other families")][2] == "–"  # the second cutoff scored no other family
    assert cells[("test", "clean", "other families")][0] == "6/70"
    assert cells[("test", "clean", "other fam., espeak-ng")][0] == "2/15"  # held-out klatt is not counted here
    assert cells[("test", "clean", "other fam., neural voices")][0] == "4/50"
    assert cells[("test", "clean", "other fam., heard sentences")][0] == "3/40"
    assert cells[("test", "clean", "other fam., unheard sentences")][0] == "3/30"
    assert cells[("validation", "telephone", "all")][0] == "2/40"
    assert ("validation", "clean", "all") not in cells  # nothing scored there: no row


def test_the_streams_table_puts_validation_beside_test_and_lists_the_rooms():
    rows = [{"run": "r", "at": "shipped", "cutoff": 0.22, "split": "validation", "condition": c, "hours": 0.17,
             "false_accepts": n} for c, n in (("clean_speech", 0), ("far_field_speech", 1), ("all", 1))]
    rows += [{"run": "r", "at": "shipped", "cutoff": 0.22, "split": "test", "condition": c, "hours": 0.17,
              "false_accepts": n} for c, n in (("clean_speech", 1), ("far_field_speech", 11), ("all", 12))]
    text = kept_students.format_streams(rows, [{"run": "r", "rt60_s": {"validation": [0.2, 0.4], "test": [0.7]}}])
    assert "shipped (cutoff 0.22): validation 1 (far_field_speech 1); test 12 (clean_speech 1, far_field_speech 11)" \
        in text  # the "all" row is not counted twice
    assert "validation 0.30 mean (0.20, 0.40); test 0.70 mean (0.70)" in text
