"""Other ways to choose the shipped model, tried on kept ablation runs without training again (evaluation only).

  cutoff-rules RUN...    each kept candidate student's cutoff when the worst validation condition may have 0, 1
                         or 2 false accepts (today: 0), the student that rule ships (lowest validation FRR), and
                         each one's real detections, real false accepts and synthetic test figures
  average RUN...         one model from the students' averaged weights (`--checkpoint best|last`, optionally
                         re-measuring its BatchNorm statistics), judged like a candidate, then measured
  judge RUN...           a judge of a recipe with less noise than the shipped figure: every candidate student's
                         real detections at the cutoffs where all its validation audio together has 1, 2, 4 and 8
                         false accepts, averaged over students and cutoffs (and over the shipped student's alone),
                         with the synthetic test false accepts and FRR at the same cutoffs, and the test FRR at the
                         test's own cutoff for as many false accepts (separation, apart from calibration; the only
                         figures for a word without real recordings); then per recipe (the run name
                         less -seedN) over seeds, and against `--baseline` seed by seed (README, "A judge for
                         recipes"). A link to a kept run may rename it, e.g. to group runs into one recipe
  sources RUN...         where the shipped student fires on evaluation speech: every validation and test speech
                         clip (what the speech conditions are built from) scored alone, clean and through a
                         telephone line, at the shipped cutoff, per split, voice family (held-out ones apart) and
                         whether training ever heard the sentence: do test false accepts come from what validation
                         cannot hear? Then each validation and test condition's stream false accepts at the same
                         cutoffs, and the RT60 of each split's rooms

Each run is a folder under runs/bench/accuracy/ kept by `python -m benchmarks.ablation` with three or more
students. Rules and models are judged on validation through the device path, as distillation does; the real
recordings only measure what was chosen. Results go to runs/bench/kept-students-<command>.json.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.ablation import WORD, _real, real_wakeword_dir
from benchmarks.accuracy import RUNS, shared_data
from benchmarks.common import OUT_DIR, log
from components.common.jsonio import dumps

# the judge's operating points: false accepts in all validation audio together (1.33 h in `default`), the cutoff
# set by validation alone, so a recipe that moves every score is not rewarded or punished for the move
JUDGE_FALSE_ACCEPTS = (1, 2, 4, 8)
JUDGE_VERSION = 3  # bumped when a judge row gains or changes a field, so cached rows are measured again
JUDGE_FILE = "judge.json"  # per kept run: the judge's rows, reused while the run's candidates are unchanged
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
        self.manifest_path = Path(done["manifest"])
        self.model_dir = self.manifest_path.parents[2] / "distillation" / "model"
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

        recordings = real_wakeword_dir(self.config.wake_word)  # none for most words: then no real detections
        real = _real(self.as_shipped(tflite, cutoff), [] if recordings is None else [recordings],
                     [shared_data() / "real-speech-dev"], None)
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


class RealAudio:
    """The real recordings, decoded once into frontend features, scored per model (evaluation only)."""

    def __init__(self, word: str = WORD) -> None:
        from components.runtime.folders import POSITIVE_PAD_S, load_folder

        recordings = real_wakeword_dir(word)
        self.word = word
        self.positives = None if recordings is None else load_folder(recordings, "real", pad_s=POSITIVE_PAD_S)
        self.speech = load_folder(shared_data() / "real-speech-dev", "real-speech")

    @property
    def clips(self) -> int:
        return 0 if self.positives is None else len(self.positives.files)

    def points(self, model) -> list:
        """Real detections (as FRR) and real-speech false accepts at every cutoff, on the device's detector."""
        from components.common.metrics import StreamScores, evaluate
        from components.runtime.tflm import TflmStreamer

        tflm = TflmStreamer(model.tflite, model.arena)
        positives = [] if self.positives is None else [tflm(f) for f in self.positives.features]
        scores = StreamScores(positives, [tflm(f) for f in self.speech.features], quantized=True)
        return evaluate(scores, model.settings)


