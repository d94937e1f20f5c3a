"""The ablation benchmark's command line: variants and seeds map to kept runs and config overrides that load."""
import pytest

from benchmarks import ablation
from components.common.config import load_config


def test_seed_zero_is_the_preset_run_and_another_seed_is_its_own_run():
    assert ablation.run_spec("no-channels") == ("ablation-no-channels", ["augmentation.ops.channel_probability=0"])
    name, overrides = ablation.run_spec("no-channels", 2)
    assert name == "ablation-no-channels-seed2"
    assert overrides == ["augmentation.ops.channel_probability=0", "seed=2"]


@pytest.mark.parametrize("variant", sorted(ablation.VARIANTS))
def test_every_variant_at_another_seed_is_a_valid_config(variant):
    _, overrides = ablation.run_spec(variant, 1)
    config = load_config("default", overrides=overrides, wake_word=ablation.WORD)
    assert config.seed == 1
    assert config.sha256() != load_config("default", overrides=ablation.run_spec(variant)[1],
                                          wake_word=ablation.WORD).sha256()


@pytest.mark.parametrize("argv, message", [(["bogus"], "unknown variant(s) ['bogus']"),
                                           (["--seed", "-1", "all"], "--seed must be >= 0")])
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        ablation.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
