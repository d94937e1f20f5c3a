"""The committed IR is what the code compiles to, and it is fit for a cluster."""
import yaml
from kfp.components import load_component_from_file

from components.common.artifacts import code_version
from pipeline.compile import COMPILED_IR, compile_pipeline


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
    teachers = [t for name, t in tasks.items() if name.startswith("teacher-training")]
    assert len(teachers) == 2 and all(t["dependentTasks"] == ["gather-features", "validate-config"] for t in teachers)
    component = load_component_from_file(str(COMPILED_IR))
    assert component.name == "wakeline"


def test_registry_version_and_gpus_are_arguments(tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", registry="registry.local:5000/team", version="9.9.9",
                            gpus_per_task=0)
    text = path.read_text()
    assert "registry.local:5000/team/wakeline-cpu:9.9.9" in text and "wakeline-gpu:9.9.9" in text
    assert "nvidia.com/gpu" not in text
