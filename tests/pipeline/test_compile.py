"""The committed IR is what the code compiles to, and it is fit for a cluster."""
import inspect
import re
from pathlib import Path

import yaml
from kfp.components import load_component_from_file

from components.common import storage, tracking
from components.common.artifacts import code_version
from components.common.config import KubernetesSettings, Stage
from pipeline.compile import COMPILED_IR, compile_pipeline
from pipeline.dag import GPU_STAGES, MLFLOW_STAGES, S3_STAGES, STATE_STAGES

REPO = Path(__file__).resolve().parents[2]


def test_committed_ir_is_fresh(tmp_path):
    fresh = compile_pipeline(tmp_path / "wakeline.yaml")
    assert COMPILED_IR.read_text() == fresh.read_text(), (
        "pipeline/compiled/wakeline.yaml is stale: run `make compile` and commit it")


def test_ir_images_parameters_and_reload():
    docs = list(yaml.safe_load_all(COMPILED_IR.read_text()))
    ir = docs[0]
    executors = ir["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    gpu_stages = {"exec-augmentation", "exec-teacher-training", "exec-teacher-training-2", "exec-distillation"}
    for name in gpu_stages:
        assert images.pop(name) == f"ghcr.io/wakeline/wakeline-gpu:{code_version()}"
        gpu = executors[name]["container"]["resources"]["accelerator"]
        assert gpu["resourceType"] == "nvidia.com/gpu" and gpu["resourceCount"] == "1"  # type AND count
    assert set(images.values()) == {f"ghcr.io/wakeline/wakeline-cpu:{code_version()}"}
    assert not any("accelerator" in e["container"].get("resources", {})
                   for n, e in executors.items() if n not in gpu_stages)
    for executor in ir["deploymentSpec"]["executors"].values():
        joined = " ".join(executor["container"]["command"])
        assert "pip install" not in joined  # install_kfp_package=False: images are air-gap friendly
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"preset", "wake_word", "config_json"}
    assert params["preset"]["defaultValue"] == "default"
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["data-prep"]["dependentTasks"] == ["validate-config"]
    assert tasks["for-loop-1"]["parameterIterator"]["items"]["inputParameter"].endswith("augmentation-shards-Output")
    assert tasks["gather-features"]["dependentTasks"] == ["for-loop-1"]
    assert tasks["condition-2"]["triggerPolicy"]["condition"].endswith("== true")  # publish only if blessed
    assert tasks["background-mining"]["dependentTasks"] == ["data-prep", "validate-config"]
    assert tasks["distillation"]["dependentTasks"] == ["gather-features", "teacher-training", "teacher-training-2",
                                                       "validate-config"]
    assert tasks["quantization"]["dependentTasks"] == ["distillation", "gather-features", "validate-config"]
    # the cascade: the shipped model as sentry and both teachers (the config picks the judge), after verification
    assert tasks["cascade-evaluation"]["dependentTasks"] == ["esphome-verification", "gather-features", "quantization",
                                                             "teacher-training", "teacher-training-2",
                                                             "validate-config"]
    assert "cascade-evaluation" in tasks["condition-2"]["dependentTasks"]
    publish = ir["components"]["comp-condition-2"]["dag"]["tasks"]["publish"]["inputs"]["artifacts"]
    assert publish["cascade"] == {"componentInputArtifact": "pipelinechannel--cascade-evaluation-cascade"}
    assert "cascade_report" in ir["root"]["dag"]["outputs"]["artifacts"]
    teachers = [t for name, t in tasks.items() if name.startswith("teacher-training")]
    assert len(teachers) == 2 and all(t["dependentTasks"] == ["gather-features", "validate-config"] for t in teachers)
    component = load_component_from_file(str(COMPILED_IR))
    assert component.name == "wakeline"


def test_registry_version_and_gpus_are_arguments(tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", registry="registry.local:5000/team", version="9.9.9",
                            cluster=KubernetesSettings(gpus_per_task=0))
    text = path.read_text()
    assert "registry.local:5000/team/wakeline-cpu:9.9.9" in text and "wakeline-gpu:9.9.9" in text
    assert "nvidia.com/gpu" not in text  # no GPU request and no GPU toleration
    ir, platform = _load(path)
    assert not any("accelerator" in e["container"]["resources"] for e in ir["deploymentSpec"]["executors"].values())
    assert not any("tolerations" in e for e in platform.values())


