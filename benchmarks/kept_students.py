"""Other ways to choose the shipped model, tried on kept ablation runs without training again (evaluation only).

  cutoff-rules RUN...    each kept candidate student's cutoff when the worst validation condition may have 0, 1
                         or 2 false accepts (today: 0), the student that rule ships (lowest validation FRR), and
                         each one's real detections, real false accepts and synthetic test figures
  average RUN...         one model from the students' averaged weights (`--checkpoint best|last`, optionally
                         re-measuring its BatchNorm statistics), judged like a candidate, then measured

Each run is a folder under runs/bench/accuracy/ kept by `python -m benchmarks.ablation` with three or more
students. Rules and models are judged on validation through the device path, as distillation does; the real
recordings only measure what was chosen. Results go to runs/bench/kept-students-<command>.json.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.ablation import _real
from benchmarks.accuracy import RUNS, shared_data
from benchmarks.common import OUT_DIR, log
from components.common.jsonio import dumps

# the worst validation condition's allowed false accepts in its 10 minutes -> an FA/h target between n and n+1
RULES = {0: 0.5, 1: 6.5, 2: 12.5}
BATCHNORM_BATCHES = 8  # training batches past the schedule whose windows re-measure an average's BatchNorms


class KeptRun:
    """One kept ablation run: its config, feature store, shipped manifest and distillation report."""

    def __init__(self, folder: Path):
        from components.common.artifacts import FeatureStoreLayout
        from components.common.config import load_config
        from components.distillation.stage import REPORT_FILE

        done_file = folder / "done.json"
        if not done_file.is_file():
            raise SystemExit(f"{folder}: not a kept run (no done.json); see `ls {RUNS}`")
        self.folder, done = folder.resolve(), json.loads(done_file.read_text())
        self.name, self.heldout = folder.name, done["heldout_families"]
        self.config = load_config(done["preset"], wake_word=done["wake_word"], overrides=[
            *done["overrides"], f"training.checkpoint_root={self.folder / 'ck'}",
            f"mining.session_root={self.folder / 'mining'}", f"publish.store={self.folder / 'published'}"])
        self.store = FeatureStoreLayout(Path(done["features"]))
        self.manifest = json.loads(Path(done["manifest"]).read_text())
        self.model_dir = Path(done["manifest"]).parents[2] / "distillation" / "model"
        self.students = json.loads((self.model_dir / REPORT_FILE).read_text())["students"]
        if len(self.students) < 2 or not all(s.get("candidate") for s in self.students):
            raise SystemExit(f"{folder}: kept no candidate students to compare")

    def as_shipped(self, tflite: Path, cutoff: float) -> Path:
        """A manifest beside `tflite`: the shipped model's settings with this model and cutoff."""
        doc = {**self.manifest, "model": tflite.name, "micro": {**self.manifest["micro"], "probability_cutoff": cutoff}}
        path = tflite.with_suffix(".json")
        path.write_text(json.dumps(doc))
        return path

    def measure(self, tflite: Path, cutoff: float) -> dict:
        """Real detections and false accepts, and the synthetic test figures, at `cutoff`."""
        from components.common.artifacts import Split
        from components.common.evaluation import breakdown, store_streams
        from components.runtime.tflm import TflmStreamer

        data = shared_data()
        real = _real(self.as_shipped(tflite, cutoff), [data / "real-wakeword-dev" / "hey_chatterbox"],
                     [data / "real-speech-dev"], None)
        positives, ambient = store_streams(self.store, Split.TEST, TflmStreamer(tflite))
        test = breakdown(positives, ambient, cutoff, quantized=True, heldout_families=self.heldout)
        worst = test.worst_fa()
        return {**real, "test_frr": test.frr_cell().frr, "worst_test_condition": worst.condition,
                "worst_test_fa_per_hour": worst.fa_per_hour}


