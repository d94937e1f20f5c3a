"""data_prep stage entry: config in, a `Dataset` directory and its metadata out."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Mapping

from components.common.artifacts import (EVAL_ONLY_SOURCE, SAMPLE_RATE_HZ, DatasetLayout, Label, Lineage, ManifestRecord,
                                         QuarantineReason, QuarantineRecord, Split, code_version, sha256_file,
                                         write_jsonl)
from components.common.audio import write_wav
from components.common.config import AmbientKind, RoomSplit, WakelineConfig
from components.common.stages import StageResult
from components.common.cpus import available_cpus
from components.common.progress import progress
from components.common.storage import materialize
from components.data_prep import ingest, phrases, splits, synth
from components.synthesis import ambient, conditions, rirs
from components.common.jsonio import dumps
from components.common import atomic


class DataPrepError(RuntimeError):
    """The stage cannot produce a usable dataset; the message says why and what to change."""


def _ingest_user(uris: list[str], label: Label, config: WakelineConfig, cache: Path,
                 quarantine: list[QuarantineRecord], inputs: dict[str, str]) -> tuple[list[ingest.Clip], int]:
    q = config.data_prep.quality
    background = label is Label.BACKGROUND
    clips, n_files = [], 0
    for uri in uris:
        files = materialize(uri, cache)
        n_files += len(files)
        listing = hashlib.sha256()
        for src in progress(files, desc=f"ingest {label.value}", unit="file"):
            listing.update(f"{src.relative}\0{sha256_file(src.local_path)}\n".encode())
            try:
                samples = ingest.load_source_file(
                    src, q, trim=not background,
                    min_duration_s=q.min_background_duration_s if background else q.min_clip_duration_s)
            except ingest.Quarantined as e:
                quarantine.append(QuarantineRecord(src.origin, e.reason, e.detail, kind=label.value))
                continue
            clips.append(ingest.Clip(samples, label, ingest.user_voice(src), "user", src.origin))
        inputs[uri] = listing.hexdigest()
    return clips, n_files


def _dedupe(clips: list[ingest.Clip], quarantine: list[QuarantineRecord]) -> list[ingest.Clip]:
    seen: dict[str, ingest.Clip] = {}
    for c in clips:
        first = seen.setdefault(c.sha256, c)
        if first is not c:
            quarantine.append(QuarantineRecord(c.origin, QuarantineReason.DUPLICATE,
                                               f"same audio as {first.origin}", kind=c.label.value))
    return list(seen.values())


def _check_positives(clips: list[ingest.Clip], n_user_files: int, quarantine: list[QuarantineRecord],
                     config: WakelineConfig) -> None:
    minimum = config.data_prep.min_usable_positives
    by_source = Counter(c.source for c in clips if c.label is Label.POSITIVE)
    usable = sum(by_source.values())
    if usable >= minimum:
        return
    reasons = Counter(r.reason.value for r in quarantine if r.kind == Label.POSITIVE.value)
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()) or "none rejected"
    raise DataPrepError(
        f"data_prep.min_usable_positives: only {usable} usable positive clips (minimum {minimum}). "
        f"User recordings: {by_source.get('user', 0)} usable of {n_user_files} files "
        f"(rejected positives: {why}); synthetic: piper {by_source.get('piper', 0)}, "
        f"espeak {by_source.get('espeak', 0)}. Add recordings to data_prep.sources.positives, raise "
        f"data_prep.positives.piper_clips / espeak_clips, or lower data_prep.min_usable_positives. "
        f"Details per file are in the quarantine report.")


def _check_languages(config: WakelineConfig) -> None:
    dp = config.data_prep
    for key, langs in (("conditions.non_english", dp.conditions.non_english.languages),
                       ("other_languages", dp.other_languages.languages)):
        missing = [x for x in langs if x not in phrases.NON_ENGLISH_SENTENCES]
        if missing:
            raise DataPrepError(f"data_prep.{key}.languages: no sentences for {missing}; "
                                f"choose from {sorted(phrases.NON_ENGLISH_SENTENCES)}")
    both = sorted(set(dp.other_languages.languages) & set(dp.conditions.non_english.languages))
    if both and dp.other_languages.espeak_clips:
        raise DataPrepError(f"data_prep.other_languages.languages: {both} are also the evaluation's unheard "
                            f"languages (data_prep.conditions.non_english.languages); train on others")


def _check_heldout(config: WakelineConfig, families: dict[str, str], positives: Counter) -> None:
    """Every held-out family must have positives to measure, and training must keep some."""
    heldout = set(config.data_prep.splits.heldout_families)
    pos_by_family = Counter()
    for voice, n in positives.items():
        pos_by_family[families[voice]] += n
    empty = sorted(f for f in heldout if not pos_by_family.get(f))
    if empty:
        have = ", ".join(f"{f} ({n})" for f, n in sorted(pos_by_family.items()))
        raise DataPrepError(f"data_prep.splits.heldout_families: {empty} would have no positive clips to measure; "
                            f"families with positives: {have}")
    if pos_by_family and all(f in heldout for f in pos_by_family):
        raise DataPrepError(f"data_prep.splits.heldout_families: {sorted(heldout)} hold out every family with "
                            f"positives; training would have none")


def _ambient_clips(config: WakelineConfig, speech_by_split: dict[Split, list], names_to_split: dict[str, Split]):
    cfg = config.data_prep.ambient
    kinds = list(cfg.kinds)
    for i, name in enumerate(sorted(names_to_split)):
        split = names_to_split[name]
        primary = kinds[i % len(kinds)]
        speech = speech_by_split.get(split, [])
        if primary in (AmbientKind.BABBLE, AmbientKind.CHANNEL_SPEECH) and not speech:
            primary = next((k for k in kinds if k not in (AmbientKind.BABBLE, AmbientKind.CHANNEL_SPEECH)),
                           AmbientKind.NOISE)
        samples = ambient.ambient_file(cfg.file_duration_s, primary, cfg, speech, seed=config.seed * 1_000_003 + i)
        yield name, split, primary, samples


def make_rooms(config: WakelineConfig, *, show_progress: bool = False) -> dict[str, tuple[Any, dict]]:
    """Every room of the run by name (rir-0000, ...): its impulse response and what it is (RT60, size, distance)."""
    names = [f"rir-{i:04d}" for i in range(config.data_prep.rirs.count)]
    return {name: rirs.room_impulse_response(config.data_prep.rirs, seed=config.seed * 7_919 + int(name[4:]))
            for name in progress(names, desc="room impulse responses", unit="rir", disable=not show_progress)}


def split_rooms(rooms: Mapping[str, tuple[Any, dict]], rule: RoomSplit,
                config: WakelineConfig) -> dict[str, Split]:
    """Each room's split under `rule` (`data_prep.rirs.split`)."""
    if rule is RoomSplit.BY_RT60:
        return splits.assign_by_value({n: info["rt60_s"] for n, (_, info) in rooms.items()}, config.data_prep.splits,
                                      config.seed)
    return splits.assign_files(list(rooms), config.data_prep.splits, config.seed)


