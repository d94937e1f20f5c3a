"""The quiet console (issue 19): kfp.local's output goes to one log file per task, the console gets one line per
stage with its key figure, and a progress bar while it runs."""
import io
import os

import pytest

from pipeline.console import TaskRouter, key_figure, routed_stdout

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"
DATASET_MD = {"counts": {"positive": {"train": 10, "validation": 2, "test": 3}, "negative": {"train": 5}},
              "hours": {"positive": {"train": 0.5}, "negative": {"train": 1.0}}, "quarantined": 1}
MODEL_MD = {"name": "mixednet-small", "validation": {"frr": 0.25, "fa_per_hour": 0.5, "cutoff": 0.4}}


def _task(name, body, *, status="SUCCESS", outputs=None):
    """What kfp.local 2.x prints for one task (task_dispatcher.py and logging_utils.py), colours included."""
    text = (f"12:00:00.000 - INFO - Executing task {CYAN}'{name}'{RESET}\n"
            "12:00:00.001 - INFO - Streamed logs:\n\n"
            + "".join(f"    {line}\n" for line in body) + "    \n\n"
            f"12:00:01.000 - INFO - Task {CYAN}'{name}'{RESET} finished with status "
            f"{GREEN if status == 'SUCCESS' else RED}{status}{RESET}\n")
    if status != "SUCCESS":
        return text
    if outputs:
        text += f"12:00:01.001 - INFO - Task {CYAN}'{name}'{RESET} outputs:\n"
        for key, md in outputs.items():
            pad = " " * len(f"    {key}: Dataset( ")
            text += (f"    {key}: Dataset( name='{key}',\n{pad}uri='/runs/x/kfp/{name}/{key}',\n"
                     f"{pad}metadata={md!r} )\n")
    return text + "-" * 80 + "\n"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 30.0
        return self.t


def _router(tmp_path, interactive=False, echo=False):
    console = io.StringIO()
    return TaskRouter(tmp_path / "logs", console, interactive=interactive, echo=echo, clock=Clock()), console


def test_each_task_gets_its_log_and_the_console_one_line_with_its_key_figure(tmp_path):
    router, console = _router(tmp_path)
    router.write("12:00:00.000 - INFO - Running pipeline: wakeline\n")
    router.write(_task("data-prep", ["reading voices", '{"executor": "output json"}'],
                       outputs={"dataset": DATASET_MD}))
    router.write(_task("train-teacher", ["train mixednet:  50%|#####     | 5/10 [00:01<00:01]"],
                       outputs={"teacher": MODEL_MD}))
    router.close()
    lines = console.getvalue().splitlines()
    assert lines == ["✓ data-prep                    30s  20 clips, 1.50 h, 1 quarantined",
                     "✓ train-teacher                30s  mixednet-small: validation FRR 25.0% at 0.50 FA/h"]
    log = (tmp_path / "logs" / "data-prep.log").read_text()
    assert '{"executor": "output json"}' in log and "reading voices" in log and "\x1b[" not in log
    assert "Running pipeline" in (tmp_path / "logs" / "pipeline.log").read_text()
    assert set(router.logs) == {"data-prep", "train-teacher"}


def test_a_failed_task_names_its_log_and_shows_its_last_lines(tmp_path):
    router, console = _router(tmp_path)
    router.write(_task("distillation", ["step 1", "ValueError: the features hold NaN"], status="FAILURE"))
    router.close()  # kfp.local raises right after the FAILURE line: the router is closed on the way out
    text = console.getvalue()
    assert router.failed == ("distillation", tmp_path / "logs" / "distillation.log")
    assert text.startswith("✗ distillation                 30s  failed: see ")
    assert "logs/distillation.log" in text and "ValueError: the features hold NaN" in text


def test_an_interrupted_task_is_marked_stopped(tmp_path):
    router, console = _router(tmp_path)
    router.write("12:00:00.000 - INFO - Executing task 'mining'\n    scanning\n")
    router.close()
    assert "✗ mining" in console.getvalue() and "stopped: see" in console.getvalue()