def cutoff_rules(run: KeptRun) -> list[dict]:
    from components.common.artifacts import Split
    from components.common.evaluation import choose_cutoff, store_streams
    from components.runtime.tflm import TflmStreamer

    rows = []
    with tempfile.TemporaryDirectory(prefix="wakeline-rules-") as tmp:
        for student in run.students:
            tflite = Path(tmp) / f"student-{student['index']}.tflite"
            shutil.copyfile(run.model_dir / student["candidate"], tflite)
            positives, ambient = store_streams(run.store, Split.VALIDATION, TflmStreamer(tflite))
            for allowed, target in RULES.items():  # distillation's own rule, at each target
                p = choose_cutoff(positives, ambient, target, run.config.cutoff_safety_margin, quantized=True)
                rows.append({"run": run.name, "student": student["index"], "allowed_false_accepts": allowed,
                             "cutoff": p.cutoff, "validation_frr": p.frr, **run.measure(tflite, p.cutoff)})
                log(f"[bench] kept-students: {json.dumps(rows[-1])}")
    for allowed in RULES:  # what each rule ships: distillation's ranking, lowest validation FRR first
        mine = [r for r in rows if r["allowed_false_accepts"] == allowed]
        min(mine, key=lambda r: (r["validation_frr"], r["student"]))["ships"] = True
    return rows


def average(run: KeptRun, checkpoint: str, remeasure_batchnorm: bool) -> dict:
    """The students' weights averaged, converted and judged as distillation judges a candidate."""
    import keras

    from components.runtime import device_path
    from components.training.models import build

    spec = run.config.distillation.student
    weights = []
    for ck in sorted((run.folder / "ck").glob(f"{spec.name}-*")):
        model = build(spec)
        model.load_weights(ck / "best.weights.h5" if checkpoint == "best" else max(ck.glob("last-*.weights.h5")))
        weights.append(model.get_weights())
    if len(weights) != len(run.students):
        raise SystemExit(f"{run.folder}: {len(weights)} student checkpoints for {len(run.students)} students")
    model = build(spec)
    model.set_weights([np.mean(w, axis=0) for w in zip(*weights)])
    if remeasure_batchnorm:
        from components.training.batches import TrainingBatches

        total = run.config.training.total_steps
        batches = TrainingBatches(run.store, run.config.training, run.config.augmentation.spec_augment,
                                  spec.input_frames, run.config.seed)
        x = np.concatenate([batches.batch(total + k, total).x[:, -spec.input_frames:] for k in range(BATCHNORM_BATCHES)])
        for layer in (la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)):
            h = keras.Model(model.input, layer.input).predict(x, verbose=0)
            axes = tuple(range(h.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, h.mean(axes), h.var(axes)])
    with tempfile.TemporaryDirectory(prefix="wakeline-average-") as tmp:
        _, tflite = device_path.to_int8(model, spec, run.store, run.config.seed, Path(tmp) / "average.tflite")
        judged = device_path.validate(tflite, run.store, run.config).chosen
        row = {"run": run.name, "checkpoint": checkpoint, "remeasured_batchnorm": remeasure_batchnorm,
               "students": len(weights), "cutoff": judged.cutoff, "validation_frr": judged.frr,
               **run.measure(tflite, judged.cutoff)}
    log(f"[bench] kept-students: {json.dumps(row)}")
    return row


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.kept_students", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rules = sub.add_parser("cutoff-rules", help="cutoffs allowing 0, 1 or 2 validation false accepts")
    rules.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    avg = sub.add_parser("average", help="one model from the students' averaged weights")
    avg.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    avg.add_argument("--checkpoint", choices=["best", "last"], default="best")
    avg.add_argument("--remeasure-batchnorm", action="store_true")
    args = parser.parse_args(argv)
    runs = [KeptRun(r if r.is_dir() else RUNS / r) for r in args.runs]
    if args.command == "cutoff-rules":
        rows = [row for run in runs for row in cutoff_rules(run)]
    else:
        rows = [average(run, args.checkpoint, args.remeasure_batchnorm) for run in runs]
    out = OUT_DIR / f"kept-students-{args.command}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps({"benchmark": f"kept-students {args.command}", "rows": rows}, indent=2) + "\n")
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