# --------------------------------------------------------------------------------------------------
# Kubernetes settings in the IR: per-stage resources, GPUs, tolerations, node selectors, Secrets as env


def _load(path: Path) -> tuple[dict, dict]:
    """The IR and kfp-kubernetes' per-executor platform spec (the second YAML document)."""
    docs = list(yaml.safe_load_all(Path(path).read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    return docs[0], platform


def _stage(executor: str) -> Stage:
    """exec-teacher-training-2 -> Stage.TEACHER_TRAINING."""
    return Stage(re.sub(r"-\d+$", "", executor.removeprefix("exec-")).replace("-", "_"))


def test_every_executor_is_a_stage_and_every_stage_runs():
    ir, _ = _load(COMPILED_IR)
    stages = [_stage(name) for name in ir["deploymentSpec"]["executors"]]
    assert set(stages) == set(Stage)
    assert stages.count(Stage.TEACHER_TRAINING) == 2


def test_committed_ir_requests_each_stages_default_resources_and_image():
    ir, _ = _load(COMPILED_IR)
    table = KubernetesSettings().resources
    for name, executor in ir["deploymentSpec"]["executors"].items():
        stage = _stage(name)
        want = table.for_stage(stage)
        got = executor["container"]["resources"]
        assert got["resourceCpuRequest"] == want.cpu_request, name
        assert got["resourceMemoryRequest"] == want.memory_request, name
        assert got["resourceMemoryLimit"] == want.memory_limit, name
        assert "resourceCpuLimit" not in got, name  # no CPU limit by default: no throttling
        kind = "gpu" if stage in GPU_STAGES else "cpu"
        assert executor["container"]["image"] == f"ghcr.io/wakeline/wakeline-{kind}:{code_version()}", name
    # sized differently per stage, not one size for all
    assert table.teacher_training.memory_request != table.validate_config.memory_request


def test_committed_ir_gpu_stages_tolerate_the_gpu_taint_and_others_do_not():
    ir, platform = _load(COMPILED_IR)
    for name in ir["deploymentSpec"]["executors"]:
        tolerations = platform.get(name, {}).get("tolerations", [])
        if _stage(name) in GPU_STAGES:
            assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], name
        else:
            assert tolerations == [], name
        assert "nodeSelector" not in platform.get(name, {}), name  # none by default


def test_committed_ir_gives_the_s3_and_mlflow_secrets_to_the_stages_that_use_them():
    ir, platform = _load(COMPILED_IR)
    settings = KubernetesSettings()
    for name in ir["deploymentSpec"]["executors"]:
        stage = _stage(name)
        entries = platform.get(name, {}).get("secretAsEnv", [])
        by_secret: dict[tuple[str, bool], list[str]] = {}
        for entry in entries:
            assert entry["secretNameParameter"]["runtimeValue"]["constant"] == entry["secretName"]
            assert all(k["secretKey"] == k["envVar"] for k in entry["keyToEnv"])  # keys are the variable names
            by_secret[(entry["secretName"], entry["optional"])] = [k["envVar"] for k in entry["keyToEnv"]]
        want = {}
        if stage in S3_STAGES:
            want[("wakeline-s3", False)] = settings.s3_secret.required
            want[("wakeline-s3", True)] = settings.s3_secret.optional
        if stage in MLFLOW_STAGES:
            want[("wakeline-mlflow", False)] = settings.mlflow_secret.required
            want[("wakeline-mlflow", True)] = settings.mlflow_secret.optional
        assert by_secret == want, name
    assert Stage.DATA_PREP in S3_STAGES and Stage.PUBLISH in S3_STAGES
    assert {Stage.TEACHER_TRAINING, Stage.DISTILLATION, Stage.BACKGROUND_MINING} <= MLFLOW_STAGES


def test_secret_defaults_cover_what_the_code_reads_and_the_kind_secret_example():
    settings = KubernetesSettings()
    read_by_storage = set(re.findall(r'env\.get\("(\w+)"\)', inspect.getsource(storage.s3_client)))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= read_by_storage
    assert read_by_storage <= set(settings.s3_secret.env_names)
    assert tracking.TRACKING_URI_ENV in settings.mlflow_secret.required
    example = {d["metadata"]["name"]: d["stringData"]
               for d in yaml.safe_load_all((REPO / "configs/kind/secrets.example.yaml").read_text())}
    for secret in (settings.s3_secret, settings.mlflow_secret):
        assert set(secret.required) <= set(example[secret.secret_name]), secret.secret_name
        assert set(example[secret.secret_name]) <= set(secret.env_names), secret.secret_name


def test_custom_kubernetes_settings_reach_the_ir(tmp_path):
    cluster = KubernetesSettings.model_validate({
        "pipeline_root": "s3://team-bucket/wakeline",
        "gpus_per_task": 2,
        "gpu_tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}],
        "gpu_node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "cpu_node_selector": {"pool": "cpu"},
        "s3_secret": {"secret_name": "team-s3", "required": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]},
        "mlflow_secret": None,
        "resources": {"teacher_training": {"cpu_limit": "8", "memory_limit": "64Gi"}},
    })
    ir, platform = _load(compile_pipeline(tmp_path / "p.yaml", cluster=cluster))
    assert ir["defaultPipelineRoot"] == "s3://team-bucket/wakeline"
    executors = ir["deploymentSpec"]["executors"]
    teacher = executors["exec-teacher-training"]["container"]["resources"]
    assert teacher["accelerator"]["resourceType"] == "nvidia.com/gpu" and teacher["accelerator"]["resourceCount"] == "2"
    assert teacher["resourceCpuLimit"] == "8" and teacher["resourceMemoryLimit"] == "64Gi"
    assert teacher["resourceMemoryRequest"] == KubernetesSettings().resources.teacher_training.memory_request
    for name in executors:
        spec = platform.get(name, {})
        if _stage(name) in GPU_STAGES:
            assert spec["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
            assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                             "effect": "NoExecute"}]
        else:
            assert spec["nodeSelector"]["labels"] == {"pool": "cpu"}
            assert "tolerations" not in spec
        secrets = {e["secretName"] for e in spec.get("secretAsEnv", [])}
        assert secrets == ({"team-s3"} if _stage(name) in S3_STAGES else set()), name  # no MLflow Secret at all


