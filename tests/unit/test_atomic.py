"""Atomic writes (issue 19): a run killed mid-write never leaves a half-written file under the name that marks
something complete."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from components.common import atomic

KILLED_MID_WRITE = r"""
import os, signal, sys
from components.common import atomic
with atomic.replaced(sys.argv[1]) as tmp:
    with open(tmp, "w") as f:
        f.write('{"complete": fal')  # half of the new metadata is on disk ...
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # ... when the run is killed
"""


def test_a_process_killed_mid_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "metadata.json"
    target.write_text('{"complete": true}')
    out = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target)], cwd=os.getcwd(), timeout=60,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"complete": True}  # the old one, whole
    stray = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(stray) == 1 and stray[0].startswith(".metadata.tmp-") and stray[0].endswith(".json")


def test_a_process_killed_mid_write_of_a_new_file_leaves_none(tmp_path):
    target = tmp_path / "summary.json"
    subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target)], cwd=os.getcwd(), timeout=60,
                   env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert not target.exists()


def test_an_exception_mid_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic.replaced(target) as tmp:
            tmp.write_bytes(b"new, half")
            raise OSError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.tflite"]


def test_writes_replace_whole_and_keep_the_suffixes_writers_choose_formats_by(tmp_path):
    atomic.write_text(tmp_path / "a.json", "{}")
    atomic.write_bytes(tmp_path / "a.json", b"[1]")
    assert (tmp_path / "a.json").read_text() == "[1]" and os.listdir(tmp_path) == ["a.json"]
    assert atomic.temporary_name(tmp_path / "best.weights.h5").name.endswith(".weights.h5")  # Keras insists
    assert atomic.temporary_name(tmp_path / "x.npz").name.endswith(".npz")  # else np.savez appends one
    with atomic.replaced(tmp_path / "arr.npy") as tmp:
        np.save(tmp, np.arange(3))
    assert np.load(tmp_path / "arr.npy").tolist() == [0, 1, 2]


@pytest.mark.slow  # builds a Keras model
def test_a_crash_while_saving_training_state_resumes_from_the_previous_state(tmp_path, monkeypatch):
    from components.common.config import ModelSpec, Training
    from components.training.models import build
    from components.training.trainer import Trainer, TrainResult

    spec = ModelSpec(name="tiny", input_frames=59, first_conv_filters=8, pointwise_filters=[8, 8],
                     mixconv_kernels=[[5], [7, 9]], dropout=0.0)
    trainer = Trainer(build(spec), Training(steps=[4], learning_rates=[1e-2]), tmp_path, xla=False, seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 26, (8, 59, 40)).astype("float32")
    y, w = (np.arange(8) % 2).astype("float32"), np.ones(8, "float32")
    trainer.step(x, y, w)
    trainer.save_state(1, TrainResult(best=None))
    saved = [np.array(v) for v in trainer.model.get_weights()]
    trainer.step(x, y, w)

    def crash(*_a, **_k):
        raise KeyboardInterrupt  # killed after the new weights were written, before the optimizer and state

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_state(2, TrainResult(best=None))
    monkeypatch.undo()

    again = Trainer(build(spec), Training(steps=[4], learning_rates=[1e-2]), tmp_path, xla=False, seed=0)
    step, _ = again.load_state()
    assert step == 1  # the state on disk still says step 1 ...
    for a, b in zip(again.model.get_weights(), saved):  # ... and its weights are step 1's, not step 2's
        np.testing.assert_array_equal(a, b)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
