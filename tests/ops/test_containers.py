"""The cpu image and the pipeline's containers, for real (marker `container`): a Docker daemon and the image
`make base-image wheelhouse images` builds are needed. Without a daemon these are skipped with a one-line reason,
except under CI, where they fail (tests/conftest.py container_skip_reason). Nothing here reaches a network: the
containers run with --network none.

What they check: the image installs exactly requirements.lock (plus images/build-tools.txt), runs as its non-root
user, and no layer holds a credential; and the smoke preset runs with every stage in its own container, in the
image the IR names for it, as that user, with only the pipeline root mounted and no network, to the same summary
as the subprocess runner.
"""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from components.common.artifacts import code_version
from components.common.config import load_config
from components.common.images import Images
from pipeline.console import PIPELINE_LOG
from pipeline.local import DOCKER_LABEL, DOCKER_WORKDIR, DOCKER_WORKSPACE, DockerOptions, Runner, run_local
from pipeline.summary import format_summary
from tests.conftest import DOCKER_ENV, docker_unavailable

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
BUILD_TOOLS = ROOT / "images" / "build-tools.txt"
IMAGE_USER = "1000:1000"
CONTAINER_TIMEOUT_S = 120


def _expected_here() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get(DOCKER_ENV, "").strip() == "expected"


@pytest.fixture(scope="module")
def docker_client():
    import docker

    why = docker_unavailable()
    if why:
        pytest.fail(f"{why}; the container tests were expected to run here (CI, or {DOCKER_ENV}=expected). "
                    f"Start dockerd, or have .ci/run set {DOCKER_ENV}='unavailable: <why>'", pytrace=False)
    client = docker.from_env(timeout=CONTAINER_TIMEOUT_S)
    yield client
    client.close()


@pytest.fixture(scope="module")
def cpu_image(docker_client):
    import docker

    name = Images.for_version(code_version()).cpu
    try:
        return docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        message = f"image {name} is not built: run `make base-image wheelhouse images`"
        if _expected_here():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def run_in(client, image, *command: str) -> str:
    """What `command` prints in a throwaway container of `image`, with no network."""
    out = client.containers.run(image.id, list(command), network_mode="none", remove=True, stdout=True, stderr=True)
    return out.decode()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def pins(text: str) -> dict[str, str]:
    """`name==version` lines (comments and blanks ignored) as {canonical name: version}."""
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not a pin: {line!r}"
        found[_canonical(name.split("[", 1)[0])] = version.strip()
    return found


def test_pins_reads_what_pip_freeze_writes():
    assert pins("Tensorflow_CPU==2.21.0\n# c\n\nruamel.yaml==0.18.6  # x\n") == {
        "tensorflow-cpu": "2.21.0", "ruamel-yaml": "0.18.6"}


def test_image_holds_exactly_the_lock(docker_client, cpu_image):
    frozen = pins(run_in(docker_client, cpu_image, "python3", "-m", "pip", "freeze", "--all", "--exclude-editable"))
    expected = {**pins(LOCK.read_text()), **pins(BUILD_TOOLS.read_text())}
    missing = {k: v for k, v in expected.items() if frozen.get(k) != v}
    extra = {k: v for k, v in frozen.items() if k not in expected}
    assert not missing and not extra, f"differ from the lock: {missing=} {extra=}"
    # and the code is there, as the editable install of this version
    assert run_in(docker_client, cpu_image, "python3", "-c",
                  "from components.common.artifacts import code_version; print(code_version())").strip() == \
        code_version()


def test_image_runs_as_its_non_root_user(docker_client, cpu_image):
    assert cpu_image.attrs["Config"]["User"] == IMAGE_USER
    assert run_in(docker_client, cpu_image, "id", "-u").strip() == "1000"
    assert run_in(docker_client, cpu_image, "sh", "-c", "touch /opt/wakeline/x 2>&1 || echo refused").strip() \
        .endswith("refused")  # the code is root's, read-only to the stages


# ---------------------------------------------------------------- credentials in the layers

# Files that hold credentials, by name (anywhere in any layer, whiteouts included).
SECRET_NAMES = re.compile(r"(^|/)(\.netrc|_netrc|\.pypirc|pip\.conf|pip\.ini|\.git-credentials|\.npmrc|"
                          r"\.dockercfg|\.docker/config\.json|\.aws/credentials|\.aws/config|"
                          r"\.config/gcloud/[^/]*credentials[^/]*|\.kube/config|\.ssh/id_[a-z0-9]+|"
                          r"id_(rsa|dsa|ecdsa|ed25519))$")