def test_cpu_only_cluster_puts_gpu_stages_on_cpu_nodes(tmp_path):
    cluster = KubernetesSettings(gpus_per_task=0, cpu_node_selector={"pool": "cpu"},
                                 gpu_node_selector={"pool": "gpu"})
    ir, platform = _load(compile_pipeline(tmp_path / "p.yaml", cluster=cluster))
    for name, executor in ir["deploymentSpec"]["executors"].items():
        assert platform[name]["nodeSelector"]["labels"] == {"pool": "cpu"}, name
        if _stage(name) in GPU_STAGES:  # still the gpu image: NumPy / TensorFlow on the CPU there
            assert "wakeline-gpu" in executor["container"]["image"]


def test_state_volume_is_mounted_in_the_stages_that_keep_state(tmp_path):
    cluster = KubernetesSettings.model_validate({"state_volume": {"pvc_name": "team-state", "mount_path": "/mnt/st"}})
    ir, platform = _load(compile_pipeline(tmp_path / "p.yaml", cluster=cluster))
    mounted = set()
    for name in ir["deploymentSpec"]["executors"]:
        mounts = platform.get(name, {}).get("pvcMount", [])
        if _stage(name) in STATE_STAGES:
            assert [(m["mountPath"], m["pvcNameParameter"]["runtimeValue"]["constant"]) for m in mounts] == [
                ("/mnt/st", "team-state")], name
            mounted.add(name)
        else:
            assert mounts == [], name
    # the stages that read training.checkpoint_root (both teachers, the student) and mining.session_root
    assert mounted == {"exec-background-mining", "exec-teacher-training", "exec-teacher-training-2",
                       "exec-distillation"}


def test_committed_ir_mounts_no_volume():
    assert KubernetesSettings().state_volume is None
    _, platform = _load(COMPILED_IR)
    assert not any("pvcMount" in spec for spec in platform.values())