def lowest_cutoff(points: list, allowed: int):
    """The operating point at the lowest cutoff with at most `allowed` false accepts (the highest if none has)."""
    return next((p for p in sorted(points, key=lambda p: p.cutoff) if p.false_accepts <= allowed),
                max(points, key=lambda p: p.cutoff))


def _pooled_points(run: KeptRun, split, model) -> list:
    """FRR and the false accepts of all the split's ambient audio together, at every cutoff, on the device path."""
    from components.common.evaluation import store_streams
    from components.common.metrics import StreamScores, evaluate
    from components.runtime.tflm import TflmStreamer

    positives, ambient = store_streams(run.store, split, TflmStreamer(model.tflite, model.arena))
    return evaluate(StreamScores([p.probs for p in positives], [a.probs for a in ambient], quantized=True),
                    model.settings)


def judge(run: KeptRun, real: RealAudio) -> list[dict]:
    """Each candidate student at the cutoffs where all its validation audio has 1, 2, 4 and 8 false accepts, and
    there its real detections, real-speech false accepts and synthetic test false accepts and FRR. Kept in the
    run's folder and reused while its candidate models are the same files."""
    from components.common.artifacts import Split
    from components.runtime.folders import load_model

    if real.word != run.config.wake_word:
        raise ValueError(f"{run.name} was trained for {run.config.wake_word!r}, the real audio is {real.word!r}'s")
    key = [[s["candidate"], hashlib.sha256((run.model_dir / s["candidate"]).read_bytes()).hexdigest()]
           for s in run.students] + [list(JUDGE_FALSE_ACCEPTS), JUDGE_VERSION]
    cache = run.folder / JUDGE_FILE
    kept = json.loads(cache.read_text()) if cache.is_file() else {}
    if kept.get("key") == key:  # named as asked (a link may rename the run)
        return [{**r, "run": run.name} for r in kept["rows"]]
    rows = []
    clips = real.clips
    with tempfile.TemporaryDirectory(prefix="wakeline-judge-") as tmp:
        for student in run.students:
            tflite = Path(tmp) / f"student-{student['index']}.tflite"
            shutil.copyfile(run.model_dir / student["candidate"], tflite)
            model = load_model(run.as_shipped(tflite, run.manifest["micro"]["probability_cutoff"]))
            validation = _pooled_points(run, Split.VALIDATION, model)
            test_points = _pooled_points(run, Split.TEST, model)
            test = {p.cutoff: p for p in test_points}
            on_real = {p.cutoff: p for p in real.points(model)}
            for allowed in JUDGE_FALSE_ACCEPTS:
                v = lowest_cutoff(validation, allowed)
                r, t = on_real[v.cutoff], test[v.cutoff]
                rows.append({"run": run.name, "student": student["index"], "chosen": bool(student["chosen"]),
                             "validation_false_accepts": allowed, "cutoff": v.cutoff, "validation_frr": v.frr,
                             "test_false_accepts": t.false_accepts, "test_frr": t.frr,
                             # the test's own cutoff for as many false accepts: how well the student separates
                             # held-out audio, whatever validation's calibration (evaluation only)
                             "test_frr_at_as_many_test_false_accepts": lowest_cutoff(test_points, allowed).frr,
                             "real_wakeword_detected": clips - round(r.frr * clips) if clips else None,
                             "real_wakeword_clips": clips,
                             "real_speech_false_accepts": r.false_accepts})
                log(f"[bench] judge: {json.dumps(rows[-1])}")
    cache.write_text(dumps({"key": key, "rows": rows}, indent=2) + "\n")
    return rows