def test_a_terminal_shows_a_progress_bar_that_the_stage_line_replaces(tmp_path):
    router, console = _router(tmp_path, interactive=True)
    router.write(_task("train-teacher", ["train mixednet:  45%|####5     | 9/20 [00:01<00:01, 9step/s]"],
                       outputs={"teacher": MODEL_MD}))
    router.close()
    text = console.getvalue()
    assert "\r\x1b[K  train-teacher            [#########...........]  45%  train mixednet 9/20" in text
    assert text.endswith("\r\x1b[K✓ train-teacher                30s  mixednet-small: validation FRR 25.0% at "
                         "0.50 FA/h\n")


def test_tasks_of_the_same_name_get_their_own_logs(tmp_path):
    router, _ = _router(tmp_path)
    router.write(_task("augment-shard", ["shard 0"]) + _task("augment-shard", ["shard 1"]))
    router.close()
    assert "shard 0" in (tmp_path / "logs" / "augment-shard.log").read_text()
    assert "shard 1" in (tmp_path / "logs" / "augment-shard-2.log").read_text()


def test_verbose_echoes_everything_and_prints_no_stage_lines(tmp_path):
    router, console = _router(tmp_path, echo=True)
    router.write(_task("data-prep", ["reading voices"], outputs={"dataset": DATASET_MD}))
    router.close()
    assert "    reading voices" in console.getvalue() and "✓" not in console.getvalue()


def test_partial_writes_are_joined_into_lines(tmp_path):
    router, _ = _router(tmp_path)
    for piece in ("12:00:00.000 - INFO - Executing task 'a'\n", "    ", "half ", "a line\n", "    x\r", "y\n"):
        router.write(piece)
    router.close()
    assert (tmp_path / "logs" / "a.log").read_text().splitlines()[1:] == ["    half a line", "    x", "y"]


@pytest.mark.parametrize("outputs, figure", [
    ({}, ""),
    ({"hard_negatives": {"hard_negatives": 42, "hours_scanned": 0.7}}, "42 hard negatives from 42.0 min"),
    ({"features": {"sets": {"train/epoch-000": {}, "train/epoch-001": {}, "validation/epoch-000": {}},
                   "shards": 2}}, "2 augmentation epoch(s), 2 shard(s)"),
    ({"esphome_model": {"file_size_bytes": 57648, "tensor_arena_size": 27125}}, "57,648 B, arena 27,125 B"),
    ({"report": {"blessed": False}}, "NOT BLESSED"),
    ({"verdict": {"blessed": True}, "report": {"blessed": True}}, "BLESSED"),
    ({"dataset": "not a dict"}, ""),
])
def test_key_figures(outputs, figure):
    assert key_figure(outputs) == figure


def test_routed_stdout_restores_stdout_and_keeps_warnings_off_the_console(tmp_path, monkeypatch):
    import sys
    import warnings

    from components.common.progress import INTERVAL_ENV, log_interval_s

    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    console, real = io.StringIO(), sys.stdout
    with routed_stdout(tmp_path / "logs", console=console, progress_interval_s=2.0):
        print("12:00:00.000 - INFO - Executing task 'a'")
        warnings.warn("a kfp.local warning", RuntimeWarning)
        assert log_interval_s() == 2.0  # what the tasks started meanwhile inherit: a live bar
    assert sys.stdout is real and INTERVAL_ENV not in os.environ and log_interval_s() == 10.0
    assert "a kfp.local warning" in (tmp_path / "logs" / "a.log").read_text()
    assert "warning" not in console.getvalue() and "✗ a" in console.getvalue()


