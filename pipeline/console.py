"""A quiet console for kfp.local: one line per stage, each task's output in a log file of its own.

kfp.local prints, to this process's stdout, its own log lines ("Executing task 'x'", the task's streamed output,
"Task 'x' finished with status SUCCESS", its outputs with their metadata) for every task. `TaskRouter` stands in
for sys.stdout while a run goes: it writes each task's lines to `<run>/logs/<task>.log` (the lines between tasks
to `pipeline.log`), shows a progress bar from the stage's progress lines while a stage runs (on a terminal), and
prints one line when it ends: the stage, its wall time and its key figure, read from its outputs' metadata.
It only parses text, so a test can feed it fake task output.
"""
from __future__ import annotations

import ast
import contextlib
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from components.common.progress import INTERVAL_ENV

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXECUTING = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
OUTPUT = re.compile(r"^\s*(\w+): \w+\( name='")
METADATA = re.compile(r"metadata=(\{.*\}) \)\s*$")
# a tqdm line (components/common/progress.py writes one a line off a terminal): "desc:  45%|####  | 9/20 [..]"
PROGRESS = re.compile(r"^\s*(?:(?P<desc>.*?):\s*)?(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")
PIPELINE_LOG = "pipeline.log"
TAIL_LINES = 6  # of a failed task's output, shown under its line


@dataclass
class _Task:
    name: str
    log: TextIO
    path: Path
    started: float
    status: str | None = None
    output: str | None = None  # the output whose metadata line is expected next
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    tail: list[str] = field(default_factory=list)