def judge_folder(folder: Path, real: RealAudio | None = None) -> dict | None:
    """The judge of one kept run, for the ablation's own row: its rows and their mean real detections; None for a
    run that kept fewer than two candidate students (there is nothing to average over)."""
    try:
        run = KeptRun(folder)
    except SystemExit:
        return None
    rows = judge(run, real or RealAudio(run.config.wake_word))
    return {"real_wakeword_detected_mean": _mean([r["real_wakeword_detected"] for r in rows]),
            "shipped_student_real_detected_mean": _mean([r["real_wakeword_detected"] for r in rows if r["chosen"]]),
            "test_false_accepts": int(sum(r["test_false_accepts"] for r in rows)),
            "test_frr_mean": _mean([r["test_frr"] for r in rows]),
            "real_speech_false_accepts": int(sum(r["real_speech_false_accepts"] for r in rows)), "rows": rows}


SOURCE_CHANNELS = ("clean", "telephone")


def _clip_features(samples: np.ndarray, channel: str) -> np.ndarray:
    """Frontend features of one int16 clip as the device hears it alone, 1 s of silence either side."""
    from components.common.artifacts import SAMPLE_RATE_HZ
    from components.common.audio import to_int16
    from components.common.frontend import features_uint16
    from components.runtime.folders import POSITIVE_PAD_S
    from components.synthesis.channels import telephone

    x = samples.astype(np.float32) / 32768.0
    if channel == "telephone":
        x = telephone(x)
    pad = np.zeros(int(POSITIVE_PAD_S * SAMPLE_RATE_HZ), np.float32)
    x = np.concatenate([pad, x, pad])
    return features_uint16(to_int16(x))


def dataset_manifest(run: KeptRun) -> Path:
    """The run's data_prep manifest (the dataset the kept run was trained and evaluated on)."""
    found = sorted((run.folder / "runs").rglob("data-prep/dataset/manifest.jsonl"))
    if len(found) != 1:
        raise SystemExit(f"{run.folder}: expected one data_prep manifest.jsonl, found {len(found)}")
    return found[0]


def sources(run: KeptRun) -> tuple[list[dict], list[dict], dict]:
    """Where the shipped student's false accepts come from, at the shipped cutoff and at the judge's cutoffs (all
    validation audio at 1, 2, 4 and 8 false accepts):
    - clip rows: every validation and test general-speech clip (the speech conditions' material; not the
      non-English family) scored alone, clean and through a telephone line, one row per (cutoff, split, family,
      heard, channel), `heard` saying whether a training clip says the same sentence;
    - stream rows: the false accepts of each validation and test condition's streams, as the evaluation counts them;
    - rooms: the RT60 of each evaluation split's rooms (the far-field condition's reverberation)."""
    import soundfile as sf

    from components.common.artifacts import Label, Split, iter_manifest
    from components.common.evaluation import breakdown, store_streams
    from components.common.metrics import activations
    from components.data_prep.synth import NON_ENGLISH_FAMILY
    from components.runtime.folders import load_model
    from components.runtime.tflm import TflmStreamer

    manifest = dataset_manifest(run)
    records = list(iter_manifest(manifest))
    speech = [r for r in records if r.label is Label.NEGATIVE and r.family != NON_ENGLISH_FAMILY]
    trained = {r.text for r in speech if r.split is Split.TRAIN}
    evaluated = [r for r in speech if r.split in (Split.VALIDATION, Split.TEST)]
    model = load_model(run.manifest_path)
    validation = _pooled_points(run, Split.VALIDATION, model)
    cutoffs = {"shipped": model.cutoff} | {f"{n} validation FA": lowest_cutoff(validation, n).cutoff
                                           for n in JUDGE_FALSE_ACCEPTS}
    tflm = TflmStreamer(model.tflite, model.arena)
    cells: dict[tuple, list] = {}
    for i, r in enumerate(evaluated):
        samples, _ = sf.read(manifest.parent / r.path, dtype="int16")
        for channel in SOURCE_CHANNELS:
            probs = tflm(_clip_features(samples, channel))
            for name, cutoff in cutoffs.items():
                fired = len(activations(probs, cutoff, model.settings, quantized=True)) > 0
                cell = cells.setdefault((name, r.split.value, r.family, r.text in trained, channel), [0, 0, []])
                cell[0] += 1
                cell[1] += int(fired)
                if fired:
                    cell[2].append(r.text)
        if (i + 1) % 200 == 0:
            log(f"[bench] sources: {run.name}: {i + 1}/{len(evaluated)} clips")
    clip_rows = [{"run": run.name, "at": name, "cutoff": cutoffs[name], "split": split, "family": family,
                  "heldout_family": family in run.heldout, "text_heard_in_training": heard, "channel": channel,
                  "clips": n, "fired": fired, "fired_texts": sorted(texts)[:20]}
                 for (name, split, family, heard, channel), (n, fired, texts) in cells.items()]
    stream_rows = []
    for split in (Split.VALIDATION, Split.TEST):
        positives, ambient = store_streams(run.store, split, tflm)
        for name, cutoff in cutoffs.items():
            for c in breakdown(positives, ambient, cutoff, quantized=True).fa:
                stream_rows.append({"run": run.name, "at": name, "cutoff": cutoff, "split": split.value,
                                    "condition": c.condition, "hours": round(c.hours, 4),
                                    "false_accepts": c.false_accepts})
    rooms = {split.value: sorted(json.loads(r.origin.split(":", 1)[1])["rt60_s"] for r in records
                                 if r.label is Label.RIR and r.split is split)
             for split in (Split.VALIDATION, Split.TEST)}
    return clip_rows, stream_rows, {"run": run.name, "rt60_s": rooms}


