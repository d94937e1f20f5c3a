"""Parse JSON the way a strict reader does: NaN, Infinity and -Infinity are not JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.jsonio import loads_strict


def strict_files(root: Path) -> dict[Path, Any]:
    """Every .json file and every line of every .jsonl file under `root`, parsed strictly (raises on the first
    bare NaN or Infinity, naming the file)."""
    parsed: dict[Path, Any] = {}
    for path in sorted(Path(root).rglob("*.json")) + sorted(Path(root).rglob("*.jsonl")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            parsed[path] = ([loads_strict(line) for line in text.splitlines() if line.strip()]
                            if path.suffix == ".jsonl" else loads_strict(text))
        except ValueError as e:
            raise AssertionError(f"{path}: {e}") from None
    return parsed