# Contents that are credentials, checked in small files of the kinds that hold them.
SECRET_CONTENT = re.compile(rb"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----|aws_secret_access_key\s*=|"
                            rb"(?i:(index-url|extra-index-url)\s*=\s*https?://[^/\s:@]+:[^/\s@]+@)")
CONTENT_SUFFIXES = (".pem", ".key", ".conf", ".cfg", ".ini", ".env", ".json", ".toml", ".yaml", ".yml", ".txt")
CONTENT_MAX_BYTES = 256 * 1024
# What no image's history or environment may carry: a token, password or secret as a value, or a URL with a user.
SECRET_SETTING = re.compile(r"(?i)\b[A-Z0-9_]*(TOKEN|PASSWORD|PASSWD|SECRET|ACCESS_KEY|API_KEY)[A-Z0-9_]*=\S+|"
                            r"https?://[^/\s:@]+:[^/\s@]+@")
# Test data that other projects ship inside their wheels: keys made for their own tests, not ours. Named here one
# by one, so a new one is looked at before it is allowed.
KNOWN_TEST_KEYS: frozenset[str] = frozenset()


def layer_findings(image_tar: io.BufferedIOBase) -> list[str]:
    """Every credential-looking file in every layer of a `docker save` stream, as 'layer: path (why)'."""
    findings = []
    with tarfile.open(fileobj=image_tar, mode="r|") as outer:
        for member in outer:
            if not member.isfile() or not member.name.endswith("layer.tar"):
                continue
            layer = member.name.split("/", 1)[0][:12]
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for entry in inner:
                    path = entry.name.lstrip("./")
                    plain = re.sub(r"(^|/)\.wh\.", r"\1", path)  # a whiteout still says the file was there
                    if path in KNOWN_TEST_KEYS:
                        continue
                    if SECRET_NAMES.search(plain):
                        findings.append(f"{layer}: {path} (name)")
                    elif (entry.isfile() and entry.size <= CONTENT_MAX_BYTES
                          and (plain.endswith(CONTENT_SUFFIXES) or re.search(r"(^|/)\.[a-z]+rc$", plain))):
                        if SECRET_CONTENT.search(inner.extractfile(entry).read()):
                            findings.append(f"{layer}: {path} (content)")
    return findings


def history_findings(client, image) -> list[str]:
    found = [f"history: {step['CreatedBy'][:120]}" for step in client.api.history(image.id)
             if SECRET_SETTING.search(step.get("CreatedBy") or "")]
    found += [f"env: {e.split('=', 1)[0]}" for e in image.attrs["Config"].get("Env") or [] if SECRET_SETTING.search(e)]
    return found


class _Stream(io.RawIOBase):
    """A file over the chunks docker save streams, for tarfile's stream mode."""

    def __init__(self, chunks):
        self._chunks, self._rest = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def saved(client, image) -> io.BufferedReader:
    return io.BufferedReader(_Stream(client.api.get_image(image.id, chunk_size=1 << 20)), buffer_size=1 << 20)


def test_no_layer_holds_a_credential(docker_client, cpu_image):
    assert layer_findings(saved(docker_client, cpu_image)) == []
    assert history_findings(docker_client, cpu_image) == []


# The planted image's base: the small debootstrap base where it is here (`make base-image`), else the cpu image.
PLANTED_BASE = "wakeline-base:bookworm-python3.11"


@pytest.fixture(scope="module")
def planted_image(docker_client, cpu_image, tmp_path_factory):
    """A throwaway image with credentials planted (a .netrc, then deleted in a later layer, a pip.conf with a
    token, a private key) and a token in its history."""
    import docker

    try:
        base = docker_client.images.get(PLANTED_BASE)
    except docker.errors.ImageNotFound:
        base = cpu_image
    context = tmp_path_factory.mktemp("planted")
    (context / "Dockerfile").write_text(
        f"FROM {base.id}\nUSER 0\n"
        "RUN printf 'machine pypi.example login u password p\\n' > /root/.netrc && mkdir -p /etc/xdg/pip "
        "&& printf '[global]\\nindex-url = https://u:t0ken@pypi.example/simple\\n' > /etc/xdg/pip/pip.conf "
        "&& printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nx\\n' > /opt/deploy.key\n"
        "RUN rm /root/.netrc\nENV HF_TOKEN=hf_abc\nUSER 1000:1000\n")
    image, _ = docker_client.images.build(path=str(context), network_mode="none", rm=True, forcerm=True)
    yield image
    docker_client.images.remove(image.id, force=True)


