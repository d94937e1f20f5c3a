"""background_mining stage entry: the data_prep `Dataset` in; a `Dataset` of hard negatives (clips of the
*training* background audio that a detector scores high) and a report out.

With `mining.condition_stream_duration_s` > 0 the scan also covers long-form speech per condition (telephone,
far-field, fast/slow, over music, other languages, ...) built here from the training split's own speech clips by
the recipes validation uses: the background streams hold little of that, and it is where models false-fire.

The scorer is `mining.previous_model` when given, else a probe trained here on the clean training clips. Only
the training split's background recordings are read; validation and test audio is never opened. The scan is a
persistent session (`mining.session_root`): an interrupted or repeated run continues where it stopped, and
recordings added later are the only ones scanned.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from components.background_mining import miner
from components.background_mining.probe import get_probe
from components.background_mining.report import report_html
from components.background_mining.scan import HIST_BINS, SR, ScanParams, merge_histograms, top_k
from components.synthesis import conditions
from components.runtime.scorers import describe, load_scorer, resolve_previous_model
from components.background_mining.session import Session
from components.common.artifacts import (OTHER_LANGUAGE_FAMILY, DatasetLayout, HardNegativesLayout, Label, Lineage,
                                         ManifestRecord, Split, code_version, sha256_file, write_jsonl)
from components.common.audio import read_wav_float, read_wav_int16, write_wav
from components.common.config import WakelineConfig
from components.common.stages import StageResult
from components.common.jsonio import dumps
from components.common import atomic

REPORT_JSON = HardNegativesLayout.REPORT_JSON
REPORT_HTML = HardNegativesLayout.REPORT_HTML
MAX_LISTED_HITS = 20_000  # report.json lists every hit up to this many (the histograms count them all)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def training_background(dataset: DatasetLayout) -> list[ManifestRecord]:
    """The recordings mining may read: background audio of the training split, nothing else."""
    return sorted((r for r in dataset.read_manifest() if r.label is Label.BACKGROUND and r.split is Split.TRAIN),
                  key=lambda r: r.path)


def condition_streams(dataset: DatasetLayout, config: WakelineConfig,
                      folder: Path) -> tuple[list[tuple[miner.Recording, str]], list[str]]:
    """Write one stream per speech condition, built from the training split's speech, into `folder`; return
    ([(recording, origin)], [conditions skipped and why])."""
    duration_s = config.mining.condition_stream_duration_s
    if duration_s <= 0:
        return [], []
    train = [r for r in dataset.read_manifest() if r.split is Split.TRAIN]
    speech = [read_wav_int16(dataset.root / r.path) for r in train
              if r.label is Label.NEGATIVE and r.family != OTHER_LANGUAGE_FAMILY]
    other = [read_wav_int16(dataset.root / r.path) for r in train
             if r.label is Label.NEGATIVE and r.family == OTHER_LANGUAGE_FAMILY]
    rirs = [read_wav_float(dataset.root / r.path) for r in train if r.label is Label.RIR]
    folder.mkdir(parents=True, exist_ok=True)
    out, skipped = [], []
    for i, kind in enumerate(config.data_prep.conditions.kinds):
        try:  # seeds apart from data_prep's validation and test streams (seed * 1_000_033 + 17 * i + 5)
            samples = conditions.condition_stream(kind, duration_s, config.data_prep.ambient, speech, other, rirs,
                                                  seed=config.seed * 1_000_033 + 17 * i + 900_011)
        except conditions.MissingSpeech as e:
            skipped.append(f"{e} (training split)")
            continue
        name = f"condition-train/{kind.value}.wav"
        write_wav(folder / name, samples)
        sha = hashlib.sha256(samples.tobytes()).hexdigest()
        out.append((miner.recording(name, folder / name, sha), f"condition-train:{kind.value}"))
    return out, skipped


def run(dataset_dir: Path, output_dir: Path, config: WakelineConfig, *, report_path: Path | None = None,
        workers: int | None = None, stop_after_chunks: int | None = None,
        show_progress: bool = True) -> dict[str, Any]:
    """Mine hard negatives into `output_dir` (a Dataset) and the HTML report into `report_path` (also written
    to `output_dir`); return the metadata (also `summary.json`). Tracked as one MLflow run."""
    from components.common.tracking import stage_run

    params = {"mining": config.mining.model_dump(mode="json"), "seed": config.seed}
    with stage_run("background_mining", f"wakeline/{config.wake_word}", params,
                   tags={"config_sha256": config.sha256()}) as tracker:
        metadata = _mine(Path(dataset_dir), Path(output_dir), config, report_path, workers, stop_after_chunks,
                         show_progress, tracker)
        tracker.log_metrics({"hours_scanned": metadata["hours_scanned"], "hits": metadata["hits"],
                             "hits_per_hour": metadata["hits_per_hour"], "hard_negatives": metadata["hard_negatives"],
                             "chunks_scanned": metadata["session"]["chunks_scanned"],
                             "chunks_reused": metadata["session"]["chunks_reused"]})
        tracker.log_artifact(Path(output_dir) / REPORT_JSON)
        tracker.log_artifact(Path(output_dir) / REPORT_HTML)
    metadata["mlflow_run_id"] = tracker.run_id
    return metadata


def _mine(dataset_dir: Path, output_dir: Path, config: WakelineConfig, report_path: Path | None,
          workers: int | None, stop_after_chunks: int | None, show_progress: bool, tracker) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wakeline-mining-") as tmp:
        return _mine_in(Path(tmp), dataset_dir, output_dir, config, report_path, workers, stop_after_chunks,
                        show_progress, tracker)


def _mine_in(tmp: Path, dataset_dir: Path, output_dir: Path, config: WakelineConfig, report_path: Path | None,
             workers: int | None, stop_after_chunks: int | None, show_progress: bool, tracker) -> dict[str, Any]:
    t0 = time.monotonic()
    m = config.mining
    dataset = DatasetLayout(dataset_dir)
    out = HardNegativesLayout(output_dir)
    background = training_background(dataset)
    inputs = {"dataset_manifest": sha256_file(dataset.manifest)}

    probe = None
    if m.previous_model.strip():
        local = resolve_previous_model(m.previous_model, tmp)
        scorer = load_scorer(local)
        source = m.previous_model.strip()
        inputs["previous_model"] = scorer.identity.split(":", 1)[1]
        _log(f"background_mining: scoring with the previous model {source} ({scorer.identity})")
    else:
        probe = get_probe(dataset, m, config.seed, m.threshold, show_progress=show_progress, log=_log)
        scorer, source = probe.scorer, None
    tracker.log_params({"scorer": {"kind": scorer.kind, "identity": scorer.identity, "source": source or "probe"}})

    scan_params = ScanParams(m.threshold, m.min_separation_s, m.chunk_s)
    g = scorer.geometry
    unique = {r.sha256: r for r in reversed(background)}  # the same audio twice is scanned (and counted) once
    recordings = [miner.recording(r.path, dataset.root / r.path, r.sha256)
                  for r in background if unique[r.sha256] is r]
    origin = {r.path: r.origin for r in background}
    streams, skipped = condition_streams(dataset, config, tmp / "streams")
    for rec, name in streams:
        recordings.append(rec)
        origin[rec.path] = name
    for why in skipped:
        _log(f"background_mining: no training speech stream for {why}")
    session = Session(Path(m.session_root), scorer.identity, scan_params, g)
    _log(f"background_mining: {len(recordings)} training recordings ({len(streams)} speech streams), "
         f"{sum(r.duration_s for r in recordings) / 60:.1f} min; session {session.dir}")
    outcome = miner.scan(recordings, scorer, scan_params, session, workers=workers,
                         stop_after_chunks=stop_after_chunks, show_progress=show_progress)

    hits = outcome.hits(recordings, scan_params, g)
    hours = sum(r.duration_s for r in recordings) / 3600
    kept, k = top_k(hits, hours, m.top_k_per_hour)

    # the hard negatives: clip_duration_s of audio ending where each kept window ends
    out.root.mkdir(parents=True, exist_ok=True)
    local_of = {r.path: r.local for r in recordings}
    clip_samples = int(round(m.clip_duration_s * SR))
    records: list[ManifestRecord] = []
    rows: list[dict[str, Any]] = []
    clips: dict[str, np.ndarray] = {}
    for rank, hit in enumerate(kept, start=1):
        start, end = hit.clip_span(clip_samples)
        samples = miner.read_span(local_of[hit.file], start, end)
        sha = hashlib.sha256(samples.tobytes()).hexdigest()
        path = out.clip_path(Label.HARD_NEGATIVE, sha)
        rel = out.relative(path)
        if rel not in clips:
            write_wav(path, samples)
            clips[rel] = samples
            records.append(ManifestRecord(rel, Label.HARD_NEGATIVE, Split.TRAIN, "mined", "mining",
                                          round(len(samples) / SR, 4), sha, None, f"{hit.file}@{start / SR:.3f}"))
        rows.append({"rank": rank, "score": round(hit.score, 6), "file": hit.file,
                     "source": origin[hit.file], "start_s": round(start / SR, 3),
                     "end_s": round(end / SR, 3), "output": hit.output, "clip": rel})
    records.sort(key=lambda r: (r.label.value, r.split.value, r.path))
    manifest_sha = write_jsonl(out.manifest, records)
    quarantine_sha = write_jsonl(out.quarantine, [])

    per_file = Counter(h.sha256 for h in hits)
    histogram = merge_histograms(c.histogram for per in outcome.results.values() for c in per.values())
    windows = int(histogram.sum())
    hits_per_hour = len(hits) / hours if hours > 0 else 0.0
    scan_rate = outcome.seconds_scanned_now / 3600 / (outcome.wall_s / 60) if outcome.wall_s > 0 else None
    session_info = {"key": session.key, "dir": str(session.dir), "created": session.created,
                    "chunks_total": outcome.chunks_total, "chunks_reused": outcome.chunks_reused,
                    "chunks_scanned": outcome.chunks_scanned, "scan_wall_s": round(outcome.wall_s, 2),
                    "hours_scanned_now": round(outcome.seconds_scanned_now / 3600, 5),
                    "hours_per_min_now": round(scan_rate, 2) if scan_rate else 0.0}
    scorer_info = {**describe(scorer), "source": source or "probe trained in this stage"}
    speech_streams = {"duration_s": m.condition_stream_duration_s, "conditions": [name for _, name in streams],
                      "skipped": skipped, "hits": sum(1 for h in hits if h.file in {r.path for r, _ in streams})}
    report = {
        "summary": {"files": len(recordings), "hours_scanned": round(hours, 6), "windows_scored": windows,
                    "hits": len(hits), "hits_listed": min(len(hits), MAX_LISTED_HITS),
                    "hits_per_hour": round(hits_per_hour, 3), "top_k": k, "kept": len(kept),
                    "hard_negatives": len(records)},
        "params": {**scan_params.as_dict(), "top_k_per_hour": m.top_k_per_hour,
                   "clip_duration_s": m.clip_duration_s},
        "scorer": scorer_info, "probe": probe.info if probe else None, "session": session_info,
        "speech_streams": speech_streams,
        "histogram": {"edges": np.linspace(0, 1, HIST_BINS + 1).round(4).tolist(), "counts": histogram.tolist()},
        "files": [{"path": r.path, "source": origin[r.path], "sha256": r.sha256,
                   "duration_s": round(r.duration_s, 3),
                   "hits": per_file[r.sha256]} for r in recordings],
        "hit_histogram": {"edges": np.linspace(0, 1, HIST_BINS + 1).round(4).tolist(),
                          "counts": np.histogram([h.score for h in hits], bins=HIST_BINS, range=(0, 1))[0].tolist()},
        "kept": rows,
        "hits": [{"file": h.file, "end_s": round(h.end_s, 3), "score": round(h.score, 6)}
                 for h in sorted(hits, key=lambda h: (h.file, h.output))[:MAX_LISTED_HITS]],
    }
    (out.root / REPORT_JSON).write_text(dumps(report, indent=2) + "\n")
    page = report_html(report, clips)
    (out.root / REPORT_HTML).write_text(page, encoding="utf-8")
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out.root / REPORT_HTML, report_path)

    lineage = Lineage(config.sha256(), code_version(), inputs,
                      {"manifest.jsonl": manifest_sha, "quarantine.jsonl": quarantine_sha,
                       REPORT_JSON: sha256_file(out.root / REPORT_JSON)})
    metadata = {"wake_word": config.wake_word, "clips": len(records), "counts": {Label.HARD_NEGATIVE.value:
                                                                              {Split.TRAIN.value: len(records)}},
                "hard_negatives": len(records), "hours_scanned": round(hours, 6), "hits": len(hits),
                "hits_per_hour": round(hits_per_hour, 3), "top_k": k, "threshold": m.threshold,
                "scorer": scorer_info, "probe_trained": bool(probe and probe.trained), "session": session_info,
                "speech_streams": speech_streams,
                "manifest_sha256": manifest_sha, "wall_s": round(time.monotonic() - t0, 2), **lineage.as_metadata()}
    atomic.write_text(out.summary, dumps(metadata, indent=2, sort_keys=True) + "\n")
    _log(f"background_mining: {len(hits)} hits in {hours * 60:.1f} min ({hits_per_hour:.1f}/h), kept {len(records)}; "
         f"{outcome.chunks_scanned} chunks scanned, {outcome.chunks_reused} reused")
    return metadata


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig, *,
              show_progress: bool = True) -> StageResult:
    """The stage entry (components.common.stages): `dataset` in; `hard_negatives` and the HTML `report` out."""
    return StageResult({"hard_negatives": run(inputs["dataset"], outputs["hard_negatives"], config,
                                              report_path=outputs["report"], show_progress=show_progress)})
