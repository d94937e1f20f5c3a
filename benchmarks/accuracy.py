"""Accuracy benchmark: wakeline's model beside the official ESPHome model, on the same audio, where it counts.

Trains (through kfp.local, exactly as `make run`) the `default` preset for "hey jarvis" (an official word) and
for "hey chatterbox" (the word of the real recordings), and the `smoke` preset with seeds 0, 1, 2 (and 0 again,
for repeatability). Then, in each record `value` is wakeline's figure and `baseline_value` the official model's
on the same audio (`baseline` names it):

  heldout_family_frr            FRR on the test positives of the held-out voice family that fares worst
                                (never in training or validation), at each model's own cutoff
  worst_condition_fa_per_hour   FA/h of the worst test condition (clean, telephone, far-field, fast/slow, over
                                music, non-English speech; noise, music, babble), with its 95 % upper bound
  real_speech_dev_fa_per_hour   FA/h on ../shared/data/real-speech-dev (real people, 8 kHz, never trained on)
  real_wakeword_dev_frr         the "hey chatterbox" model's FRR on 56 real recordings of the phrase (one
                                person), beside its synthetic test FRR; no official model exists for it
  frr_family_<f>, fa_per_hour_<condition>   every cell, both models
  cross_word_detection_rate     each official model over the other word's test positives (should be ~0: a
                                check of the evaluation itself)
  default_seeds_<figure>        the "hey chatterbox" `default` run at seeds 0, 1 and 2 (min / median / max, and each
                                seed's value): real detections of the 56, real-speech FA/h, synthetic test FRR,
                                worst test condition FA/h, blessed. One seed is one draw: the same recipe detected
                                33 to 48 of the 56 over seeds 0-2 (27 to 48 over five seeds on another machine), and
                                seed 0 (the figures above) was the best draw on both
  smoke_seed_spread             test FRR and worst-condition FA/h over 3 seeds of `smoke` (min / median / max)
  same_seed_bit_identical       1 when two `smoke` runs with seed 0 give byte-identical .tflite files

Runs are kept under runs/bench/accuracy/<name>/ and reused when the config and the source (components/,
pipeline/, configs/presets/) are unchanged, so a rerun after editing a benchmark or the README costs minutes.
WAKELINE_SHARED_DATA points at the real recordings (default: ../shared/data beside the repository).
31 min measured on 2 cores from nothing (2026-12-07, alone; 89 min with the test suite beside it), before the two
more "hey chatterbox" seeds (about 25 min each; shared with `python -m benchmarks.ablation --seed N all`, so a kept
ablation run is reused); the evaluation alone, about 3 min.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path

from benchmarks.common import log, result
from components.common.artifacts import BlessingLayout, Kind, find, read_blessing
from components.common.jsonio import dumps

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path("runs") / "bench" / "accuracy"
OFFICIAL = ROOT / "tests" / "fixtures" / "esphome-models" / "v2"
SMOKE_SEEDS = (0, 1, 2)
DEFAULT_SEEDS = (0, 1, 2)  # "hey chatterbox" `default` at these seeds: its real figures as a median and a range


def shared_data() -> Path:
    return Path(os.environ.get("WAKELINE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def source_hash() -> str:
    """What a trained model depends on besides its config: the code and the presets."""
    h = hashlib.sha256()
    for base, pattern in (("components", "*.py"), ("pipeline", "*.py"), ("configs/presets", "*.yaml")):
        for p in sorted((ROOT / base).rglob(pattern)):
            h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def train(name: str, preset: str, overrides: list[str], wake_word: str | None = None) -> dict:
    """A kfp.local run of `preset`, or the kept one when config and source are unchanged."""
    from components.common.config import load_config
    from pipeline.local import run_local

    home = (RUNS / name).resolve()
    config = load_config(preset, overrides=[*overrides, f"training.checkpoint_root={home / 'ck'}",
                                            f"mining.session_root={home / 'mining'}",
                                            f"publish.store={home / 'published'}"], wake_word=wake_word)
    key = hashlib.sha256((config.sha256() + source_hash()).encode()).hexdigest()
    marker = home / "done.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        done = json.loads(marker.read_text())
        log(f"[bench] accuracy: {name}: reusing the run in {home} (same config and source)")
        if "manifest" not in done:  # kept by an earlier version of this file, which kept the folder
            done["manifest"] = str(find(Path(done["model_dir"]), Kind.ESPHOME_MODEL).manifest)
        return done
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    log(f"[bench] accuracy: {name}: {preset} through kfp.local ({' '.join(overrides)})")
    run = run_local(config, preset, home / "runs", run_id="run")
    blessing = read_blessing(run.outputs["verification"].path.parent / BlessingLayout.PIPELINE)
    model_dir = run.outputs["esphome_model"].path
    done = {"key": key, "name": name, "preset": preset, "overrides": overrides, "wake_word": config.wake_word,
            "wall_s": run.wall_s, "manifest": str(model_dir / run.outputs["esphome_model"].metadata["manifest"]),
            "features": str(run.outputs["features"].path),
            "heldout_families": list(config.data_prep.splits.heldout_families),
            "target_fa_per_hour": config.target_false_accepts_per_hour,
            "blessed": bool(blessing.get("blessed")), "reasons": blessing.get("reasons", []),
            "test_breakdown": blessing.get("behaviour", {}).get("breakdown")}
    marker.write_text(dumps(done, indent=2))
    _drop_shard_copies(Path(done["features"]))
    return done


def _drop_shard_copies(gathered: Path) -> None:
    """Delete the augmentation shards' feature stores beside the `gathered` one (kfp.local's <run>/gather-features/
    features): it holds the same frames, and each kept run would otherwise hold them twice (about 1 GB a `default`
    run; a CI run on a full disk failed for that)."""
    shard_stores = sorted(gathered.parents[1].glob("for-loop-*/augmentation/features"))
    freed = sum(f.stat().st_size for d in shard_stores for f in d.rglob("*") if f.is_file())
    for d in shard_stores:
        shutil.rmtree(d)
    if shard_stores:
        log(f"[bench] accuracy: dropped {len(shard_stores)} shard feature store(s) already gathered "
            f"({freed / 2**30:.2f} GiB)")


def _model(path: Path):
    from components.runtime.tflm import TflmStreamer

    found = find(path, Kind.ESPHOME_MODEL)
    manifest = found.read_manifest()
    return TflmStreamer(found.main, manifest.tensor_arena_size), float(manifest.probability_cutoff)


def store_breakdown(model_path: Path, features: Path, heldout: list[str]):
    from components.common.artifacts import FeatureStoreLayout, Split
    from components.common.evaluation import breakdown, store_streams

    tflm, cutoff = _model(model_path)
    pos, amb = store_streams(FeatureStoreLayout(features), Split.TEST, tflm)
    return breakdown(pos, amb, cutoff, quantized=True, heldout_families=heldout)


def folder_report(model_path: Path, positives: list[Path] = (), ambient: list[Path] = (),
                  cutoff: float | None = None):
    """The model on folders of audio, at its shipped cutoff or at `cutoff`."""
    from components.runtime.folders import evaluate_folders

    return evaluate_folders(model_path, list(positives), list(ambient), cutoff=cutoff)


def _official(word: str) -> Path:
    return OFFICIAL / f"{word}.json"


def side_by_side(ours, official, official_name: str, heldout: list[str]) -> list[dict]:
    """Every cell of the two breakdowns as records, and the headline metrics."""
    out = []
    ho = ours.worst_heldout()
    if ho is not None:
        base = official.frr_cell(ho.family)
        out.append(result("heldout_family_frr", ho.frr, "fraction", baseline=official_name,
                          baseline_value=None if base is None else base.frr, family=ho.family, clips=ho.clips,
                          heldout_families=heldout, cutoff=ours.cutoff, baseline_cutoff=official.cutoff))
    wf, wb = ours.worst_fa(), official.worst_fa()
    out.append(result("worst_condition_fa_per_hour", wf.fa_per_hour, "FA/h", baseline=official_name,
                      baseline_value=wb.fa_per_hour, condition=wf.condition, hours=wf.hours,
                      false_accepts=wf.false_accepts, upper_95=wf.upper_per_hour,
                      baseline_condition=wb.condition, baseline_false_accepts=wb.false_accepts,
                      baseline_upper_95=wb.upper_per_hour,
                      baseline_on_our_worst=official.fa_cell(wf.condition).fa_per_hour))
    for cell in ours.fa:
        base = official.fa_cell(cell.condition)
        out.append(result(f"fa_per_hour_{cell.condition}", cell.fa_per_hour, "FA/h", baseline=official_name,
                          baseline_value=base.fa_per_hour, hours=cell.hours, false_accepts=cell.false_accepts,
                          upper_95=cell.upper_per_hour, baseline_false_accepts=base.false_accepts,
                          baseline_upper_95=base.upper_per_hour))
    for cell in ours.frr:
        if cell.condition != "all" and cell.family != "all":
            continue
        base = official.frr_cell(cell.family, cell.condition)
        name = (f"frr_family_{cell.family}" if cell.condition == "all" else f"frr_condition_{cell.condition}")
        out.append(result(name, cell.frr, "fraction", baseline=official_name,
                          baseline_value=None if base is None else base.frr, clips=cell.clips, misses=cell.misses,
                          heldout=cell.family in heldout))
    return out


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def chatterbox(seed: int) -> dict:
    """`default` for "hey chatterbox" at `seed`: the ablation's kept run (`ablation-all[-seedN]`), so either
    benchmark reuses the other's training."""
    from benchmarks.ablation import WORD, run_spec  # it imports this module

    name, overrides = run_spec("all", seed)
    return train(name, "default", overrides, wake_word=WORD)


