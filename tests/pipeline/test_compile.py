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
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    assert images == {f"ghcr.io/wakeline/wakeline-cpu:{code_version()}"}
    for executor in ir["deploymentSpec"]["executors"].values():
        joined = " ".join(executor["container"]["command"])
        assert "pip install" not in joined  # install_kfp_package=False: images are air-gap friendly
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"preset", "wake_word", "config_json"}
    assert params["preset"]["defaultValue"] == "default"
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["data-prep"]["dependentTasks"] == ["validate-config"]
    component = load_component_from_file(str(COMPILED_IR))
    assert component.name == "wakeline"


def test_registry_and_version_are_arguments(tmp_path):
    path = compile_pipeline(tmp_path / "p.yaml", registry="registry.local:5000/team", version="9.9.9")
    assert "registry.local:5000/team/wakeline-cpu:9.9.9" in path.read_text()