def test_the_credential_check_finds_what_was_planted(docker_client, planted_image):
    """The check above is only worth something if it fails on an image that holds credentials."""
    findings = layer_findings(saved(docker_client, planted_image))
    assert any(f.endswith("root/.netrc (name)") for f in findings), findings
    assert any(f.endswith("root/.wh..netrc (name)") for f in findings), findings  # deleted, still in a layer
    assert any(f.endswith("etc/xdg/pip/pip.conf (name)") for f in findings), findings
    assert any(f.endswith("opt/deploy.key (content)") for f in findings), findings
    history = history_findings(docker_client, planted_image)
    assert "env: HF_TOKEN" in history and any("ENV HF_TOKEN" in f for f in history), history


# ---------------------------------------------------------------- the smoke preset, each stage in its container


def ir_images(images: Images) -> dict[str, str]:
    """{function the executor runs: its image} from the compiled IR of the pipeline for `images`."""
    from kfp import compiler

    from pipeline.dag import create_pipeline

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ir.yaml"
        compiler.Compiler().compile(create_pipeline(images, None), str(path))
        ir = next(yaml.safe_load_all(path.read_text()))
    found = {}
    for executor in ir["deploymentSpec"]["executors"].values():
        container = executor["container"]
        words = " ".join(container.get("command", []) + container.get("args", []))
        function = re.search(r"--function_to_execute\s+(\S+)", words).group(1)
        found[function] = container["image"]
    return found


class ContainerWatch:
    """Inspects every container the docker runner starts for one pipeline root, as it starts (they are removed
    when they exit)."""

    def __init__(self, client, pipeline_root: Path):
        self.client, self.seen, self.missed = client, [], []
        self._events = client.events(decode=True, filters={
            "type": "container", "event": "start", "label": f"{DOCKER_LABEL}={pipeline_root}"})
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        import docker

        for event in self._events:
            try:
                self.seen.append(self.client.api.inspect_container(event["id"]))
            except docker.errors.NotFound:
                self.missed.append(event["id"])

    def stop(self) -> None:
        self._events.close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def container_run(docker_client, cpu_image, tmp_path_factory):
    runs = tmp_path_factory.mktemp("container-runs")
    images = Images.for_version(code_version()).cpu_only()  # no gpu image here: the GPU stages run on the CPU
    pipeline_root = (runs / "smoke-containers" / "kfp").resolve()
    watch = ContainerWatch(docker_client, pipeline_root)
    mp = pytest.MonkeyPatch()
    for name in ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)  # nothing to reach: no network for the containers
    try:
        run = run_local(load_config("smoke"), "smoke", runs, run_id="smoke-containers", runner=Runner.DOCKER,
                        docker=DockerOptions(images))
    finally:
        mp.undo()
        watch.stop()
    return run, watch, images


@pytest.mark.slow
def test_smoke_preset_runs_every_stage_in_its_container(container_run):
    run, watch, images = container_run
    pipeline_root = str(run.run_dir / "kfp")
    assert not watch.missed, f"containers gone before they could be inspected: {watch.missed}"
    logs = sorted(p.stem for p in (run.run_dir / "logs").glob("*.log") if p.name != PIPELINE_LOG)  # one a task
    assert len(watch.seen) == len(logs) > 8, (len(watch.seen), logs)  # one container per task that ran
    expected_image = ir_images(images)
    # as root here, the image's own user; as anyone else, that uid:gid (never root)
    user = IMAGE_USER if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    for c in watch.seen:
        function = re.search(r"--function_to_execute\s+(\S+)", " ".join(c["Config"]["Cmd"])).group(1)
        assert c["Config"]["Image"] == expected_image[function], function
        assert c["Config"]["User"] == user, function
        assert c["HostConfig"]["NetworkMode"] == "none", function
        # the pipeline root, and kfp.local's workspace, which the runner keeps inside it: nothing else of this machine
        assert sorted((m["Source"], m["Destination"]) for m in c["Mounts"]) == [
            (pipeline_root, pipeline_root), (f"{pipeline_root}/{DOCKER_WORKSPACE}", "/kfp-workspace")], function
        assert c["Config"]["WorkingDir"] == f"{pipeline_root}/{DOCKER_WORKDIR}", function
    # What the stages wrote is the image user's, and the run ends as a subprocess run does.
    model = run.outputs["esphome_model"]
    tflite = model.path / str(model.metadata["tflite"])
    assert str(tflite.stat().st_uid) == user.split(":")[0] and tflite.stat().st_size > 10_000
    summary = format_summary(run)
    assert summary.startswith(f"wakeline run {run.run_id}  (preset smoke") and "ESPHome" in summary
    assert json.loads((run.run_dir / "summary.json").read_text())["run_id"] == run.run_id