def seed_figures(done: dict, seed: int) -> dict:
    """One "hey chatterbox" run's shipped model on the real audio and on its synthetic test, at its own cutoff."""
    data = shared_data()
    real = folder_report(Path(done["manifest"]), positives=[data / "real-wakeword-dev" / "hey_chatterbox"])
    speech = folder_report(Path(done["manifest"]), ambient=[data / "real-speech-dev"]).breakdown.fa_cell()
    synth = store_breakdown(Path(done["manifest"]), Path(done["features"]), done["heldout_families"])
    cell = real.breakdown.frr_cell()
    return {"seed": seed, "real_wakeword_detected": cell.clips - cell.misses, "real_wakeword_clips": cell.clips,
            "real_speech_fa_per_hour": speech.fa_per_hour, "test_frr": synth.frr_cell().frr,
            "worst_condition_fa_per_hour": synth.worst_fa().fa_per_hour, "blessed": float(done["blessed"])}


SEED_FIGURES = (("real_wakeword_detected", "clips"), ("real_speech_fa_per_hour", "FA/h"), ("test_frr", "fraction"),
                ("worst_condition_fa_per_hour", "FA/h"), ("blessed", "bool"))


def seed_spread(rows: list[dict]) -> list[dict]:
    """One record per figure over the seeds: the median as the value, min and max, and every seed's value."""
    seeds = [r["seed"] for r in rows]
    out = []
    for figure, unit in SEED_FIGURES:
        values = [r[figure] for r in rows]
        extra = {"clips": rows[0]["real_wakeword_clips"]} if figure == "real_wakeword_detected" else {}
        out.append(result(f"default_seeds_{figure}", spread(values)["median"], unit, seeds=seeds, values=values,
                          **spread(values), **extra))
    return out


