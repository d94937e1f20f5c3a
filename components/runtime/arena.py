"""TFLite-Micro probes in child processes: a too-small arena or a broken model can abort the interpreter, and
that must fail a check, never the stage (reference streaming-export.md, pitfalls)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_TRY_ARENA = r"""
import json, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
path, arena, invokes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
it = runtime.Interpreter.from_file(path, arena_size=arena)
shape = tuple(it.get_input_details(0)["shape"])
outs = []
for _ in range(invokes):
    it.set_input(np.zeros(shape, np.int8), 0)
    it.invoke()
    outs.append(int(np.asarray(it.get_output(0)).reshape(-1)[0]))
print(json.dumps({"ok": True, "input_shape": list(map(int, shape)), "outputs": outs}))
"""


def try_arena(model: Path, arena_size: int, invokes: int = 3, timeout_s: float = 60.0) -> dict:
    """Load and invoke `invokes` times on zero input with `arena_size` bytes, in a child process."""
    try:
        out = subprocess.run([sys.executable, "-c", _TRY_ARENA, str(model), str(int(arena_size)), str(invokes)],
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    if out.returncode == 0 and out.stdout.strip():
        return json.loads(out.stdout.strip().splitlines()[-1])
    tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
    return {"ok": False, "error": f"exit {out.returncode}: {' | '.join(tail)}"}


def minimum_arena(model: Path, high: int | None = None, resolution: int = 16) -> int | None:
    """The smallest arena (to `resolution` bytes) that loads and invokes, by bisection; None if even
    `high` (default 10 x the model size, TFLM's own default) fails."""
    high = high or 10 * Path(model).stat().st_size
    if not try_arena(model, high, invokes=1)["ok"]:
        return None
    low = 0
    while high - low > resolution:
        mid = (low + high) // 2
        if try_arena(model, mid, invokes=1)["ok"]:
            high = mid
        else:
            low = mid
    return high