def _engine(family: str | None) -> str:
    return (family or "").partition(":")[0]  # user clips may have no family


def _neural(family: str | None) -> bool:
    from components.data_prep.synth import NEURAL_ENGINES

    return _engine(family) in NEURAL_ENGINES


SOURCE_GROUPS = (("all", lambda r: True), ("held-out families", lambda r: r["heldout_family"]),
                 ("other families", lambda r: not r["heldout_family"]),
                 ("other fam., espeak-ng", lambda r: not r["heldout_family"] and _engine(r["family"]) == "espeak"),
                 ("other fam., neural voices",
                  lambda r: not r["heldout_family"] and _neural(r["family"])),
                 ("other fam., heard sentences", lambda r: not r["heldout_family"] and r["text_heard_in_training"]),
                 ("other fam., unheard sentences",
                  lambda r: not r["heldout_family"] and not r["text_heard_in_training"]))


def format_streams(rows: list[dict], rooms: list[dict]) -> str:
    """False accepts per condition (those with any), validation beside test, one line per cutoff; then the rooms."""
    lines = []
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name and r["condition"] != "all"]
        lines += [f"{name}: false accepts in the condition streams", ""]
        for at in dict.fromkeys(r["at"] for r in mine):
            cells = []
            for split in ("validation", "test"):
                here = [r for r in mine if r["at"] == at and r["split"] == split]
                fired = ", ".join(f"{r['condition']} {r['false_accepts']}" for r in here if r["false_accepts"])
                cells.append(f"{split} {sum(r['false_accepts'] for r in here)}" + (f" ({fired})" if fired else ""))
            cutoff = next(r["cutoff"] for r in mine if r["at"] == at)
            lines.append(f"  {at} (cutoff {cutoff:.2f}): " + "; ".join(cells))
        for room in (r for r in rooms if r["run"] == name):
            lines.append("  rooms (RT60, s): " + "; ".join(
                f"{split} {np.mean(v):.2f} mean ({', '.join(f'{x:.2f}' for x in v)})"
                for split, v in room["rt60_s"].items() if v))
        lines.append("")
    return "\n".join(lines)