def run() -> list[dict]:
    from components.common.artifacts import FeatureStoreLayout, LABEL_CODES, Label, Split
    from components.common.evaluation import TaggedStream, breakdown

    data = shared_data()
    out: list[dict] = []

    jarvis = train("default-hey-jarvis", "default", [])  # the default preset's word
    seeded = {s: chatterbox(s) for s in DEFAULT_SEEDS}
    chatter = seeded[0]
    smoke = [train(f"smoke-seed-{s}", "smoke", [f"seed={s}"]) for s in SMOKE_SEEDS]
    smoke_again = train("smoke-seed-0-again", "smoke", ["seed=0"])

    # 1. hey jarvis: wakeline vs the official model, same test audio, each at its own cutoff
    heldout = jarvis["heldout_families"]
    ours = store_breakdown(Path(jarvis["manifest"]), Path(jarvis["features"]), heldout)
    official = store_breakdown(_official("hey_jarvis"), Path(jarvis["features"]), heldout)
    out += side_by_side(ours, official, "official ESPHome hey_jarvis v2 (cutoff 0.97)", heldout)
    out.append(result("default_blessed", float(jarvis["blessed"]), "bool", reasons=jarvis["reasons"],
                      wall_s=jarvis["wall_s"]))

    # 2. real speech, no wake word: FA/h of both
    speech_dir = data / "real-speech-dev"
    ours_rs = folder_report(Path(jarvis["manifest"]), ambient=[speech_dir]).breakdown.fa_cell()
    off_rs = folder_report(_official("hey_jarvis"), ambient=[speech_dir]).breakdown.fa_cell()
    out.append(result("real_speech_dev_fa_per_hour", ours_rs.fa_per_hour, "FA/h",
                      baseline="official ESPHome hey_jarvis v2 (cutoff 0.97)", baseline_value=off_rs.fa_per_hour,
                      hours=ours_rs.hours, false_accepts=ours_rs.false_accepts, upper_95=ours_rs.upper_per_hour,
                      baseline_false_accepts=off_rs.false_accepts, baseline_upper_95=off_rs.upper_per_hour,
                      source="FSDD, CC BY-SA 4.0"))

    # 3. real people saying "hey chatterbox", beside the model's synthetic test FRR
    cb_dir = data / "real-wakeword-dev" / "hey_chatterbox"
    real = folder_report(Path(chatter["manifest"]), positives=[cb_dir])
    cell = real.breakdown.frr_cell()
    synth = store_breakdown(Path(chatter["manifest"]), Path(chatter["features"]), chatter["heldout_families"])
    cb_rs = folder_report(Path(chatter["manifest"]), ambient=[speech_dir]).breakdown.fa_cell()
    out.append(result("real_wakeword_dev_frr", cell.frr, "fraction", clips=cell.clips, misses=cell.misses,
                      baseline=None, synthetic_test_frr=synth.frr_cell().frr,
                      synthetic_heldout_frr=None if synth.worst_heldout() is None else synth.worst_heldout().frr,
                      synthetic_worst_condition_fa_per_hour=synth.worst_fa().fa_per_hour,
                      real_speech_dev_fa_per_hour=cb_rs.fa_per_hour, real_speech_dev_false_accepts=cb_rs.false_accepts,
                      blessed=chatter["blessed"], source="Precise-Community-Data, public domain"))

    # 3b. the same recipe at other seeds: one seed's figure is one draw
    out += seed_spread([seed_figures(seeded[s], s) for s in DEFAULT_SEEDS])

    # 4. cross-word: official models over the other words' test positives (a check of the evaluation)
    def positives_of(features: Path) -> list:
        store = FeatureStoreLayout(features)
        fs = store.open(Split.TEST, 0)
        return [fs.clip(int(i)) for i in (fs.labels == LABEL_CODES[Label.POSITIVE]).nonzero()[0]]

    for word, features in (("hey_jarvis", chatter["features"]), ("alexa", jarvis["features"]),
                           ("okay_nabu", jarvis["features"]), ("hey_mycroft", jarvis["features"])):
        if not _official(word).is_file():
            continue
        tflm, cutoff = _model(_official(word))
        clips = [TaggedStream(tflm(c), "test") for c in positives_of(Path(features))]
        b = breakdown(clips, [], cutoff, quantized=True)
        own = "hey chatterbox" if features == chatter["features"] else "hey jarvis"
        out.append(result("cross_word_detection_rate", 1 - b.frr_cell().frr, "fraction", model=word,
                          positives_of=own, clips=b.frr_cell().clips))
    own = store_breakdown(_official("hey_jarvis"), Path(jarvis["features"]), heldout).frr_cell()
    out.append(result("official_own_word_detection_rate", 1 - own.frr, "fraction", model="hey_jarvis",
                      positives_of="hey jarvis", clips=own.clips))

    # 5. spread over seeds, and repeatability
    frrs, fas = [], []
    for s in smoke:
        b = store_breakdown(Path(s["manifest"]), Path(s["features"]), s["heldout_families"])
        frrs.append(b.frr_cell().frr)
        fas.append(b.worst_fa().fa_per_hour)
    out.append(result("smoke_seed_spread_test_frr", spread(frrs)["median"], "fraction", seeds=list(SMOKE_SEEDS),
                      values=frrs, **spread(frrs)))
    out.append(result("smoke_seed_spread_worst_condition_fa_per_hour", spread(fas)["median"], "FA/h",
                      seeds=list(SMOKE_SEEDS), values=fas, **spread(fas)))
    a = _tflite_sha(Path(smoke[0]["manifest"]))
    b2 = _tflite_sha(Path(smoke_again["manifest"]))
    out.append(result("same_seed_bit_identical", float(a == b2), "bool", first_sha256=a, second_sha256=b2))
    return out


def _tflite_sha(manifest: Path) -> str:
    return hashlib.sha256(find(Path(manifest), Kind.ESPHOME_MODEL).main.read_bytes()).hexdigest()