class TaskRouter:
    """A file-like stand-in for sys.stdout during a kfp.local run (see the module docstring). `echo` also
    copies every line to the console (`wakeline run --verbose`)."""

    def __init__(self, logs_dir: Path, console: TextIO, *, interactive: bool | None = None, echo: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logs_dir = Path(logs_dir)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.console, self.echo, self.clock = console, echo, clock
        self.interactive = console.isatty() if interactive is None else interactive
        self.pipeline_log = open(self.logs_dir / PIPELINE_LOG, "a", encoding="utf-8")
        self.task: _Task | None = None
        self.logs: dict[str, Path] = {}  # task name (as written) -> its log file
        self.failed: tuple[str, Path] | None = None  # the task kfp.local reported FAILURE for, and its log
        self.stages: list[str] = []  # the console lines printed, one per stage
        self._pending = ""
        self._bar_shown = False

    # --- the file interface kfp.local's print and logging use ----------------------------------------------
    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = re.split(r"\r\n|\r|\n", self._pending)
        for line in lines:
            self.line(line)
        return len(text)

    def flush(self) -> None:
        for f in (self.pipeline_log, self.task.log if self.task else None):
            if f is not None:
                f.flush()

    def isatty(self) -> bool:
        return False

    # --- routing --------------------------------------------------------------------------------------------
    def line(self, raw: str) -> None:
        """One line of kfp.local's output."""
        text = ANSI.sub("", raw)
        if self.echo:
            self._clear_bar()
            self.console.write(text + "\n")
        started = EXECUTING.search(text)
        if started:
            self._finish()
            self._start(started.group(1))
        log = self.task.log if self.task else self.pipeline_log
        log.write(text + "\n")
        if self.task is None:
            return
        finished = FINISHED.search(text)
        if finished and finished.group(1) == self.task.name:
            self.task.status = finished.group(2)
            if self.task.status != "SUCCESS":
                self.failed = (self.task.name, self.task.path)
            return
        if set(text.strip()) == {"-"} and self.task.status:  # kfp.local's rule under a finished task
            self._finish()
            return
        if text.strip() and not self.task.status:
            self.task.tail = (self.task.tail + [text])[-TAIL_LINES:]
        output = OUTPUT.match(text)
        if output and self.task.status:
            self.task.output = output.group(1)
        meta = METADATA.search(text)
        if meta and self.task.output:
            self.task.metadata[self.task.output] = _literal(meta.group(1))
            self.task.output = None
            return
        progress = PROGRESS.match(text)
        if progress and not self.task.status:
            self._bar(progress)

    def warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """warnings.showwarning: into the current log, not onto the console."""
        self.line(warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"))

    def close(self) -> None:
        """End of the run (or an error in it): the last task's line, then close the logs."""
        if self._pending:
            self.line(self._pending)
            self._pending = ""
        self._finish()
        self.pipeline_log.close()

    # --- the console ----------------------------------------------------------------------------------------
    def _start(self, name: str) -> None:
        stem, n = _file_name(name), 2
        path = self.logs_dir / f"{stem}.log"
        while path.exists():  # a task run again (ParallelFor iterations share a name)
            path, n = self.logs_dir / f"{stem}-{n}.log", n + 1
        self.task = _Task(name, open(path, "w", encoding="utf-8"), path, self.clock())
        self.logs[name if name not in self.logs else path.stem] = path
        if self.interactive and not self.echo:
            self._show(f"  {name:<24} …")

    def _finish(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        task.log.close()
        wall = _duration(self.clock() - task.started)
        if task.status == "SUCCESS":
            line = f"✓ {task.name:<24} {wall:>7}  {key_figure(task.metadata)}".rstrip()
        else:
            reason = "failed" if task.status else "stopped"
            line = f"✗ {task.name:<24} {wall:>7}  {reason}: see {_rel(task.path)}"
            if task.status:  # kfp's own last line says only FAILURE; the task's last lines say why
                line += "".join(f"\n    {t.strip()}" for t in task.tail)
        self.stages.append(line)
        if not self.echo:
            self._clear_bar()
            self.console.write(line + "\n")
            self.console.flush()

    def _bar(self, m: re.Match) -> None:
        if not self.interactive or self.echo or self.task is None:
            return
        pct = min(100, int(m.group("pct")))
        filled = pct * 20 // 100
        desc = (m.group("desc") or "").strip()
        self._show(f"  {self.task.name:<24} [{'#' * filled}{'.' * (20 - filled)}] {pct:3d}%  "
                   f"{desc} {m.group('n')}/{m.group('total')}".rstrip())

    def _show(self, text: str) -> None:
        self.console.write("\r\x1b[K" + text)
        self.console.flush()
        self._bar_shown = True

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.console.write("\r\x1b[K")
            self._bar_shown = False


def key_figure(outputs: dict[str, dict[str, Any]]) -> str:
    """The one figure that says how a stage went, from its outputs' metadata ('' when none is known)."""
    parts = []
    for name, md in outputs.items():
        if not isinstance(md, dict):
            continue
        if name == "dataset" and "counts" in md:
            clips = sum(int(n) for row in md["counts"].values() for n in row.values())
            hours = sum(float(h) for row in md.get("hours", {}).values() for h in row.values())
            parts.append(f"{clips} clips, {hours:.2f} h, {int(md.get('quarantined', 0))} quarantined")
        elif name == "features" and "sets" in md:
            epochs = sum(1 for k in md["sets"] if k.startswith("train/epoch-"))
            parts.append(f"{epochs} augmentation epoch(s), {int(md.get('shards', 1))} shard(s)")
        elif name == "hard_negatives" and "hard_negatives" in md:
            parts.append(f"{int(md['hard_negatives'])} hard negatives from "
                         f"{float(md.get('hours_scanned', 0)) * 60:.1f} min")
        elif "validation" in md and isinstance(md["validation"], dict) and "frr" in md["validation"]:
            v = md["validation"]
            parts.append(f"{md.get('name', name)}: validation FRR {float(v['frr']):.1%} at "
                         f"{float(v.get('fa_per_hour', 0)):.2f} FA/h")
        elif "tensor_arena_size" in md:
            parts.append(f"{int(md.get('file_size_bytes', 0)):,} B, arena {int(md['tensor_arena_size']):,} B")
        elif "blessed" in md:
            parts.append("BLESSED" if md["blessed"] else "NOT BLESSED")
    return "; ".join(dict.fromkeys(parts))  # a figure two outputs share (verdict and report) once


@contextlib.contextmanager
def routed_stdout(logs_dir: Path, *, echo: bool = False, console: TextIO | None = None,
                  progress_interval_s: float = 2.0) -> Iterator[TaskRouter]:
    """sys.stdout goes through a TaskRouter for the duration (kfp.local's logger and print look it up then).
    The tasks, started meanwhile with this environment, write a progress line every `progress_interval_s`."""
    real = sys.stdout
    router = TaskRouter(logs_dir, console or real, echo=echo)
    sys.stdout = router
    previous = os.environ.get(INTERVAL_ENV)
    os.environ[INTERVAL_ENV] = str(progress_interval_s)
    try:
        with warnings.catch_warnings():  # kfp.local's warnings (one per task) go to the log with the rest
            warnings.showwarning = router.warning
            yield router
    finally:
        sys.stdout = real
        if previous is None:
            os.environ.pop(INTERVAL_ENV, None)
        else:
            os.environ[INTERVAL_ENV] = previous
        router.close()


def _literal(text: str) -> dict[str, Any]:
    """A metadata dict as kfp.local prints it (a Python repr); {} when it is not a plain literal."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _file_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("._") or "task"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
