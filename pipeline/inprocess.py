"""Every stage of the registry called in this process, in DAG order, on local folders: what kfp.local's tasks
call, without kfp. The benchmarks measure kfp.local's overhead against it; it is also the shortest way to step
through the stages in a debugger.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.config import WakelineConfig, write_config_artifact
from components.common.stages import CONFIG, TASKS, Fan, StageResult, Task


@dataclass
class InProcessRun:
    root: Path
    paths: dict[tuple[str, str], Any] = field(default_factory=dict)  # (task, output) -> its path (a list per shard)
    results: dict[str, StageResult] = field(default_factory=dict)  # task -> its result (the last shard's per shard)

    def output(self, task: str, name: str) -> Any:
        return self.paths[(task, name)]


def _call(task: Task, inputs: dict, outputs: dict, config: WakelineConfig, show_progress: bool,
          **options: Any) -> StageResult:
    entry = task.load_entry()
    if "show_progress" in inspect.signature(entry).parameters:
        options["show_progress"] = show_progress
    return entry(inputs, outputs, config, **{**task.options, **options})


def run_in_process(config: WakelineConfig, preset: str, root: Path, *, show_progress: bool = False,
                   publish: bool = False) -> InProcessRun:
    """Run the registry's stages under `root` (one folder per task output). Publishing writes to the model store
    and registry, so it runs only with `publish=True` (and, as in the DAG, only for a blessed model)."""
    run = InProcessRun(Path(root))
    run.paths[("validate-config", CONFIG)] = run.root / "config"
    write_config_artifact(config, run.root / "config", preset)
    for task in TASKS:
        if task.entry is None:
            continue
        inputs = {name: run.paths[source] for name, source in task.inputs.items()}
        if task.fan is Fan.IF_BLESSED:
            verdict = run.results["esphome-verification"].value
            if not (publish and verdict.blessed):
                continue
            inputs["config"] = run.paths[("validate-config", CONFIG)]
            metadata = {name: run.results[task_name].metadata.get(output, {})
                        for name, (task_name, output) in task.inputs.items()}
            outputs = {name: run.root / task.name / name for name in task.outputs}
            run.results[task.name] = _call(task, inputs, outputs, config, show_progress, metadata=metadata)
        elif task.fan is Fan.PER_SHARD:
            for name in task.outputs:
                run.paths[(task.name, name)] = []
            for shard in config.shard_indices():
                outputs = {name: run.root / f"{task.name}-{shard}" / name for name in task.outputs}
                run.results[task.name] = _call(task, inputs, outputs, config, show_progress, shard_index=shard)
                for name, path in outputs.items():
                    run.paths[(task.name, name)].append(path)
            continue
        else:
            outputs = {name: run.root / task.name / name for name in task.outputs}
            run.results[task.name] = _call(task, inputs, outputs, config, show_progress)
        for name, path in outputs.items():
            run.paths[(task.name, name)] = path
    return run
