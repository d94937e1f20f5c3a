"""augmentation stage entry: a `Dataset` in, a `FeatureStore` (one shard of it) out; and the gather step.

Work is cut into batches of the global clip list. Shard s of S takes batches s, s+S, ...; each batch's
randomness comes from (seed, split, epoch, batch), so the gathered store is the same for any shard count.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from components.common import xp as xpmod
from components.common.artifacts import (EVAL_ONLY_SOURCE, SAMPLE_RATE_HZ, DatasetLayout, FeatureSetWriter, FeatureStoreLayout,
                                         HardNegativesLayout, Label, Lineage, ManifestRecord, Split, code_version,
                                         sha256_file)
from components.common.audio import read_wav_float, read_wav_int16
from components.synthesis.channels import apply_channel, draw_channel, telephone
from components.common.config import AugmentOps, Augmentation, PositiveCondition, WakelineConfig
from components.common.stages import StageResult
from components.common.frontend import features_uint16, n_frames
from components.common.progress import progress
from components.augmentation import ops
from components.augmentation.features import FeatureExtractor
from components.augmentation.schedule import snr_range
from components.common.jsonio import dumps
from components.common import atomic

SR = SAMPLE_RATE_HZ
SPEECH_LABELS = (Label.POSITIVE, Label.NEGATIVE, Label.ADVERSARIAL_NEGATIVE, Label.HARD_NEGATIVE)
END_ALIGNED = (Label.POSITIVE, Label.HARD_NEGATIVE)  # what matters ends at the clip's end
SPLIT_CODES = {s: i for i, s in enumerate(Split)}


@dataclass(frozen=True)
class Item:
    """One training example before augmentation: a manifest clip, or a window of background audio."""

    index: int
    label: Label
    record: ManifestRecord | None = None
    background: int = -1  # index into the split's background list, for ambient windows
    root: Path | None = None  # the dataset directory the record's path is relative to (None: the main dataset)


def items_for(records: list[ManifestRecord], split: Split, backgrounds: list[np.ndarray], aug: Augmentation,
              extra: list[ManifestRecord] = (), extra_root: Path | None = None) -> list[Item]:
    """The split's clips in a fixed order, then its background windows. `extra` records (the hard negatives)
    live in their own dataset directory, `extra_root`."""
    tagged = [(r, None) for r in records] + [(r, extra_root) for r in extra]
    clips = sorted(((r, root) for r, root in tagged if r.split is split and r.label in SPEECH_LABELS),
                   key=lambda rr: (rr[0].label.value, rr[1] is not None, rr[0].path))
    items = [Item(i, r.label, r, root=root) for i, (r, root) in enumerate(clips)]
    hours = sum(len(b) for b in backgrounds) / SR / 3600
    n_windows = int(round(hours * aug.background_windows_per_hour)) if backgrounds else 0
    items += [Item(len(clips) + j, Label.BACKGROUND, None, j % len(backgrounds)) for j in range(n_windows)]
    return items


def _place(items: list[Item], dataset: DatasetLayout, n: int, aug: Augmentation, backgrounds: list[np.ndarray],
           rng: np.random.Generator, tail: int = 0):
    """Put each clip in an N-sample window: positives end `positive_end_margin_s` before the window end
    (where a streaming model sees a finished wake word), and so do mined hard negatives (each ends where the
    detector fired); other clips anywhere, long ones cropped. `tail` samples follow the window (evaluation
    clips: the device keeps listening after a wake word, so its detector sees what comes next)."""
    b = len(items)
    window, n = n, n + tail
    clean = np.zeros((b, n), np.float32)
    start, end, anchor = np.zeros(b, np.int64), np.zeros(b, np.int64), np.zeros(b, np.int64)
    margins = rng.uniform(*aug.positive_end_margin_s_range, b)
    positions = rng.random(b)
    for i, item in enumerate(items):
        if item.record is None:  # a background window is all "signal": no mixing, other ops apply
            clean[i] = ops._segment(backgrounds[item.background], positions[i], n)
            start[i], end[i], anchor[i] = 0, n, n // 2
            continue
        audio = read_wav_int16((item.root or dataset.root) / item.record.path).astype(np.float32) / 32768.0
        if item.label in END_ALIGNED:
            e = window - int(margins[i] * SR)
            s = e - len(audio)
            if s < 0:  # keep the end of the wake word, drop the start
                audio, s = audio[-s:], 0
        elif len(audio) > n:
            off = int(positions[i] * (len(audio) - n + 1))
            audio, s = audio[off:off + n], 0
        else:
            s = int(positions[i] * (n - len(audio) + 1))
        clean[i, s:s + len(audio)] = audio
        start[i], end[i] = s, s + len(audio)
        anchor[i] = end[i] if item.label in END_ALIGNED else (start[i] + end[i]) // 2
    mixable = np.array([it.record is not None for it in items])
    return clean, start, end, anchor, mixable


def _batches(items: list[Item], batch_size: int, shard: int, shards: int) -> Iterator[tuple[int, list[Item]]]:
    for b in range(math.ceil(len(items) / batch_size)):
        if b % shards == shard:
            yield b, items[b * batch_size:(b + 1) * batch_size]


def _split_records(records: list[ManifestRecord], label: Label, split: Split) -> list[ManifestRecord]:
    return sorted((r for r in records if r.label is label and r.split is split), key=lambda r: r.path)


def run(dataset_dir: Path, output_dir: Path, config: WakelineConfig, *, shard_index: int = 0,
        show_progress: bool = True, hard_negatives_dir: Path | None = None) -> dict[str, Any]:
    """Augment and featurise this shard's batches of every split and epoch into `output_dir`. With
    `hard_negatives_dir` (background_mining's Dataset) its clips join the training split as hard negatives."""
    t0 = time.monotonic()
    aug = config.augmentation
    if not 0 <= shard_index < aug.shards:
        raise ValueError(f"shard_index {shard_index} outside augmentation.shards={aug.shards}")
    backend = xpmod.select(aug.device, key="augmentation.device")
    print(f"augmentation: {backend.reason} -> {backend.name}", file=sys.stderr)
    dataset = DatasetLayout(Path(dataset_dir))
    records = dataset.read_manifest()
    inputs = {"dataset_manifest": sha256_file(dataset.manifest)}
    hard_negatives: list[ManifestRecord] = []
    hn_root = None
    if hard_negatives_dir is not None:
        hn = HardNegativesLayout(Path(hard_negatives_dir))
        hn_root = hn.root
        hard_negatives = hn.read_hard_negatives()
        inputs["hard_negatives_manifest"] = sha256_file(hn.manifest)
    out = FeatureStoreLayout(Path(output_dir))
    n = int(round(aug.clip_duration_s * SR))
    rir_max = int(aug.ops.rir_max_duration_s * SR)
    workers = aug.workers or None
    teacher = config.distillation.embedding_teacher
    embed = teacher.weight > 0  # the embedding teacher learns from these clips
    sets: dict[str, Any] = {}
    schedule: dict[str, list[float]] = {}
    skipped: dict[str, dict[str, str]] = {}

    with FeatureExtractor(workers) as fx:
        for split in Split:
            rirs = [read_wav_float(dataset.root / r.path) for r in _split_records(records, Label.RIR, split)]
            # speech-condition streams are measured, never mixed into clips or cut into background windows
            bg_records = _split_records(records, Label.BACKGROUND, split)
            bg_audio = [read_wav_int16(dataset.root / r.path) for r in bg_records]
            backgrounds = [a for r, a in zip(bg_records, bg_audio) if r.source != EVAL_ONLY_SOURCE]
            tail = 0 if split is Split.TRAIN else int(round(aug.eval_tail_s * SR))
            bank = ops.RirBank(rirs, n + tail, rir_max, backend.xp)
            items = items_for(records, split, backgrounds, aug, hard_negatives, hn_root)
            epochs = aug.epochs if split is Split.TRAIN else 1
            for epoch in range(epochs):
                lo_hi = snr_range(aug.snr, epoch, epochs) if split is Split.TRAIN else aug.eval_snr_db_range
                schedule[f"{split.value}/epoch-{epoch:03d}"] = [round(v, 3) for v in lo_hi]
                writer = FeatureSetWriter(out.set_dir(split, epoch))
                batches = list(_batches(items, aug.batch_size, shard_index, aug.shards))
                pending = None
                for b, batch in progress(batches, desc=f"{split.value} epoch {epoch}", unit="batch",
                                         disable=not show_progress):
                    rng = np.random.default_rng([config.seed, SPLIT_CODES[split], epoch, b])
                    clean, start, end, anchor, mixable = _place(batch, dataset, n, aug, backgrounds, rng, tail)
                    params = ops.draw_params(rng, start, end, anchor, n + tail, aug.ops, lo_hi, bank.count,
                                             backgrounds, mixable)
                    pcm = ops.augment_batch(clean, params, bank, backend.xp)
                    channels = []
                    if split is Split.TRAIN and aug.ops.channel_probability > 0:
                        pcm, channels = _channels(pcm, aug.ops, rng)
                    # features of this batch run while the next one augments
                    # embeddings see the clip without the evaluation tail, as in training: the word near the end
                    job = fx.submit(list(pcm), embed=embed and (split is Split.VALIDATION or (
                        split is Split.TRAIN and epoch < teacher.embedded_epochs)), embed_samples=n)
                    if pending:
                        _write(writer, *pending)
                    pending = (job, batch, params, aug, None, channels)
                if pending:
                    _write(writer, *pending)
                sets[f"{split.value}/epoch-{epoch:03d}"] = writer.close()
            if split is not Split.TRAIN:
                positives = [Item(i, Label.POSITIVE, r) for i, r in
                             enumerate(_split_records(records, Label.POSITIVE, split))]
                for k, condition in enumerate(aug.eval_conditions):
                    missing = _cannot_realise(condition, bank.count, backgrounds)
                    if missing:  # a "far-field" set without rooms would be mislabelled: leave it out, say so
                        skipped.setdefault(split.value, {})[condition.value] = missing
                        print(f"augmentation: {split.value} {condition.value} positives skipped: {missing}",
                              file=sys.stderr)
                        continue
                    writer = FeatureSetWriter(out.condition_dir(split, condition.value))
                    batches = list(_batches(positives, aug.batch_size, shard_index, aug.shards))
                    for b, batch in progress(batches, desc=f"{split.value} {condition.value}", unit="batch",
                                             disable=not show_progress):
                        rng = np.random.default_rng([config.seed, SPLIT_CODES[split], 1000 + k, b])
                        clean, start, end, anchor, mixable = _place(batch, dataset, n, aug, backgrounds, rng, tail)
                        params = ops.draw_params(rng, start, end, anchor, n + tail, condition_ops(aug.ops, condition),
                                                 condition_snr(aug.eval_snr_db_range, condition), bank.count,
                                                 backgrounds, mixable)
                        pcm = ops.augment_batch(clean, params, bank, backend.xp)
                        if condition is PositiveCondition.BAND_LIMITED:
                            pcm = _telephone_pcm(pcm)
                        _write(writer, fx.submit(list(pcm)), batch, params, aug, condition.value)
                    sets[f"{split.value}/{out.condition_dir(split, condition.value).name}"] = writer.close()
            if shard_index == 0 and split is not Split.TRAIN and bg_audio:
                writer = FeatureSetWriter(out.set_dir(split, None))
                for rec, audio in zip(bg_records, bg_audio):
                    writer.add(features_uint16(audio), Label.BACKGROUND, aug.sample_weights.background,
                               {"item": -1, "path": rec.path, "label": "background", "duration_s": rec.duration_s,
                                "condition": rec.condition or "ambient",
                                "eval_only": rec.source == EVAL_ONLY_SOURCE})
                sets[f"{split.value}/ambient"] = writer.close()

    metadata = {"shard_index": shard_index, "shards": aug.shards, "array_backend": backend.name,
                "device_choice": backend.reason, "clip_duration_s": aug.clip_duration_s,
                "frames_per_clip": n_frames(n), "eval_tail_s": aug.eval_tail_s,
                "eval_frames_per_clip": n_frames(n + int(round(aug.eval_tail_s * SR))),
                "feature_channels": 40, "feature_dtype": "uint16",
                "feature_scale": 0.0390625, "snr_schedule": {"shape": aug.snr.shape.value, "epochs": schedule},
                "sets": sets, "wall_s": round(time.monotonic() - t0, 2),
                "hard_negatives": len(hard_negatives), "skipped_conditions": skipped,
                "speech_embeddings": embed,
                **Lineage(config.sha256(), code_version(), inputs).as_metadata()}
    atomic.write_text(out.root / FeatureStoreLayout.METADATA, dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


def condition_ops(base: AugmentOps, condition: PositiveCondition) -> AugmentOps:
    """The augmentation operations of one evaluation condition: one channel at a time, level always varies."""
    off = {"speed_probability": 0.0, "eq_probability": 0.0, "band_stop_probability": 0.0, "rir_probability": 0.0,
           "background_probability": 0.0, "colored_noise_probability": 0.0}
    on = {PositiveCondition.NOISY: {"background_probability": 1.0,
                                    "colored_noise_probability": base.colored_noise_probability},
          PositiveCondition.FAR_FIELD: {"rir_probability": 1.0, "background_probability": 1.0}}.get(condition, {})
    return base.model_copy(update={**off, **on})


def _cannot_realise(condition: PositiveCondition, n_rirs: int, backgrounds: list) -> str:
    """Why a split cannot give this condition ("" when it can)."""
    if condition is PositiveCondition.FAR_FIELD and n_rirs == 0:
        return "the split has no room impulse responses (data_prep.rirs.count)"
    if condition in (PositiveCondition.NOISY, PositiveCondition.FAR_FIELD) and not backgrounds:
        return "the split has no background audio to mix in (data_prep.ambient)"
    return ""


def condition_snr(eval_range: tuple[float, float], condition: PositiveCondition) -> tuple[float, float]:
    """Far-field speech already lost level and clarity to the room: its background is 5 dB quieter."""
    lo, hi = eval_range
    return (lo + 5, hi + 5) if condition is PositiveCondition.FAR_FIELD else (lo, hi)


def _channels(pcm: np.ndarray, ops_cfg: AugmentOps, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Each row through one channel with probability `channel_probability` (choices drawn here, in order)."""
    on = rng.random(len(pcm)) < ops_cfg.channel_probability
    pick = rng.integers(0, len(ops_cfg.channels), len(pcm))
    out, used = pcm.copy(), []
    for i in range(len(pcm)):
        channel = ops_cfg.channels[int(pick[i])]
        settings = draw_channel(channel, rng)
        if not on[i]:
            used.append(None)
            continue
        out[i] = _through(pcm[i], lambda x: apply_channel(x, channel, settings))
        used.append(channel.value)
    return out, used


def _through(row: np.ndarray, fn) -> np.ndarray:
    """One int16 row through a float channel function and back to int16."""
    return np.clip(np.rint(fn(row.astype(np.float32) / 32768.0) * 32767), -32768, 32767).astype(np.int16)


def _telephone_pcm(pcm: np.ndarray) -> np.ndarray:
    return np.stack([_through(row, telephone) for row in pcm])


def _write(writer: FeatureSetWriter, job, batch: list[Item], params: ops.BatchParams, aug: Augmentation,
           condition: str | None = None, channels: list | None = None) -> None:
    weights = aug.sample_weights
    for i, (item, result) in enumerate(zip(batch, job.get())):
        frames, embedding = result if isinstance(result, tuple) else (result, None)
        snr = params.snr_db[i]
        info = {"item": item.index, "label": item.label.value,
                "path": item.record.path if item.record else None,
                "family": item.record.family if item.record else None,
                "condition": condition,
                "snr_db": None if np.isnan(snr) else round(float(snr), 3),
                "rir": int(params.rir_index[i]), "speed": round(float(params.speed[i]), 4),
                "gain_db": round(float(params.gain_db[i]), 2)}
        if channels and channels[i]:
            info["channel"] = channels[i]
        if item.root is not None:
            info["dataset"] = "hard_negatives"  # the path is relative to background_mining's Dataset
        writer.add(frames, item.label, getattr(weights, item.label.value), info, embedding)




def gather(shard_dirs: list[Path], output_dir: Path) -> dict[str, Any]:
    """Merge shard stores into one, in global item order (the same store whatever the shard count)."""
    shards = [FeatureStoreLayout(Path(d)) for d in shard_dirs]
    metas = sorted((s.metadata() for s in shards), key=lambda m: m["shard_index"])
    if [m["shard_index"] for m in metas] != list(range(metas[0]["shards"])):
        raise ValueError(f"expected shards 0..{metas[0]['shards'] - 1}, got {[m['shard_index'] for m in metas]}")
    out = FeatureStoreLayout(Path(output_dir))
    merged_sets = {}
    for key in metas[0]["sets"]:
        split_name, set_name = key.split("/")
        split = Split(split_name)
        entries = []
        for s in shards:
            if not s.set_dir_named(split, set_name).is_dir():
                continue
            fs = s.open_dir(s.set_dir_named(split, set_name))
            emb = fs.embeddings() if fs.has_embeddings else None
            for i, info in enumerate(fs.clip_info()):
                entries.append((info["item"], i, fs, info, emb))
        entries.sort(key=lambda e: (e[0], e[1]))
        writer = FeatureSetWriter(out.set_dir_named(split, set_name))
        for _, i, fs, info, emb in entries:
            writer.add(fs.clip(i), fs.label(i), float(fs.weights[i]), info, None if emb is None else emb[i])
        merged_sets[key] = writer.close()
    metadata = {k: v for k, v in metas[0].items() if k not in ("shard_index", "sets", "wall_s")}
    metadata.update({"sets": merged_sets, "shards": len(metas),
                     "shard_wall_s": [m["wall_s"] for m in metas]})
    atomic.write_text(out.root / FeatureStoreLayout.METADATA, dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              shard_index: int = 0, show_progress: bool = True) -> StageResult:
    """The stage entry (components.common.stages): `dataset` and `hard_negatives` in, this shard's `features` out."""
    return StageResult({"features": run(inputs["dataset"], outputs["features"], config, shard_index=shard_index,
                                        show_progress=show_progress, hard_negatives_dir=inputs["hard_negatives"])})


def run_gather_stage(inputs: Mapping[str, Sequence[Path]], outputs: Mapping[str, Path],
                     config: WakelineConfig | None = None) -> StageResult:
    """The gather entry: every shard's features (`shards`) in, one store (`features`) out; needs no config."""
    return StageResult({"features": gather(list(inputs["shards"]), outputs["features"])})