def format_sources(rows: list[dict]) -> str:
    """Fired clips of (split, channel, group) down, one column per cutoff: all clips, held-out families and the
    other families' heard and unheard sentences."""
    lines = []
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        ats = list(dict.fromkeys(r["at"] for r in mine))
        cut = {r["at"]: r["cutoff"] for r in mine}
        lines += [f"{name}: speech clips that fire, scored alone", "",
                  f"{'split':<12}{'channel':<11}{'which clips':<31}" + "".join(f"{a:>18}" for a in ats),
                  f"{'':<54}" + "".join(f"{f'(cutoff {cut[a]:.2f})':>18}" for a in ats)]
        for split in ("validation", "test"):
            for channel in SOURCE_CHANNELS:
                for label, keep in SOURCE_GROUPS:
                    counts = []
                    for a in ats:
                        kept = [r for r in mine if r["at"] == a and r["split"] == split and r["channel"] == channel
                                and keep(r)]
                        counts.append((sum(r["fired"] for r in kept), sum(r["clips"] for r in kept)))
                    if counts and counts[0][1]:
                        lines.append(f"{split:<12}{channel:<11}{label:<31}"
                                     + "".join(f"{f'{f}/{n} {f / n:5.1%}' if n else '–':>18}" for f, n in counts))
        lines.append("")
    return "\n".join(lines)


def _mean(values: list) -> float | None:
    """The mean of the measured values; None where nothing was measured (a word without real recordings)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def recipe_of(run_name: str) -> tuple[str, int]:
    """(recipe, seed) of a kept run's name: `ablation-greetings-seed2` -> (`greetings`, 2); seed 0 has no suffix."""
    name = run_name.removeprefix("ablation-")
    stem, _, seed = name.rpartition("-seed")
    return (stem, int(seed)) if stem and seed.isdigit() else (name, 0)


# (rows, field) per metric: every student is the recipe's typical student; the shipped one is what a user gets
JUDGE_METRICS = {"real_detected": (False, "real_wakeword_detected"),
                 "shipped_student_real_detected": (True, "real_wakeword_detected"),
                 "test_false_accepts": (False, "test_false_accepts"),
                 "test_frr": (False, "test_frr"),
                 "test_frr_at_as_many_test_false_accepts": (False, "test_frr_at_as_many_test_false_accepts")}


def _paired(by_seed: dict[int, float], base: dict[int, float]) -> dict:
    shared = sorted(set(by_seed) & set(base))
    d = np.array([by_seed[s] - base[s] for s in shared])
    return {"seeds": shared, "differences": [float(x) for x in d],
            "mean_difference": float(d.mean()) if len(d) else None,
            "standard_error": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}


