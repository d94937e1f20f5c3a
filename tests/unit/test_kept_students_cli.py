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
