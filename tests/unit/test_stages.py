"""The stage registry is the DAG: its tasks match the components' signatures, the compiled IR and the stage
entries' one shape, and every input comes from an earlier task's output."""
from __future__ import annotations

import inspect

import pytest

from components.common.config import Stage
from components.common.stages import CONFIG, SHARDS, TASKS, TRAITS, Fan, role_by_output

ARTIFACT = "system."  # KFP artifact types; parameters (shard_index, teacher_index, run names) are not artifacts
KFP_ONLY = ("system.Metrics", "system.ClassificationMetrics")  # the entry returns these as StageResult.scalars


def _artifacts(specs) -> set[str]:
    return {name for name, spec in (specs or {}).items()
            if str(spec.type).startswith(ARTIFACT) and not str(spec.type).startswith(KFP_ONLY)}


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_the_registry_matches_the_component_signature(task):
    spec = task.load_component().component_spec
    inputs = _artifacts(spec.inputs) - {CONFIG}
    assert inputs == set(task.inputs), f"{task.name}: component inputs {sorted(inputs)}"
    outputs = _artifacts(spec.outputs)
    assert outputs == set(task.outputs) - {SHARDS}, f"{task.name}: component outputs {sorted(outputs)}"
    parameters = set(spec.inputs) - _artifacts(spec.inputs) - {CONFIG}
    assert set(task.options) <= parameters


def test_every_input_is_an_earlier_tasks_output():
    seen: set[tuple[str, str]] = set()
    for task in TASKS:
        for name, source in task.inputs.items():
            assert source in seen, f"{task.name}.{name} reads {source}, which no earlier task writes"
        seen |= {(task.name, output) for output in task.outputs}


@pytest.mark.parametrize("task", [t for t in TASKS if t.entry], ids=lambda t: t.name)
def test_every_stage_entry_has_the_one_shape(task):
    params = list(inspect.signature(task.load_entry()).parameters.values())
    assert [p.name for p in params[:3]] == ["inputs", "outputs", "config"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:]), "options are keyword-only"
    assert set(task.options) <= {p.name for p in params[3:]}


def test_every_stage_has_traits_and_a_task_and_names_are_unique():
    assert set(TRAITS) == set(Stage) == {t.stage for t in TASKS}
    assert len({t.name for t in TASKS}) == len(TASKS)
    assert [t.fan for t in TASKS].count(Fan.IF_BLESSED) == 1


def test_the_compiled_ir_has_the_registrys_tasks_wired_as_it_says(tmp_path):
    import yaml

    from pipeline.compile import compile_pipeline

    path = compile_pipeline(tmp_path / "ir.yaml", "example.test/wakeline", "0")
    ir = next(yaml.safe_load_all(path.read_text()))
    found: dict[str, dict] = {}

    def walk(dag: dict) -> None:  # tasks nested in the ParallelFor and the If live in their own sub-DAGs
        for name, task in dag.get("tasks", {}).items():
            found[name] = task
            sub = ir["components"][task["componentRef"]["name"]].get("dag")
            if sub:
                walk(sub)

    walk(ir["root"]["dag"])
    control = {n for n in found if n.startswith(("for-loop", "condition"))}
    assert set(found) - control == {t.name for t in TASKS}
    for task in TASKS:
        ir_inputs = found[task.name].get("inputs", {}).get("artifacts", {})
        for name, (source, output) in task.inputs.items():
            if task.fan is Fan.GATHER:  # dsl.Collected: the loop's collected output, not the task's
                continue
            ref = ir_inputs[name]
            upstream = ref.get("taskOutputArtifact", {})
            assert (upstream.get("producerTask"), upstream.get("outputArtifactKey")) == (source, output) or \
                "componentInputArtifact" in ref, f"{task.name}.{name}"
        assert found[task.name]["taskInfo"]["name"] == task.display_name


def test_lineage_roles_come_from_the_registry():
    roles = role_by_output()
    assert roles[("teacher-training-2", "model")] == roles[("teacher-b", "model")] == "teacher_b"
    assert sorted(set(roles.values())) == sorted({r for t in TASKS for r in t.roles.values()})


def test_the_readmes_copy_of_the_registry_is_current():
    from pathlib import Path

    from components.common.stages import describe_registry

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    indented = "\n".join(("  " + line) if line else "" for line in describe_registry().splitlines())
    assert f"  ```\n{indented}\n  ```" in readme, "README: paste the output of `wakeline stages` again"