def judge_summary(rows: list[dict], baseline: str | None) -> dict:
    """Per run the mean over its students and judge cutoffs of the real detections (also of the shipped student's
    alone) and of the synthetic test false accepts; per recipe their mean and standard deviation over seeds and,
    against `baseline`, the mean seed-by-seed difference and its standard error; and the real-speech false
    accepts of all its rows."""
    per_run: dict[str, list[dict]] = {}
    for r in rows:
        per_run.setdefault(r["run"], []).append(r)
    recipes: dict[str, dict[int, dict[str, float]]] = {}
    real_fas: dict[str, int] = {}
    for run, rs in per_run.items():
        recipe, seed = recipe_of(run)
        recipes.setdefault(recipe, {})[seed] = {
            m: _mean([r[f] for r in rs if r["chosen"] or not shipped_only])
            for m, (shipped_only, f) in JUDGE_METRICS.items()}
        real_fas[recipe] = real_fas.get(recipe, 0) + sum(int(r["real_speech_false_accepts"]) for r in rs)
    out = {}
    for recipe, by_seed in sorted(recipes.items()):
        entry: dict = {"seeds": sorted(by_seed), "real_speech_false_accepts": real_fas[recipe]}
        for m in JUDGE_METRICS:
            values = {s: v[m] for s, v in sorted(by_seed.items()) if v[m] is not None}
            if not values:  # a word without real recordings has no real detections
                entry[m] = None
                continue
            x = np.array(list(values.values()))
            entry[m] = {"per_seed": values, "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else None}
            if baseline and baseline in recipes and recipe != baseline:
                entry[m]["against_baseline"] = {"baseline": baseline, **_paired(
                    values, {s: v[m] for s, v in recipes[baseline].items() if v[m] is not None})}
        out[recipe] = entry
    return out


def _judge_cells(e: dict | None, scale: float = 1.0, unit: str = "") -> str:
    """Per seed | mean (SD) | against the baseline; `scale` 100 and unit "%" for a fraction."""
    if e is None:
        return "– | – | –"
    f = lambda x, sign="": f"{x * scale:{sign}.1f}{unit}"  # noqa: E731
    sd = "–" if e["sd"] is None else f(e["sd"])
    b = e.get("against_baseline")
    vs = "–" if not b or b["mean_difference"] is None else (
        f(b["mean_difference"], "+") + ("" if b["standard_error"] is None else f" ({f(b['standard_error'])})")
        + f" at seeds {','.join(map(str, b['seeds']))}")
    return f"{' / '.join(f(v) for v in e['per_seed'].values())} | {f(e['mean'])} ({sd}) | {vs}"


def format_judge(summary: dict) -> str:
    lines = ["| recipe | seeds | real detected of 56 (mean over students and cutoffs), per seed | mean (SD) | "
             "against the baseline, seed by seed: mean difference (SE) | the shipped student's alone, per seed | "
             "mean (SD) | against the baseline | synthetic test false accepts (mean), per seed | mean (SD) | "
             "against the baseline | synthetic test FRR (mean), per seed | mean (SD) | against the baseline | "
             "test FRR at the test's own cutoff for as many false accepts, per seed | mean (SD) | against the "
             "baseline | real-speech false accepts, all rows |", "|---" * 18 + "|"]
    for recipe, e in summary.items():
        lines.append(f"| {recipe} | {','.join(map(str, e['seeds']))} | {_judge_cells(e['real_detected'])} | "
                     f"{_judge_cells(e['shipped_student_real_detected'])} | "
                     f"{_judge_cells(e['test_false_accepts'])} | {_judge_cells(e['test_frr'], 100, '%')} | "
                     f"{_judge_cells(e['test_frr_at_as_many_test_false_accepts'], 100, '%')} | "
                     f"{e['real_speech_false_accepts']} |")
    return "\n".join(lines)


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
    jud = sub.add_parser("judge", help="real detections at 1, 2, 4 and 8 validation false accepts, per recipe")
    jud.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    jud.add_argument("--baseline", metavar="RECIPE", help="compare every recipe with this one, seed by seed")
    src = sub.add_parser("sources", help="where the shipped student fires on validation and test speech")
    src.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    args = parser.parse_args(argv)
    recipes = sorted({recipe_of(r.name)[0] for r in args.runs})
    if getattr(args, "baseline", None) and args.baseline not in recipes:
        parser.error(f"--baseline {args.baseline!r} is none of the runs' recipes {recipes}")
    runs = [KeptRun(r if r.is_dir() else RUNS / r) for r in args.runs]
    summary = None
    if args.command == "cutoff-rules":
        rows = [row for run in runs for row in cutoff_rules(run)]
    elif args.command == "judge":
        real = {w: RealAudio(w) for w in sorted({run.config.wake_word for run in runs})}
        rows = [row for run in runs for row in judge(run, real[run.config.wake_word])]
        summary = judge_summary(rows, args.baseline)
        print(format_judge(summary))
    elif args.command == "sources":
        found = [sources(run) for run in runs]
        rows = [row for clips, _, _ in found for row in clips]
        summary = {"streams": [row for _, streams, _ in found for row in streams], "rooms": [r for _, _, r in found]}
        print(format_sources(rows))
        print(format_streams(summary["streams"], summary["rooms"]))
    else:
        rows = [average(run, args.checkpoint, args.remeasure_batchnorm) for run in runs]
    out = OUT_DIR / f"kept-students-{args.command}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": f"kept-students {args.command}", "rows": rows}
    extra = {} if summary is None else summary if args.command == "sources" else {"recipes": summary}
    out.write_text(dumps({**doc, **extra}, indent=2) + "\n")
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