TOY_PIPELINE = r'''
import sys
from kfp import dsl, local
from kfp.dsl import Dataset, Output
from pipeline.console import routed_stdout

@dsl.component(base_image="python:3.11", install_kfp_package=False)
def prep(dataset: Output[Dataset]):
    import sys
    print('{"executor": "a big JSON the console must not show"}')
    print("prep:  50%|#####     | 1/2 [00:00<00:00]", file=sys.stderr)
    dataset.metadata["counts"] = {"positive": {"train": 3}}
    dataset.metadata["hours"] = {"positive": {"train": 0.25}}
    dataset.metadata["quarantined"] = 0
    open(dataset.path, "w").write("x")

@dsl.component(base_image="python:3.11", install_kfp_package=False)
def broken(dataset: dsl.Input[Dataset]):
    raise ValueError("the toy stage fails on purpose")

@dsl.pipeline(name="toy")
def toy(fail: bool):
    p = prep()
    with dsl.If(fail == True):  # noqa: E712
        broken(dataset=p.outputs["dataset"])

local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1] + "/kfp", raise_on_error=True)
with routed_stdout(sys.argv[1] + "/logs"):
    try:
        toy(fail=sys.argv[2] == "fail")
    except RuntimeError as e:
        print("raised:", e, file=sys.stderr)
'''


@pytest.mark.slow  # starts kfp.local task subprocesses (a toy pipeline: seconds, not the real one)
@pytest.mark.parametrize("fail", [False, True])
def test_a_real_kfp_local_run_is_routed(tmp_path, fail):
    import os
    import subprocess
    import sys

    script = tmp_path / "toy.py"  # a file: kfp reads each component's source with inspect
    script.write_text(TOY_PIPELINE)
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "fail" if fail else "ok"],
                         capture_output=True, text=True, timeout=300, cwd=os.getcwd(),
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("✓ prep ") and lines[0].endswith("3 clips, 0.25 h, 0 quarantined")
    assert "a big JSON" not in out.stdout and "Executing task" not in out.stdout
    log = (tmp_path / "logs" / "prep.log").read_text()
    assert "a big JSON the console must not show" in log and "prep:  50%" in log
    if fail:
        assert "raised: Pipeline" in out.stderr  # kfp.local raised after the router saw the FAILURE
        assert len(lines) >= 2 and lines[1].startswith("✗ broken ") and "failed: see" in lines[1]
        assert "ValueError: the toy stage fails on purpose" in lines[-1]  # the failed task's last lines
        assert "----" not in out.stdout
        assert "the toy stage fails on purpose" in (tmp_path / "logs" / "broken.log").read_text()
    else:
        assert len(lines) == 1


def test_progress_off_a_terminal_writes_a_line_per_update(monkeypatch):
    """kfp.local reads a task's output line by line: tqdm's '\\r' refreshes must arrive as lines."""
    from components.common.progress import INTERVAL_ENV, _Lines, log_interval_s

    out = io.StringIO()
    lines = _Lines(out)
    lines.write("\rtrain:  10%|#         | 1/10")
    lines.write("\rtrain:  20%|##        | 2/10   ")
    lines.write("\n")  # tqdm's close
    assert out.getvalue() == "train:  10%|#         | 1/10\ntrain:  20%|##        | 2/10\n"
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        assert log_interval_s() == 10.0


def test_run_local_turns_a_failed_task_into_stage_failed(tmp_path, monkeypatch):
    """run_local (kfp.local faked): the task kfp.local reports FAILURE for is named with its log."""
    from kfp import local

    import pipeline.dag
    from components.common.config import load_config
    from pipeline.local import StageFailed, run_local

    def fake_pipeline(**_kwargs):
        print(_task("distillation", ["ValueError: boom"], status="FAILURE"), end="")
        raise RuntimeError("Pipeline 'wakeline' finished with status FAILURE.")

    monkeypatch.setattr(local, "init", lambda **_k: None)
    monkeypatch.setattr(pipeline.dag, "create_pipeline", lambda *_a, **_k: fake_pipeline)
    with pytest.raises(StageFailed) as info:
        run_local(load_config("smoke"), "smoke", tmp_path / "runs", run_id="r1")
    run = (tmp_path / "runs" / "r1").resolve()
    assert info.value.task == "distillation" and info.value.log == run / "logs" / "distillation.log"
    assert "ValueError: boom" in info.value.log.read_text()
