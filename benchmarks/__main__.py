"""Run the benchmarks: `python -m benchmarks [NAME ...]` (all of them without names; `--list` to list).

Registry: every module `benchmarks/<name>.py` that defines `run() -> list[dict]` is the benchmark `<name>`
(modules starting with `_`, and `common`, are helpers). A later stage adds a benchmark by adding a module;
nothing here needs editing. Each benchmark's results go to `runs/bench/<name>.json` (relative to the cwd).

Run it as a module, never from stdin: benchmarks fork worker processes (multiprocessing "fork").
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from benchmarks import common

_HELPERS = {"common"}
# Each of these trains `default` several times (an hour or more): run by name (make bench-accuracy / -ablation).
LONG = ("accuracy", "ablation")


def available() -> list[str]:
    """Benchmark names in the package, sorted."""
    pkg_dir = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(pkg_dir)])
                  if not m.ispkg and not m.name.startswith("_") and m.name not in _HELPERS)


def run_one(name: str, out_dir: Path) -> dict:
    module = importlib.import_module(f"benchmarks.{name}")
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"benchmarks/{name}.py defines no run() function")
    common.seed_everything()
    load_before = common.load_average()
    start = time.perf_counter()
    results = module.run()
    rep = common.report(name, results, wall_s=time.perf_counter() - start,
                        load_avg_1m={"start": load_before, "end": common.load_average()})
    path = common.write_report(rep, out_dir)
    common.log(f"[bench] {name}: wrote {path} ({rep['wall_s']} s)")
    return rep


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def print_table(reports: list[dict]) -> None:
    rows = [("benchmark", "metric", "value", "unit", "vs baseline")]
    for rep in reports:
        for r in rep["results"]:
            vs = ""
            if "baseline" in r:
                vs = (f"{_fmt(r.get('ours_value'))} vs {_fmt(r.get('baseline_value'))} {r.get('ours_unit', '')}"
                      f" ({r['baseline']})")
            rows.append((rep["benchmark"], r["metric"], _fmt(r["value"]), r.get("unit", ""), vs))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + ("  " + row[4] if row[4] else ""))
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * len(row[4]))


def main(argv: list[str] | None = None) -> int:
    names = available()
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"benchmarks to run (default: all of {names} but the long {', '.join(LONG)})")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--out-dir", type=Path, default=common.OUT_DIR, help="where the JSON files go (%(default)s)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; available: {', '.join(names)}")
    reports, failed = [], []
    for name in args.names or [n for n in names if n not in LONG]:
        common.log(f"[bench] {name}: running")
        try:
            reports.append(run_one(name, args.out_dir))
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            failed.append(name)
    if reports:
        print_table(reports)
    if failed:
        common.log(f"[bench] FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
