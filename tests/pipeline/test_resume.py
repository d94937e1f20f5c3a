"""Resume (issue 19): `wakeline run` killed with SIGKILL during teacher training or during background mining, then
run again, resumes from the state it left and ends with the same model as an uninterrupted run (smoke preset).

Each run is a real `python -m pipeline.cli run` subprocess, as `make run` starts it. The killed run and its rerun
share their resumable state (training.checkpoint_root, mining.session_root); the uninterrupted run has its own."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.slow  # three to five smoke pipelines

RUN_TIMEOUT_S = 1800
# At the default 60 s, smoke's training background is 4 chunks (short files, one chunk each), and in CI all 4 were
# recorded between two polls (2026-12-05), so the kill never landed mid-scan. 5 s chunks make several times more;
# every run here uses them alike (the uninterrupted one too: the chunking is part of the mining session's key)
CHUNK_S = 5


def _argv(tmp: Path, run_id: str, state: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--preset", "smoke", "--runs-dir", str(tmp / "runs"),
            "--run-id", run_id, "--set", f"training.checkpoint_root={state / 'checkpoints'}",
            "--set", f"mining.session_root={state / 'mining'}", "--set", f"publish.store={state / 'published'}",
            "--set", f"mining.chunk_s={CHUNK_S}"]


def _run(tmp: Path, run_id: str, state: Path, kill_when: Callable[[], bool] | None = None) -> bool:
    """Run the pipeline; with `kill_when`, SIGKILL its whole process group as soon as that holds. True when it
    was killed, False when it ran to the end."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}", "PYTHONPATH": os.getcwd()}
    state.mkdir(parents=True, exist_ok=True)
    with open(tmp / f"{run_id}.console", "w") as console:
        proc = subprocess.Popen(_argv(tmp, run_id, state), cwd=os.getcwd(), env=env, stdout=console,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if kill_when is not None and kill_when():
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, tasks included, as a pre-empted machine
                    proc.wait(timeout=60)
                    return True
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
    assert proc.returncode == 0, (tmp / f"{run_id}.console").read_text()[-4000:]
    return False


def _model_sha(tmp: Path, run_id: str) -> str:
    [tflite] = (tmp / "runs" / run_id / "outputs" / "esphome_model").resolve().glob("*.tflite")
    return hashlib.sha256(tflite.read_bytes()).hexdigest()


def _summary(tmp: Path, run_id: str) -> dict:
    return json.loads((tmp / "runs" / run_id / "summary.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    assert not _run(tmp, "straight", tmp / "state-straight")
    return tmp, _model_sha(tmp, "straight")


def _teacher_states(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (state / "checkpoints").glob("*/state.json")
            if not p.parent.name.startswith("student")]


def test_killed_during_teacher_training_resumes_to_the_same_model(uninterrupted):
    tmp, straight = uninterrupted
    state = tmp / "state-teacher"
    assert _run(tmp, "killed-in-teacher", state, kill_when=lambda: bool(_teacher_states(state)))
    steps = [s["step"] for s in _teacher_states(state)]
    assert steps and all(0 < s < 1500 for s in steps)  # killed mid-training (smoke: 1,500 steps)
    assert not _run(tmp, "rerun-teacher", state)
    resumed = [md["metadata"].get("resumed_from_step", 0) for name, md in _summary(tmp, "rerun-teacher").items()
               if name.startswith("teacher_")]
    assert max(resumed) >= min(steps)  # it resumed, not started over
    assert _model_sha(tmp, "rerun-teacher") == straight


def _chunks_scanned(state: Path) -> int:
    """Chunks the mining session has recorded so far (one line each in files/<sha256>.jsonl, flushed as it
    goes; its state.json is only written at the end)."""
    return sum(p.read_bytes().count(b"\n") for p in (state / "mining").glob("*/files/*.jsonl"))


def test_killed_during_mining_resumes_to_the_same_model(uninterrupted):
    tmp, straight = uninterrupted
    state = tmp / "state-mining"
    seen = []

    def mid_scan():
        seen.append(_chunks_scanned(state))
        return seen[-1] > 0

    assert _run(tmp, "killed-in-mining", state, kill_when=mid_scan)
    assert not list((state / "mining").glob("*/state.json")), "killed after the scan finished, not during it"
    assert not _run(tmp, "rerun-mining", state)
    session = _summary(tmp, "rerun-mining")["hard_negatives"]["metadata"]["session"]
    # the chunks scanned before the kill were reused, and some were left to scan
    assert seen[-1] <= session["chunks_reused"] < session["chunks_total"], (seen[-1], session)
    assert _model_sha(tmp, "rerun-mining") == straight
