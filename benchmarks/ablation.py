"""Ablation: what each part of the training data buys, measured on real people.

Trains (through kfp.local, exactly as `make run`) the `default` preset for "hey chatterbox" with every part
("all"), with one part taken out at a time, or with one part grown, and measures each shipped model, at its own
shipped cutoff, on what no part of training ever saw:

  real_wakeword_frr      FRR on ../shared/data/real-wakeword-dev/hey_chatterbox (56 recordings of one person)
  real_speech_fa_per_hour  FA/h on ../shared/data/real-speech-dev (real speech, 8 kHz, no wake word)
  heldout_family_frr     synthetic test FRR of the worst held-out voice family
  worst_condition_fa_per_hour   synthetic test FA/h of the worst condition
  blessed                the pipeline's own gate

Variants (`python -m benchmarks.ablation [--seed N] [--wake-word W] [NAME ...]`, default: all of them; runs are kept
and reused under runs/bench/accuracy/ablation-<name>/ (ablation-<name>-seed<N>/ for another seed) when config and
source are unchanged). `--seed` reruns a variant with another `seed` (other splits, texts, voices and initial
weights): one run per row cannot tell a part's effect from run-to-run noise, a second seed can. `--wake-word`
trains another word (kept as ablation-<word>-<name>..., e.g. ablation-hey-jarvis-all-seed1); a word without real
recordings has no real FRR, and its judge reports the synthetic test FRR and false accepts instead.
  all                 the default preset
  no-embedding-teacher  distillation.embedding_teacher.weight=0 (the student learns from the two MixedNets only)
  no-perturbation     data_prep.perturbation.method=none (every clip as the engine spoke it)
  no-channels         augmentation.ops.channel_probability=0 (no telephone/codec/AGC/clipping/microphone)
  no-neural-voices    no Kokoro and no hibari clips (piper and espeak-ng make up the same totals)
  old-voices          the voices before this recipe: no Kokoro, no hibari, no perturbation
  old-negatives       speech negatives as before this recipe: piper + espeak only, 600 template sentences, no
                      other languages, no hum, no channel speech in the background streams
  more-speech         more general speech: 3,000 espeak-ng + 1,500 hibari + 200 Kokoro + 200 piper sentences
                      (was 1,400 + 600 + 100 + 100) from 4,000 generated sentences (was 1,500)
  neural-positives    positives from the voices a real-speech model accepts (the realism check): 400 piper +
                      500 Kokoro + 600 hibari + 150 espeak-ng (was 250 + 250 + 400 + 500)
  pooled-rule         training.checkpoint_rule=pooled (checkpoints judged as before 2026-12-05: mixed positives,
                      non-speech ambient, pooled), for the rule's effect at each seed
  ema                 training.weight_averaging=ema (validate, keep and ship the moving average of the weights)
  long-conditions     data_prep.conditions.duration_s=1800 (30 min of each speech condition per split, was 10): the
                      cutoff rests on 3 h of validation speech instead of 1 h, and test FA/h on 3 h
  more-mining         mining.threshold=0.2, mining.top_k_per_hour=360 (was 0.5 and 60): about 3x the hard negatives
  one-student         distillation.students=1 (was 3): the second word's budget, at the price in recall
  speech-mining       more-mining, and the scan also covers 10 min per speech condition built from training speech
                      (mining.condition_stream_duration_s=600): hard negatives where the test conditions false-fire
  speech-mining-long  speech-mining with 30 min per speech condition (mining.condition_stream_duration_s=1800)
  five-students       distillation.students=5 (was 3): the best of five on validation ships; students 0-2 are the
                      default's own (same seeds), so this adds two more chances
  sound-alikes        600 training-only sentences greeting or naming the real words and first names closest in
                      sound to the wake word ("Hey Letterbox, ...": piper 50, espeak-ng 300, Kokoro 100, hibari 150)
  validation-voices   15 % of the single-voice neural families' training clips (hibari heart, piper joe, Kokoro
                      packs) go to validation (data_prep.splits.single_voice_validation_fraction=0.15): the split
                      that picks checkpoint, student and cutoff hears the voices closest to people
  validation-speech   400 validation-only sentences no other clip says, by the voices training hears (piper 100,
                      Kokoro 100, hibari 200; data_prep.validation_speech): validation's speech is then about half
                      neural instead of nearly all espeak-ng; training and test audio are unchanged
  neural-speech       validation-speech, and three times the training speech from the voices closest to people:
                      piper 300, Kokoro 300, hibari 1,800 (was 100, 100, 600; espeak-ng stays 1,400). Scored
                      alone, validation sentences by these voices fired where espeak-ng's did not
                      (validation-speech, seed 0); judge it against validation-speech, whose 400 added validation
                      clips it shares
  rooms-by-rt60       data_prep.rirs.split=by_rt60: validation and test each take one room from every RT60 band (was
                      a seeded draw: at seed 0 validation's 6 rooms averaged 0.40 s, test's 0.70 s), so validation's
                      far-field false accepts, which set the cutoff, foresee test's
Each variant costs a full default run (12 to 35 min on 2 cores, depending on the machine).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.accuracy import RUNS, folder_report, shared_data, store_breakdown, train
from benchmarks.common import OUT_DIR, log, result
from components.common.jsonio import dumps

WORD = "hey chatterbox"


def _no_neural() -> list[str]:
    from components.common.config import load_config

    dp = load_config("default").data_prep
    out = []
    for name in ("positives", "adversarial", "speech"):
        c = getattr(dp, name)
        out += [f"data_prep.{name}.kokoro_clips=0", f"data_prep.{name}.hibari_clips=0",
                f"data_prep.{name}.piper_clips={c.piper_clips + c.kokoro_clips}",
                f"data_prep.{name}.espeak_clips={c.espeak_clips + c.hibari_clips}"]
    return out + ['data_prep.splits.heldout_families=["espeak:klatt"]']


VARIANTS = {
    "all": lambda: [],
    "no-embedding-teacher": lambda: ["distillation.embedding_teacher.weight=0"],
    "no-perturbation": lambda: ["data_prep.perturbation.method=none"],
    "no-channels": lambda: ["augmentation.ops.channel_probability=0"],
    "no-neural-voices": _no_neural,
    "old-voices": lambda: [*_no_neural(), "data_prep.perturbation.method=none"],
    "old-negatives": lambda: ["data_prep.speech.kokoro_clips=0", "data_prep.speech.hibari_clips=0",
                              "data_prep.speech.espeak_clips=2000", "data_prep.other_languages.espeak_clips=0",
                              "data_prep.generated_sentences=600", "data_prep.ambient.kinds=[babble, noise, music]"],
    "more-speech": lambda: ["data_prep.speech.espeak_clips=3000", "data_prep.speech.hibari_clips=1500",
                            "data_prep.speech.kokoro_clips=200", "data_prep.speech.piper_clips=200",
                            "data_prep.generated_sentences=4000"],
    "neural-positives": lambda: ["data_prep.positives.piper_clips=400", "data_prep.positives.espeak_clips=150",
                                 "data_prep.positives.kokoro_clips=500", "data_prep.positives.hibari_clips=600"],
    "pooled-rule": lambda: ["training.checkpoint_rule=pooled"],
    "ema": lambda: ["training.weight_averaging=ema"],
    "long-conditions": lambda: ["data_prep.conditions.duration_s=1800"],
    # the default keeps the probe's hits above 0.5, 52 in 50 min on seed 0 (cap 50): about 6x as many, less sure
    "more-mining": lambda: ["mining.threshold=0.2", "mining.top_k_per_hour=360"],
    # candidate 0 of the default's three, bit for bit: what one student (and, where candidate 0 beats candidate 1
    # on validation, two) would ship, for the second-word budget
    "one-student": lambda: ["distillation.students=1"],
    # the test's worst conditions are speech (other languages, telephone, fast/slow), which the training background
    # holds little of as long-form audio: mine validation's recipes built from training speech as well
    "speech-mining": lambda: ["mining.threshold=0.2", "mining.top_k_per_hour=360",
                              "mining.condition_stream_duration_s=600"],
    # 3 h of training speech streams instead of 1 h: about 3x the speech hard negatives at the same hit cap per hour
    "speech-mining-long": lambda: ["mining.threshold=0.2", "mining.top_k_per_hour=360",
                                   "mining.condition_stream_duration_s=1800"],
    # validation ranked the default's three students as real people did (seed 0): more of them, more chances
    "five-students": lambda: ["distillation.students=5"],
    # validation is about 90 % espeak-ng formant speech, because each single-voice neural family goes whole to
    # training: share some of their clips with validation, so the cutoff is set on voices closer to people
    "validation-voices": lambda: ["data_prep.splits.single_voice_validation_fraction=0.15"],
    # the same, without taking clips from training: extra validation-only speech by the neural voices training
    # hears, saying sentences no other clip says (validation-voices moved positives too, and training lost them)
    "validation-speech": lambda: [f"data_prep.validation_speech.{e}_clips={n}"
                                  for e, n in (("piper", 100), ("kokoro", 100), ("hibari", 200))],
    "neural-speech": lambda: VARIANTS["validation-speech"]() + [
        f"data_prep.speech.{e}_clips={n}" for e, n in (("piper", 300), ("kokoro", 300), ("hibari", 1800))],
    "rooms-by-rt60": lambda: ["data_prep.rirs.split=by_rt60"],
    # validation FRR rose when the curriculum's last epoch (-5..10 dB, the whole low-LR phase) began, in 8 of 9
    # students: read every SNR range throughout instead
    "interleaved-epochs": lambda: ["training.epoch_order=interleaved"],
    # or end the curriculum at the SNR validation and test are mixed at (5..20 dB) instead of -5..10 dB
    "gentle-snr": lambda: ["augmentation.snr.end_db_range=[5,20]"],
    # `default` before 2026-12-07: students from random weights, at the teachers' learning rates
    "random-student": lambda: ["distillation.student_init=random", "distillation.learning_rates=[]"],
    # the students start from okay_nabu's convolutions, as in `default`, but train at the teachers' learning rates
    # (measured on 2026-12-07 as `okay-nabu-init`; `default` then was random-student)
    "okay-nabu-init": lambda: ["distillation.learning_rates=[]"],
    # okay_nabu's first convolution and first two MixConv blocks stay as loaded; the last two blocks and the head learn
    "frozen-stages": lambda: ["distillation.frozen_stages=3"],
    # only the first convolution stays as loaded (frozen-stages collapsed at seed 2: two blocks could not fit)
    "frozen-first-conv": lambda: ["distillation.frozen_stages=1"],
    # the students start from okay_nabu at a tenth of the teachers' rates (`default`: a third), keeping more of what
    # okay_nabu learnt from real speech without freezing any layer (frozen-stages collapsed at one seed)
    "slow-students": lambda: ["distillation.learning_rates=[0.0001,0.00002]"],
    # `default` before 2026-12-07 (measured against it as `greetings`, which added `default`'s 750 training-only
    # greetings): no greetings that name someone else; the evaluation audio is the same either way
    "no-greetings": lambda: [f"data_prep.greetings.{e}_clips=0" for e in ("piper", "espeak", "kokoro", "hibari")],
    # 600 training-only sentences that greet or name the real words and names closest in sound to "chatterbox"
    # ("Hey Letterbox, ...", "Did you say butterbox?"): near-misses people say, not edits of the wake word
    "sound-alikes": lambda: [f"data_prep.sound_alikes.{e}_clips={n}"
                             for e, n in (("piper", 50), ("espeak", 300), ("kokoro", 100), ("hibari", 150))],
}


# Fixed cutoffs at which each row also counts real detections and real false accepts: how well the model separates
# real people from real speech, apart from the cutoff it ships with. Evaluation only: nothing is chosen by them.
FIXED_CUTOFFS = (0.3, 0.4, 0.5)


def run_spec(name: str, seed: int = 0, word: str = WORD) -> tuple[str, list[str]]:
    """The kept run's name and the config overrides of one variant at one seed (0: the preset's own). A word other
    than WORD prefixes the name with it (`ablation-hey-jarvis-all-seed1`), so its recipes group apart."""
    stem = f"ablation-{name}" if word == WORD else f"ablation-{word.replace(' ', '-')}-{name}"
    if seed == 0:
        return stem, VARIANTS[name]()
    return f"{stem}-seed{seed}", [*VARIANTS[name](), f"seed={seed}"]


def real_wakeword_dir(word: str) -> Path | None:
    """The real recordings of `word` (../shared/data/real-wakeword-dev/hey_chatterbox), None where there are none."""
    folder = shared_data() / "real-wakeword-dev" / word.replace(" ", "_")
    return folder if folder.is_dir() else None


def candidates(done: dict, positives: list[Path], ambient: list[Path]) -> list[dict]:
    """Every candidate student distillation judged, on the real audio at its own validation cutoff and at the fixed
    ones: does validation pick the candidate that is best on real people? Evaluation only: nothing is chosen by
    it. Empty for a run that kept no candidates (one student, or made before they were kept)."""
    from components.common.artifacts import ModelLayout
    from components.distillation.stage import REPORT_FILE

    shipped = Path(done["manifest"])
    model_dir = ModelLayout(shipped.parents[2] / "distillation" / "model")
    report = model_dir.root / REPORT_FILE
    rows = json.loads(report.read_text())["students"] if report.is_file() else []
    shipped_doc = json.loads(shipped.read_text())  # same architecture, so the same arena and detector settings
    out = []
    with tempfile.TemporaryDirectory(prefix="wakeline-candidates-") as tmp:
        for r in rows:
            if not r.get("candidate") or not (model_dir.root / r["candidate"]).is_file():
                continue
            k, cutoff = r["index"], r["device_validation"]["cutoff"]
            tflite = Path(tmp) / f"student-{k}.tflite"
            shutil.copyfile(model_dir.root / r["candidate"], tflite)
            doc = {**shipped_doc, "model": tflite.name, "micro": {**shipped_doc["micro"], "probability_cutoff": cutoff}}
            manifest = tflite.with_suffix(".json")
            manifest.write_text(json.dumps(doc))
            row = {"index": k, "chosen": r["chosen"], "validation_frr": r["device_validation"]["frr"],
                   "cutoff": cutoff, **_real(manifest, positives, ambient, None), "real_at_fixed_cutoffs": {
                       f"{c:.2f}": _real(manifest, positives, ambient, c) for c in FIXED_CUTOFFS}}
            out.append(row)
    return out


def _real(model: Path, positives: list[Path], ambient: list[Path], cutoff: float | None) -> dict:
    """Real detections (None without real recordings of the word) and real-speech false accepts."""
    p = folder_report(model, positives=positives, cutoff=cutoff).breakdown.frr_cell() if positives else None
    a = folder_report(model, ambient=ambient, cutoff=cutoff).breakdown.fa_cell()
    return {"real_wakeword_detected": None if p is None else p.clips - p.misses,
            "real_speech_false_accepts": a.false_accepts}


def measure(name: str, seed: int = 0, word: str = WORD) -> dict:
    """Train (or reuse) one variant and measure its shipped model, and judge all its candidate students. A word
    without real recordings is measured on real speech and the synthetic test only."""
    from benchmarks.kept_students import judge_folder  # it imports this module
    run_name, overrides = run_spec(name, seed, word)
    done = train(run_name, "default", overrides, wake_word=word)
    data = shared_data()
    model = Path(done["manifest"])
    recordings = real_wakeword_dir(word)
    positives, ambient = ([] if recordings is None else [recordings]), [data / "real-speech-dev"]
    real = folder_report(model, positives=positives).breakdown.frr_cell() if positives else None
    speech = folder_report(model, ambient=ambient).breakdown.fa_cell()
    at_cutoffs = {f"{c:.2f}": _real(model, positives, ambient, c) for c in FIXED_CUTOFFS}
    synth = store_breakdown(model, Path(done["features"]), done["heldout_families"])
    ho, wf = synth.worst_heldout(), synth.worst_fa()
    return {"variant": run_name.removeprefix("ablation-"), "seed": seed, "wake_word": word, "overrides": overrides,
            "real_wakeword_frr": None if real is None else real.frr,
            "real_wakeword_detected": None if real is None else real.clips - real.misses,
            "real_wakeword_clips": 0 if real is None else real.clips,
            "real_speech_fa_per_hour": speech.fa_per_hour, "real_speech_false_accepts": speech.false_accepts,
            "real_speech_hours": speech.hours, "synthetic_test_frr": synth.frr_cell().frr,
            "heldout_family": None if ho is None else ho.family, "heldout_family_frr": None if ho is None else ho.frr,
            "worst_condition": wf.condition, "worst_condition_fa_per_hour": wf.fa_per_hour,
            "cutoff": synth.cutoff, "blessed": done["blessed"], "wall_s": done["wall_s"],
            "real_at_fixed_cutoffs": at_cutoffs, "candidates": candidates(done, positives, ambient),
            "judge": judge_folder(RUNS / run_name)}


def table(rows: list[dict]) -> str:
    fixed = " / ".join(f"{c:.1f}" for c in FIXED_CUTOFFS)
    head = ("| variant | real FRR (detected/56) | real-speech FA/h (FAs) | held-out FRR | worst-condition FA/h | "
            f"cutoff | blessed | real detected (FAs) at {fixed} | candidates: real detected at own cutoff "
            "(validation FRR), * shipped | judge: real detected at 1-8 validation false accepts, all students / "
            "the shipped one |"
            "\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        at = r.get("real_at_fixed_cutoffs") or {}
        fixed_cells = " / ".join(f"{_count(v['real_wakeword_detected'])} ({v['real_speech_false_accepts']})"
                                 for v in at.values())
        ho = "–" if r["heldout_family_frr"] is None else f"{r['heldout_family_frr']:.1%} ({r['heldout_family']})"
        real = ("– (no real recordings)" if r["real_wakeword_frr"] is None else
                f"{r['real_wakeword_frr']:.1%} ({r['real_wakeword_detected']}/{r['real_wakeword_clips']})")
        lines.append(f"| {r['variant']} | {real} | {r['real_speech_fa_per_hour']:.1f} ({r['real_speech_false_accepts']}) "
                     f"| {ho} | {r['worst_condition_fa_per_hour']:.1f} ({r['worst_condition']}) | {r['cutoff']:.2f} | "
                     f"{'yes' if r['blessed'] else 'no'} | {fixed_cells or '–'} | {_candidate_cells(r) or '–'} | "
                     f"{_judge_cell(r.get('judge'))} |")
    return "\n".join(lines)


def _count(n: int | None) -> str:
    return "–" if n is None else str(n)


def _judge_cell(judged: dict | None) -> str:
    if not judged:
        return "–"
    if judged["real_wakeword_detected_mean"] is None:  # no real recordings: the synthetic test at the same cutoffs
        return f"test FRR {judged['test_frr_mean']:.1%}, test FAs {judged['test_false_accepts']}"
    return f"{judged['real_wakeword_detected_mean']:.1f} / {judged['shipped_student_real_detected_mean']:.1f}"


def _candidate_cells(row: dict) -> str:
    return " / ".join(f"{_count(c['real_wakeword_detected'])}{'*' if c['chosen'] else ''} ({c['validation_frr']:.0%})"
                      for c in row.get("candidates") or [])


def run(names: list[str] | None = None, seed: int = 0, word: str = WORD) -> list[dict]:
    rows = []
    out = OUT_DIR / "ablation-progress.json"
    for name in names or list(VARIANTS):
        rows.append(measure(name, seed, word))
        log(f"[bench] ablation: {rows[-1]['variant']}: {json.dumps(rows[-1])}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps({"benchmark": "ablation", "rows": rows}, indent=2) + "\n")
    print(table(rows))
    # a word without real recordings is headed by its synthetic test FRR, and says so in the metric's name
    return [result(f"ablation_{r['variant']}_real_wakeword_frr", r["real_wakeword_frr"], "fraction", **r)
            if r["real_wakeword_frr"] is not None else
            result(f"ablation_{r['variant']}_synthetic_test_frr", r["synthetic_test_frr"], "fraction", **r)
            for r in rows]


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help=f"default: all of {list(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0, help="the config's seed (default 0, the preset's)")
    parser.add_argument("--wake-word", default=WORD, help=f"the word to train (default {WORD!r}, the word of the real "
                        "recordings; another word is measured on real speech and its synthetic test only)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.variants if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not args.wake_word.strip():
        parser.error("--wake-word must not be empty")
    run(args.variants or None, args.seed, " ".join(args.wake_word.lower().split()))


if __name__ == "__main__":
    main(sys.argv[1:])