def run(output_dir: Path, config: WakelineConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Build the dataset in `output_dir`; return the metadata (also written to summary.json)."""
    t0 = time.monotonic()
    dp = config.data_prep
    layout = DatasetLayout(Path(output_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    workers = dp.workers or available_cpus()
    quarantine: list[QuarantineRecord] = []
    inputs: dict[str, str] = {}

    with tempfile.TemporaryDirectory(prefix="wakeline-s3-") as cache:
        user, n_pos_files = _ingest_user(dp.sources.positives, Label.POSITIVE, config, Path(cache), quarantine, inputs)
        negs, _ = _ingest_user(dp.sources.negatives, Label.NEGATIVE, config, Path(cache), quarantine, inputs)
        user_bg, _ = _ingest_user(dp.sources.background, Label.BACKGROUND, config, Path(cache), quarantine, inputs)

    _check_languages(config)
    texts = synth.label_texts(config)
    jobs = synth.plan(config, texts)
    user = [dataclasses.replace(c, family=synth.family_of(c.voice)) for c in user]
    negs = [dataclasses.replace(c, family=synth.family_of(c.voice)) for c in negs]
    # Splits are decided on the plan, before synthesis, so that test speech can say texts training never says.
    families = {j.voice: j.family for j in jobs} | {c.voice: c.family for c in user + negs}
    planned_pos = Counter(j.voice for j in jobs if j.label is Label.POSITIVE)
    planned_pos.update(c.voice for c in user)
    planned_all = Counter(j.voice for j in jobs)
    planned_all.update(c.voice for c in user + negs)
    _check_heldout(config, families, planned_pos)
    voice_split = splits.assign_voices(planned_pos, planned_all, families, dp.splits, config.seed,
                                       eval_only_families=(synth.NON_ENGLISH_FAMILY,))
    heldout_texts = phrases.heldout_texts(texts[Label.NEGATIVE], dp.splits.heldout_text_fraction, config.seed)
    jobs = synth.hold_out_texts(jobs, voice_split, heldout_texts, config.seed)
    try:
        jobs += synth.greeting_jobs(config, voice_split, heldout_texts)
        jobs += synth.sound_alike_jobs(config, voice_split, heldout_texts)
        validation_jobs = synth.validation_speech_jobs(config, voice_split, {j.text for j in jobs} | heldout_texts)
    except ValueError as e:
        raise DataPrepError(str(e)) from None
    jobs += validation_jobs
    validation_only = {j.origin for j in validation_jobs}
    shared = splits.shared_voices(voice_split, families, synth.NEURAL_ENGINES)
    cache = synth.cache_for(config)
    synthetic, rejected = synth.run_jobs(jobs, config, workers, progress if show_progress else _quiet, cache)
    quarantine += rejected
    spread = _speaker_spread(jobs, synthetic, config.seed)
    clips = _dedupe(user + negs + synthetic, quarantine)
    _check_positives(clips, n_pos_files, quarantine, config)

    records: list[ManifestRecord] = []
    speech_by_split: dict[Split, list] = defaultdict(list)
    non_english_by_split: dict[Split, list] = defaultdict(list)
    for c in progress(clips, desc="write clips", unit="clip", disable=not show_progress):
        split = Split.VALIDATION if c.origin in validation_only else splits.clip_split(
            c.voice, c.label, c.text, c.origin, voice_split, shared, dp.splits.single_voice_validation_fraction,
            config.seed)
        path = layout.clip_path(c.label, c.sha256)
        write_wav(path, c.samples)
        records.append(ManifestRecord(layout.relative(path), c.label, split, c.voice, c.source,
                                      round(c.duration_s, 4), c.sha256, c.text, c.origin, c.family or None))
        if c.label is Label.NEGATIVE:
            (non_english_by_split if c.family == synth.NON_ENGLISH_FAMILY else speech_by_split)[split].append(
                c.samples)

    # Long-form background: user recordings and synthetic streams, both split by file.
    bg_split = splits.assign_files([c.origin for c in user_bg], dp.splits.for_background(), config.seed)
    for c in user_bg:
        path = layout.clip_path(Label.BACKGROUND, c.sha256)
        write_wav(path, c.samples)
        records.append(ManifestRecord(layout.relative(path), Label.BACKGROUND, bg_split[c.origin], c.voice,
                                      "user", round(c.duration_s, 4), c.sha256, None, c.origin,
                                      condition="user_background"))
    n_ambient = int(dp.ambient.synthetic_duration_s // dp.ambient.file_duration_s)
    # File i has kind i % len(kinds). With at least 3 files of every kind each kind is split on its own, so
    # every split hears every kind; otherwise the files are split together.
    by_kind = [[f"ambient-{i:04d}" for i in range(k, n_ambient, len(dp.ambient.kinds))]
               for k in range(len(dp.ambient.kinds))]
    groups = by_kind if min(len(g) for g in by_kind) >= 3 else [[n for g in by_kind for n in g]]
    ambient_split: dict[str, Split] = {}
    for names in groups:
        ambient_split.update(splits.assign_files(names, dp.splits.for_background(), config.seed))
    for name, split, kind, samples in progress(_ambient_clips(config, speech_by_split, ambient_split),
                                               total=n_ambient, desc="ambient", unit="file",
                                               disable=not show_progress):
        records.append(_write_extra(layout, Label.BACKGROUND, split, samples, f"synthetic:{name}",
                                    "synthetic_ambient", f"{name}:{kind.value}", condition=kind.value))

    rooms = make_rooms(config, show_progress=show_progress)
    rir_split = split_rooms(rooms, dp.rirs.split, config)
    rirs_by_split: dict[Split, list] = defaultdict(list)
    for name, (rir, info) in rooms.items():
        rirs_by_split[rir_split[name]].append(rir)
        records.append(_write_extra(layout, Label.RIR, rir_split[name], rir, f"room:{name}", "pyroomacoustics",
                                    f"{name}:{json.dumps(info, sort_keys=True)}"))

    cond = dp.conditions
    plan_c = [(split, kind) for split in (Split.VALIDATION, Split.TEST) for kind in cond.kinds] \
        if cond.duration_s > 0 else []
    for i, (split, kind) in enumerate(progress(plan_c, desc="evaluation conditions", unit="stream",
                                               disable=not show_progress)):
        try:
            samples = conditions.condition_stream(kind, cond.duration_s, dp.ambient, speech_by_split[split],
                                                  non_english_by_split[split], rirs_by_split[split],
                                                  seed=config.seed * 1_000_033 + 17 * i + 5)
        except conditions.MissingSpeech as e:
            raise DataPrepError(f"data_prep.conditions.kinds: {split.value} {e}; add speech "
                                f"(data_prep.speech / data_prep.conditions.non_english.espeak_clips) or drop "
                                f"the condition") from None
        records.append(_write_extra(layout, Label.BACKGROUND, split, samples, f"condition:{kind.value}",
                                    EVAL_ONLY_SOURCE, f"condition-{split.value}:{kind.value}",
                                    condition=kind.value))

    records.sort(key=lambda r: (r.label.value, r.split.value, r.path))
    quarantine.sort(key=lambda r: (r.kind, r.origin))
    manifest_sha = write_jsonl(layout.manifest, records)
    quarantine_sha = write_jsonl(layout.quarantine, quarantine)
    metadata = summarize(records, quarantine, config, manifest_sha, quarantine_sha, inputs, time.monotonic() - t0)
    metadata["speaker_spread"] = spread
    metadata["synthesis_cache"] = {"dir": str(cache.root) if cache.root else None, "hits": cache.hits,
                                   "misses": cache.misses}
    atomic.write_text(layout.summary, dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


def _speaker_spread(jobs: list[synth.Job], clips: list[ingest.Clip], seed: int, n: int = 120) -> dict[str, Any]:
    """Pitch and formant percentiles of a seeded sample of synthetic positives (after speaker perturbation) and
    the target speaker classes drawn: how wide the speakers range, measured rather than assumed."""
    import numpy as np

    from components.synthesis import perturb

    positives = [c for c in clips if c.label is Label.POSITIVE and c.source != "user"]
    by_origin = {j.origin: j for j in jobs}
    if not positives:
        return {}
    pick = sorted(np.random.default_rng([seed, 77]).permutation(len(positives))[:n])
    sample = [positives[i] for i in pick]
    after = perturb.spread([(c.samples.astype(np.float32) / 32768.0, SAMPLE_RATE_HZ) for c in sample])
    targets = Counter(by_origin[c.origin].speaker.target.value if by_origin[c.origin].speaker else "unchanged"
                      for c in positives if c.origin in by_origin)
    per_engine = Counter(c.source for c in positives)
    return {"after_perturbation": after, "positives_by_target_speaker": dict(sorted(targets.items())),
            "positives_by_engine": dict(sorted(per_engine.items()))}


def _write_extra(layout: DatasetLayout, label: Label, split: Split, samples, voice: str, source: str,
                 origin: str, condition: str | None = None) -> ManifestRecord:
    sha = hashlib.sha256(samples.tobytes()).hexdigest()
    path = layout.clip_path(label, sha)
    write_wav(path, samples)
    return ManifestRecord(layout.relative(path), label, split, voice, source,
                          round(len(samples) / SAMPLE_RATE_HZ, 4), sha, None, origin, condition=condition)


def _quiet(it, **_):
    return it


def summarize(records: list[ManifestRecord], quarantine: list[QuarantineRecord], config: WakelineConfig,
              manifest_sha: str, quarantine_sha: str, inputs: dict[str, str], wall_s: float) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {s.value: 0 for s in Split})
    hours: dict[str, dict[str, float]] = defaultdict(lambda: {s.value: 0.0 for s in Split})
    voices: dict[str, set[str]] = defaultdict(set)
    engine_voices: dict[str, set[str]] = defaultdict(set)
    families: dict[str, dict[str, int]] = defaultdict(lambda: {s.value: 0 for s in Split})
    speech_families: dict[str, dict[str, int]] = defaultdict(lambda: {s.value: 0 for s in Split})
    conds: dict[str, dict[str, float]] = defaultdict(lambda: {s.value: 0.0 for s in Split})
    for r in records:
        if r.family and r.label is Label.POSITIVE:
            families[r.family][r.split.value] += 1
        if r.family and r.label is Label.NEGATIVE:
            speech_families[r.family][r.split.value] += 1
        if r.condition:
            conds[r.condition][r.split.value] += r.duration_s / 3600
        counts[r.label.value][r.split.value] += 1
        hours[r.label.value][r.split.value] += r.duration_s / 3600
        if r.label in (Label.POSITIVE, Label.NEGATIVE, Label.ADVERSARIAL_NEGATIVE):
            voices[r.split.value].add(r.voice)
            engine_voices[r.source].add(r.voice)
    lineage = Lineage(config.sha256(), code_version(), inputs,
                      {"manifest.jsonl": manifest_sha, "quarantine.jsonl": quarantine_sha})
    return {
        "wake_word": config.wake_word,
        "clips": len(records),
        "counts": dict(counts),
        "hours": {k: {s: round(v, 5) for s, v in d.items()} for k, d in hours.items()},
        "voices_per_split": {s: len(v) for s, v in sorted(voices.items())},
        "voices_per_engine": {e: len(v) for e, v in sorted(engine_voices.items())},
        "positives_per_family": dict(sorted(families.items())),
        "speech_per_family": dict(sorted(speech_families.items())),
        "heldout_families": list(config.data_prep.splits.heldout_families),
        "condition_hours": {k: {s: round(v, 5) for s, v in d.items()} for k, d in sorted(conds.items())},
        "quarantined": len(quarantine),
        "quarantine_by_reason": dict(Counter(r.reason.value for r in quarantine).most_common()),
        "manifest_sha256": manifest_sha,
        "wall_s": round(wall_s, 2),
        **lineage.as_metadata(),
    }


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              show_progress: bool = True) -> StageResult:
    """The stage entry (components.common.stages): outputs `dataset`."""
    return StageResult({"dataset": run(outputs["dataset"], config, show_progress=show_progress)})
