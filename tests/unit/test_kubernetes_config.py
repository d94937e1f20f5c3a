"""The config's `kubernetes` section: quantities, per-stage defaults under partial overrides, and errors that
name the key."""
from pathlib import Path

import pytest
import yaml

from components.common.config import (ConfigError, KubernetesSettings, Stage, StageResourceTable, cpu_cores,
                                      load_config, memory_bytes, validate)
from pipeline.cluster import state_outside_volume

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("quantity, cores", [("2", 2.0), ("0.5", 0.5), (".25", 0.25), ("500m", 0.5), ("1500m", 1.5)])
def test_cpu_quantities(quantity, cores):
    assert cpu_cores(quantity) == cores


@pytest.mark.parametrize("quantity, n_bytes", [("512Mi", 512 * 2**20), ("8Gi", 8 * 2**30), ("1G", 10**9),
                                               ("100", 100), ("2Ti", 2 * 2**40)])
def test_memory_quantities(quantity, n_bytes):
    assert memory_bytes(quantity) == n_bytes


def _error(kubernetes: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate({"wake_word": "hey jarvis", "kubernetes": kubernetes})
    return str(err.value)


@pytest.mark.parametrize("kubernetes, message", [
    ({"resources": {"data_prep": {"cpu_request": "2 cores"}}},
     "kubernetes.resources.data_prep.cpu_request: '2 cores' is not a CPU quantity"),
    ({"resources": {"data_prep": {"cpu_request": "0"}}}, "must be more than 0 cores"),
    ({"resources": {"augmentation": {"memory_request": "8GB"}}},
     "kubernetes.resources.augmentation.memory_request: '8GB' is not a memory quantity"),
    ({"resources": {"augmentation": {"memory_limit": "1Gi"}}}, "memory_limit '1Gi' is below memory_request '2Gi'"),
    ({"resources": {"teacher": {}}}, "kubernetes.resources.teacher: unknown key; allowed here: validate_config"),
    ({"pipeline_root": "/var/artifacts"}, "expected s3://bucket/prefix"),
    ({"gpus_per_task": -1}, "kubernetes.gpus_per_task"),
    ({"gpu_tolerations": [{"key": "gpu", "value": "yes"}]}, "operator Exists takes no value"),
    ({"gpu_tolerations": [{"key": "gpu", "operator": "Equal"}]}, "operator Equal needs a value"),
    ({"gpu_tolerations": [{"key": "gpu", "effect": "NoRun"}]}, "kubernetes.gpu_tolerations.0.effect"),
    ({"cpu_node_selector": {"pool": "not a label"}}, "kubernetes.cpu_node_selector.pool"),
    ({"s3_secret": {"secret_name": "Team_S3", "required": ["AWS_ACCESS_KEY_ID"]}}, "kubernetes.s3_secret.secret_name"),
    ({"s3_secret": {"secret_name": "s3"}}, "name at least one key"),
    ({"s3_secret": {"secret_name": "s3", "required": ["A"], "optional": ["A"]}}, "a key is listed twice: ['A']"),
    ({"mlflow_secret": {"secret_name": "m", "required": ["AWS_ACCESS_KEY_ID"]}},
     "s3_secret and mlflow_secret both set ['AWS_ACCESS_KEY_ID']"),
    ({"state_volume": {"mount_path": "/mnt/x"}}, "kubernetes.state_volume.pvc_name"),
    ({"state_volume": {"pvc_name": "Team_State"}}, "kubernetes.state_volume.pvc_name"),
    ({"state_volume": {"pvc_name": "s", "mount_path": "mnt/state"}}, "'mnt/state': must be an absolute, normalised"),
    ({"state_volume": {"pvc_name": "s", "mount_path": "/mnt/../opt"}}, "must be an absolute, normalised path"),
    ({"state_volume": {"pvc_name": "s", "mount_path": "/opt"}},
     "'/opt': a volume mounted there would hide the image's /opt/wakeline and /opt/venv"),
    ({"state_volume": {"pvc_name": "s", "mount_path": "/opt/wakeline"}}, "would hide the image's /opt/wakeline"),
])
def test_errors_name_the_key(kubernetes, message):
    assert message in _error(kubernetes)


def test_a_partial_stage_entry_keeps_that_stages_other_defaults():
    defaults = StageResourceTable()
    table = KubernetesSettings.model_validate(
        {"resources": {"teacher_training": {"memory_limit": "64Gi"}, "publish": {"cpu_limit": "1"}}}).resources
    assert table.teacher_training.memory_limit == "64Gi"
    assert table.teacher_training.memory_request == defaults.teacher_training.memory_request
    assert table.teacher_training.cpu_request == defaults.teacher_training.cpu_request
    assert table.publish.cpu_limit == "1" and table.publish.cpu_request == defaults.publish.cpu_request
    assert table.data_prep == defaults.data_prep
    assert KubernetesSettings.model_validate(
        {"resources": {"quantization": {"memory_limit": None}}}).resources.quantization.memory_limit is None


def test_every_stage_has_defaults_and_null_secrets_turn_them_off():
    table = StageResourceTable()
    assert set(StageResourceTable.model_fields) == {s.value for s in Stage}
    assert all(table.for_stage(s).memory_limit is not None for s in Stage)  # a runaway stage is OOM-killed alone
    off = load_config("smoke", overrides=["kubernetes.s3_secret=null", "kubernetes.mlflow_secret=null"]).kubernetes
    assert off.s3_secret is None and off.mlflow_secret is None
    assert load_config("smoke", overrides=["kubernetes.pipeline_root=minio://mlpipeline/wakeline"]
                       ).kubernetes.pipeline_root == "minio://mlpipeline/wakeline"


def test_production_keeps_its_state_on_the_kind_example_volume():
    config = load_config("production")
    volume = config.kubernetes.state_volume
    assert volume is not None and volume.mount_path == "/mnt/wakeline-state"
    assert config.training.checkpoint_root.startswith("/mnt/wakeline-state/")
    assert config.mining.session_root.startswith("/mnt/wakeline-state/")
    assert state_outside_volume(config) == []
    claim = yaml.safe_load((REPO / "configs/kind/state-pvc.yaml").read_text())
    assert claim["kind"] == "PersistentVolumeClaim" and claim["metadata"]["name"] == volume.pvc_name
    secrets_namespace = next(yaml.safe_load_all((REPO / "configs/kind/secrets.example.yaml").read_text()))
    assert claim["metadata"]["namespace"] == secrets_namespace["metadata"]["namespace"]  # where the pods run


def test_state_paths_outside_the_volume_are_named():
    volume = ["kubernetes.state_volume={pvc_name: s, mount_path: /mnt/state}"]
    inside = load_config("smoke", overrides=[*volume, "training.checkpoint_root=/mnt/state/ckpt",
                                             "mining.session_root=/mnt/state"])
    assert state_outside_volume(inside) == []
    problems = state_outside_volume(load_config("smoke", overrides=[
        *volume, "training.checkpoint_root=runs/checkpoints", "mining.session_root=/mnt/state-old/mining"]))
    assert len(problems) == 2
    assert problems[0].startswith("training.checkpoint_root 'runs/checkpoints' is not under "
                                  "kubernetes.state_volume.mount_path '/mnt/state' (relative paths resolve")
    assert problems[0].endswith("set it to e.g. /mnt/state/checkpoints")
    assert problems[1].startswith("mining.session_root '/mnt/state-old/mining' is not under")  # a prefix, not a parent
    escaped = load_config("smoke", overrides=[*volume, "training.checkpoint_root=/mnt/state/../ckpt",
                                              "mining.session_root=/mnt/state/mining"])
    assert [p.split(" ")[0] for p in state_outside_volume(escaped)] == ["training.checkpoint_root"]
    assert state_outside_volume(load_config("smoke")) == []  # no volume: nothing to check
