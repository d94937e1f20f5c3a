from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from components.common.artifacts import Split
from components.common.config import Splits
from components.data_prep.splits import assign_by_value, assign_files, assign_groups


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(1, 300), min_size=3, max_size=60),
       st.integers(0, 10_000))
def test_groups_cover_all_splits_and_are_deterministic(sizes, seed):
    a = assign_groups(sizes, sizes, Splits(), seed)
    assert a == assign_groups(dict(reversed(list(sizes.items()))), sizes, Splits(), seed)  # order-independent
    assert set(a) == set(sizes)
    assert set(a.values()) == set(Split)


def test_shares_are_close_to_targets_with_many_voices():
    sizes = {"piper": 300, **{f"espeak:{i}": 10 for i in range(200)}}
    a = assign_groups(sizes, sizes, Splits(validation_fraction=0.1, test_fraction=0.1), 0)
    share = Counter()
    for g, s in a.items():
        share[s] += sizes[g]
    total = sum(sizes.values())
    assert a["piper"] is Split.TRAIN
    assert abs(share[Split.VALIDATION] / total - 0.1) < 0.02
    assert abs(share[Split.TEST] / total - 0.1) < 0.02


def test_groups_without_positives_are_split_too():
    pos = {"a": 5, "b": 5, "c": 5}
    totals = {**pos, "spk1": 3, "spk2": 3, "spk3": 3}
    a = assign_groups(pos, totals, Splits(), 1)
    assert {a["spk1"], a["spk2"], a["spk3"]} == set(Split)


def test_files_split_with_at_least_one_each():
    a = assign_files([f"f{i}" for i in range(3)], Splits(), 0)
    assert sorted(s.value for s in a.values()) == ["test", "train", "validation"]
    b = assign_files([f"f{i}" for i in range(20)], Splits(), 0)
    per = defaultdict(int)
    for s in b.values():
        per[s] += 1
    assert per[Split.VALIDATION] == 2 and per[Split.TEST] == 2
    assert assign_files([f"f{i}" for i in range(20)], Splits(), 0) == b
    assert assign_files([f"f{i}" for i in range(20)], Splits(), 1) != b


def test_background_files_may_take_a_larger_share_than_clips():
    cfg = Splits(background_validation_fraction=0.25, background_test_fraction=0.2)
    a = assign_files([f"f{i}" for i in range(20)], cfg.for_background(), 0)
    per = defaultdict(int)
    for s in a.values():
        per[s] += 1
    assert (per[Split.VALIDATION], per[Split.TEST], per[Split.TRAIN]) == (5, 4, 11)
    assert Splits().for_background() == Splits()  # unset: the clip fractions


def test_background_fractions_must_leave_training_audio():
    import pytest

    from components.common.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="background_test_fraction"):
        load_config("smoke", None, ["data_prep.splits.background_validation_fraction=0.45",
                                    "data_prep.splits.background_test_fraction=0.45"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.1, 1.0), min_size=3, max_size=80), st.integers(0, 10_000),
       st.sampled_from([0.05, 0.1, 0.2, 0.3]))
def test_split_by_value_takes_the_same_counts_as_a_random_split(values, seed, fraction):
    named = {f"r{i}": v for i, v in enumerate(values)}
    cfg = Splits(validation_fraction=fraction, test_fraction=fraction)
    a = assign_by_value(named, cfg, seed)
    assert Counter(a.values()) == Counter(assign_files(list(named), cfg, seed).values())
    assert a == assign_by_value(dict(reversed(list(named.items()))), cfg, seed)  # order-independent


def test_split_by_value_gives_validation_and_test_one_room_from_each_band():
    rt60 = {f"rir-{i:04d}": 0.15 + 0.75 * i / 59 for i in range(60)}  # 60 rooms, 0.15 to 0.9 s
    a = assign_by_value(rt60, Splits(), 3)
    for split in (Split.VALIDATION, Split.TEST):
        bands = sorted(int(n[4:]) // 10 for n, s in a.items() if s is split)  # room i is the i-th driest
        assert bands == [0, 1, 2, 3, 4, 5]  # one room from each sixth of the 60, driest to wettest
    assert assign_by_value(rt60, Splits(), 4) != a  # the draw within a band depends on the seed
