"""The architecture rules in pyproject.toml ([tool.importlinter]) hold, and they catch a planted violation."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "250"}  # one contract per line
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize("importer,imported,contract", [
    ("components/cascade_evaluation/cascade.py", "components.quantization.stage", "Layers"),  # a stage importing a stage
    ("components/serving/stream.py", "components.background_mining.miner", "Serving"),  # serving -> training
    ("components/runtime/tflm.py", "components.esphome_verification.contract", "Layers"),  # a library -> a stage
    ("components/quantization/stage.py", "kfp", "Only the thin components"),  # kfp below the component
])
def test_a_planted_violation_breaks_its_contract(tmp_path, importer, imported, contract):
    for part in ("components", "pipeline", "benchmarks"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "compiled"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / importer
    target.write_text(target.read_text() + f"\nimport {imported}  # planted\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    broken = [line for line in out.stdout.splitlines() if " BROKEN" in line]
    assert any(contract in line for line in broken), out.stdout
    assert imported in out.stdout


def test_no_two_classes_share_a_name():
    """Names that explain themselves: two classes called the same (two Verdicts, two Registrations) are two ideas
    a reader has to tell apart by their import path."""
    import ast
    from collections import defaultdict

    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "components").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in where.items() if len(paths) > 1}
