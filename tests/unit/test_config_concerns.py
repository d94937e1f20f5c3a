"""The config split by concern: the lineage hash covers the run's parameters and nothing of the deployment
settings, and validation gives the same answer whatever is installed on the machine."""
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from components.common.config import (ConfigError, RunParameters, WakelineConfig, load_config,
                                      write_config_artifact)
from components.common.config import espeak_voices

REPO = Path(__file__).resolve().parents[2]

DEPLOYMENT_CHANGES = [
    "kubernetes.resources.teacher_training.memory_limit=64Gi",
    "kubernetes.resources.data_prep={cpu_request: '4', cpu_limit: '8'}",
    "kubernetes.cpu_node_selector={pool: cpu-spot}",
    "kubernetes.gpu_tolerations=[{key: dedicated, operator: Equal, value: ml, effect: NoExecute}]",
    "kubernetes.gpus_per_task=0",
    "kubernetes.state_volume={pvc_name: wakeline-state}",
    "kubernetes.mlflow_secret=null",
    "kubernetes.pipeline_root=s3://artifacts/wakeline",
    "publish.store=s3://models/published",
    "publish.registry=required",
    "publish.registered_model_name=my-model",
    # run parameters that only say where state lives (NOT_HASHED)
    "data_prep.cache_dir=/var/cache/wakeline", "data_prep.synthesis_cache=false",
    "training.checkpoint_root=/state/checkpoints", "training.profile_steps=50", "mining.session_root=/state/mining",
]


@pytest.mark.parametrize("assignment", DEPLOYMENT_CHANGES)
def test_deployment_settings_never_change_the_lineage_hash(assignment, tmp_path):
    base = load_config("smoke")
    changed = load_config("smoke", overrides=[assignment])
    assert changed != base  # the setting did change
    assert changed.sha256() == base.sha256()
    recorded = write_config_artifact(changed, tmp_path / "config.json", "smoke")  # what every artifact records
    assert recorded["config_sha256"] == base.sha256()


def test_a_pod_limit_and_a_node_selector_together_keep_the_hash():
    base = load_config("production")
    changed = load_config("production", overrides=[
        "kubernetes.resources.distillation.memory_limit=128Gi", "kubernetes.gpu_node_selector={gpu: h200}",
        "kubernetes.gpu_tolerations=[]"])
    assert changed.kubernetes != base.kubernetes and changed.sha256() == base.sha256()


@pytest.mark.parametrize("assignment", [
    "seed=1", "training.steps=[1201, 300]", "training.learning_rates=[0.002, 0.001]",
    "data_prep.tts.espeak.variants=[m1, f2]", "augmentation.epochs=3", "distillation.student.dropout=0.2",
    "device_budget.max_arena_bytes=40000", "cascade.judge=teacher_b", "wake_word=okay nabu",
])
def test_run_parameters_change_the_lineage_hash(assignment):
    assert load_config("smoke", overrides=[assignment]).sha256() != load_config("smoke").sha256()


def test_only_publish_and_kubernetes_sit_outside_the_hashed_parameters():
    """A new top-level section must be placed on purpose: in RunParameters (hashed) or WakelineConfig (not)."""
    assert list(WakelineConfig.model_fields)[:len(RunParameters.model_fields)] == list(RunParameters.model_fields)
    assert set(WakelineConfig.model_fields) - set(RunParameters.model_fields) == {"publish", "kubernetes"}


def test_the_yaml_a_user_writes_keeps_its_kubernetes_and_publish_keys(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("kubernetes:\n  resources:\n    teacher_training: {memory_limit: 20Gi}\n"
                 "publish:\n  store: runs/elsewhere\n")
    cfg = load_config("smoke", config_file=f)
    assert cfg.kubernetes.resources.teacher_training.memory_limit == "20Gi"
    assert cfg.publish.store == "runs/elsewhere"
    with pytest.raises(ConfigError, match="kubernetes.resources.teacher_training.memory_limt: unknown key"):
        load_config("smoke", overrides=["kubernetes.resources.teacher_training.memory_limt=20Gi"])
    with pytest.raises(ConfigError, match="publish.bucket: unknown key; allowed here: store"):
        load_config("smoke", overrides=["publish.bucket=x"])


# --------------------------------------------------------------------------------------------------
# espeak-ng voices: validated against a committed list, checked here against the pinned wheel


def _shipped_by_installed_wheel() -> tuple[frozenset[str], frozenset[str]]:
    import espeakng_loader  # a pinned dependency (requirements.lock): its absence is a broken environment

    data = Path(espeakng_loader.get_data_path())
    languages = frozenset(p.name.lower() for p in (data / "lang").rglob("*") if p.is_file())
    variants = frozenset(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())
    return languages, variants


def test_committed_espeak_voices_are_what_the_pinned_wheel_ships():
    pinned = f"espeakng-loader=={espeak_voices.ESPEAKNG_LOADER_VERSION}"
    assert pinned in (REPO / "requirements.lock").read_text().splitlines(), \
        f"requirements.lock no longer pins {pinned}: regenerate components/common/config/espeak_voices.py"
    assert version("espeakng-loader") == espeak_voices.ESPEAKNG_LOADER_VERSION
    languages, variants = _shipped_by_installed_wheel()
    assert espeak_voices.LANGUAGES == languages, "update components/common/config/espeak_voices.py LANGUAGES"
    assert espeak_voices.VARIANTS == variants, "update components/common/config/espeak_voices.py VARIANTS"


def test_default_voices_are_shipped():
    cfg = load_config("default")
    for languages in (cfg.data_prep.tts.espeak.languages, cfg.data_prep.conditions.non_english.languages,
                      cfg.data_prep.other_languages.languages):
        assert {x.lower() for x in languages} <= espeak_voices.LANGUAGES
    assert set(cfg.data_prep.tts.espeak.variants) <= espeak_voices.VARIANTS


_WITHOUT_ESPEAK = """
import sys
sys.modules["espeakng_loader"] = None  # `import espeakng_loader` now fails, as on a machine without it
from components.common.config import ConfigError, load_config
for assignment in sys.argv[1:]:
    try:
        load_config("smoke", overrides=[assignment])
    except ConfigError as e:
        print("rejected", assignment, "|", str(e).splitlines()[1][:120])
    else:
        print("accepted", assignment)
"""


def test_validation_does_not_depend_on_espeak_being_installed():
    checks = {"data_prep.tts.espeak.variants=[m1, nosuchvoice]": "rejected",
              "data_prep.tts.espeak.languages=[en-us, xx-nowhere]": "rejected",
              "data_prep.conditions.non_english.languages=[de, klingon]": "rejected",
              "data_prep.other_languages.languages=[pt, elvish]": "rejected",
              "data_prep.tts.espeak.variants=[m1, whisper]": "accepted",
              "data_prep.tts.espeak.languages=[EN-US, en-gb-x-rp]": "accepted"}
    out = subprocess.run([sys.executable, "-c", _WITHOUT_ESPEAK, *checks], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout.splitlines()
    assert [line.split()[0] for line in out] == list(checks.values()), out
    assert "data_prep.tts.espeak.variants" in out[0] and "nosuchvoice" in out[0]
