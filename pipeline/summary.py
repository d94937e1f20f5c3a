"""The one-screen summary printed at the end of a local run."""
from __future__ import annotations

import json

import os
from pathlib import Path

from components.common.artifacts import BlessingLayout, Label, Split, read_blessing
from pipeline.local import LOGS_DIR, LocalRun


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def format_summary(run: LocalRun) -> str:
    md = run.dataset_metadata
    counts, hours = md.get("counts", {}), md.get("hours", {})
    splits = [s.value for s in Split]
    lines = [
        f"wakeline run {run.run_id}  (preset {run.preset}, wake word {md.get('wake_word')!r}, "
        f"{_duration(run.wall_s)})",
        "",
        f"Dataset   {_rel(run.run_dir / 'outputs' / 'dataset')}",
        f"          -> {_rel(run.dataset_path)}",
        "",
        f"  {'label':<22}" + "".join(f"{s:>12}" for s in splits) + f"{'hours':>10}",
    ]
    for label in Label:
        if label.value not in counts:
            continue
        row = counts[label.value]
        total_h = sum(hours.get(label.value, {}).values())
        lines.append(f"  {label.value:<22}" + "".join(f"{int(row.get(s, 0)):>12}" for s in splits)
                     + f"{total_h:>10.3f}")
    vps = md.get("voices_per_split", {})
    lines.append("  voices/speakers       " + "".join(f"{int(vps.get(s, 0)):>12}" for s in splits))
    reasons = md.get("quarantine_by_reason", {})
    detail = ", ".join(f"{int(n)} {r}" for r, n in reasons.items())
    lines += [
        "",
        f"Quarantined {int(md.get('quarantined', 0))} input(s){': ' + detail if detail else ''}"
        f"  -> {_rel(run.dataset_path / 'quarantine.jsonl')}",
        f"Manifest    {_rel(run.dataset_path / 'manifest.jsonl')}  sha256 {str(md.get('manifest_sha256'))[:16]}…",
    ]
    if "features" in run.outputs:
        lines += ["", *_features_lines(run)]
    if "hard_negatives" in run.outputs:
        md = run.outputs["hard_negatives"].metadata
        lines += ["", f"Mining    {float(md.get('hours_scanned', 0)) * 60:.1f} min of training background scanned, "
                      f"{int(md.get('hits', 0))} hits above {md.get('threshold')} -> {int(md.get('hard_negatives', 0))} "
                      f"hard negatives  -> {_rel(run.run_dir / 'outputs' / 'hard_negatives')}"]
    models = sorted((n for n in run.outputs if n.startswith("teacher_") or n == "student"), key=lambda n: n == "student")
    if models:
        lines.append("")
        for name in models:
            md = run.outputs[name].metadata
            val = md.get("validation", {})
            role = "Student" if name == "student" else "Teacher"
            lines.append(f"{role} {md.get('name')} ({md.get('architecture')}, {int(md.get('parameters', 0)):,} params, "
                         f"{int(md.get('steps', 0))} steps): validation FRR {float(val.get('frr', float('nan'))):.1%} "
                         f"at {float(val.get('fa_per_hour', float('nan'))):.2f} FA/h (cutoff {val.get('cutoff')}) "
                         f"-> {_rel(run.run_dir / 'outputs' / name)}")
    if "esphome_model" in run.outputs:
        lines += ["", *_esphome_lines(run)]
        lines += _cascade_lines(run)
        lines += _published_lines(run)
    lines += ["", f"Run record  {_rel(run.run_dir / 'summary.json')}, config {_rel(run.run_dir / 'config.yaml')}, "
                  f"task logs {_rel(run.run_dir / LOGS_DIR)}/<task>.log"]
    return "\n".join(lines)


def _features_lines(run: LocalRun) -> list[str]:
    md = run.outputs["features"].metadata
    sets = md.get("sets", {})
    epochs = sorted(k for k in sets if k.startswith("train/epoch-"))
    snr = md.get("snr_schedule", {}).get("epochs", {})
    first, last = (snr.get(epochs[0]), snr.get(epochs[-1])) if epochs else (None, None)
    per_split = {s.value: int(sets.get(f"{s.value}/epoch-000", {}).get("clips", 0)) for s in Split}
    ambient_frames = sum(int(sets.get(f"{s}/ambient", {}).get("frames", 0)) for s in ("validation", "test"))
    lines = [
        f"Features  {_rel(run.run_dir / 'outputs' / 'features')}  ({md.get('array_backend')}, "
        f"{int(md.get('shards', 1))} shard(s), {int(md.get('frames_per_clip', 0))} frames x 40 per clip)",
        f"  train: {len(epochs)} augmentation epoch(s) x {per_split['train']} clips; validation "
        f"{per_split['validation']}, test {per_split['test']} clips; ambient for FA/h "
        f"{ambient_frames / 100 / 60:.1f} min",
    ]
    if first and last:
        lines.append(f"  SNR curriculum ({md['snr_schedule'].get('shape')}): {first[0]:g}..{first[1]:g} dB "
                     f"-> {last[0]:g}..{last[1]:g} dB")
    return lines


def _esphome_lines(run: LocalRun) -> list[str]:
    md = run.outputs["esphome_model"].metadata
    parity = md.get("parity", {})
    lines = [f"ESPHome    {_rel(run.outputs['esphome_model'].path / str(md.get('tflite')))} "
             f"({int(md.get('file_size_bytes', 0)):,} B, arena {int(md.get('tensor_arena_size', 0)):,} B, "
             f"cutoff {md.get('probability_cutoff')})",
             f"  parity: float streaming vs Keras {float(parity.get('float_stream_vs_keras_max_abs', 0)):.1e}; "
             f"TFLite-Micro vs float mean {float(parity.get('tflm_vs_float_mean_lsb', 0)):.1f} LSB"]
    report = run.outputs.get("verification")
    if report is not None:
        blessing = report.path.parent / BlessingLayout.PIPELINE
        if blessing.is_file():
            verdict = read_blessing(blessing)
            b = verdict.get("behaviour", {})
            head = "BLESSED" if verdict.get("blessed") else "NOT BLESSED (" + "; ".join(verdict.get("reasons", [])) + ")"
            lines.append(f"  verification: {head}; mixed test clips FRR {float(b.get('frr', float('nan'))):.1%} at "
                         f"{float(b.get('fa_per_hour', float('nan'))):.2f} FA/h over "
                         f"{float(b.get('ambient_hours', 0)) * 60:.1f} min of noise/music/babble")
            if b.get("breakdown"):  # per voice family and per condition: what the gate judged
                lines += _breakdown_lines(b["breakdown"])
        lines.append(f"  verification report: {_rel(report.path)}")
    return lines


def _breakdown_lines(t: dict) -> list[str]:
    """Two lines: the worst cells with FRR per family, then FA/h per condition (the full tables are in the report)."""
    def num(v, fmt=".2f"):
        return "n/a" if v is None else format(v, fmt)

    total = next((c for c in t["frr"] if c["family"] == "all" and c["condition"] == "all"), None)
    worst = (f"    worst condition {t.get('worst_fa_condition')} {num(t.get('worst_fa_per_hour'))} FA/h; "
             f"all test positives FRR {num(total and total['frr'], '.1%')}")
    if t.get("worst_heldout_family"):
        worst += f"; held-out {t['worst_heldout_family']} FRR {num(t.get('worst_heldout_frr'), '.1%')}"
    fa = "    FA/h (95% upper): " + ", ".join(f"{c['condition']} {num(c['fa_per_hour'], '.1f')} "
                                            f"({num(c['upper_95_per_hour'], '.0f')})"
                                            for c in t["fa"] if c["condition"] != "all")
    frr = "; FRR per family: " + ", ".join(f"{c['family']}{'*' if c['family'] in t.get('heldout_families', []) else ''}"
                                          f" {num(c['frr'], '.0%')}" for c in t["frr"]
                                          if c["condition"] == "all" and c["family"] != "all")
    return [worst + frr, fa]


def _cascade_lines(run: LocalRun) -> list[str]:
    """The sentry alone vs the cascade with its judge, and the FA/h reduction (components/cascade_evaluation)."""
    report = run.outputs.get("cascade_report")
    path = report.path.parent / "cascade" if report is not None else None
    if path is None or not path.is_file():
        return []
    doc = json.loads(path.read_text())
    alone, chosen, judge = doc["sentry_alone"], doc.get("chosen"), doc.get("judge", {})
    head = (f"  cascade (judge {judge.get('role')} {judge.get('name')}): sentry alone FRR {alone['frr']:.1%} at "
            f"{float(alone['fa_per_hour']):.2f} FA/h (cutoff {alone['cutoff']:g})")
    if chosen is None:
        head += f" -> no cascade point chosen ({doc.get('chosen_reason')})"
    else:
        head += (f" -> cascade FRR {chosen['frr']:.1%} at {float(chosen['fa_per_hour']):.2f} FA/h (sentry "
                 f"{chosen['sentry_cutoff']:g}, judge {chosen['judge_cutoff']:g}, "
                 f"{float(chosen['judge_requests_per_hour']):.0f} judge requests/h)")
    value, kind = doc.get("fa_per_hour_reduction"), doc.get("reduction_kind")
    if value is None:
        tail = f"FA/h reduction: not defined ({doc.get('reduction_reason')})"
    else:
        tail = f"FA/h reduction at equal or better FRR: {'>= ' if kind == 'lower_bound' else ''}{float(value):.1f}x"
    return [head, f"  {tail}", f"  cascade report: {_rel(report.path)}"]


def published_record(run_dir: Path) -> dict | None:
    """The publish task's record (its artifact metadata), or None when publish did not run (not blessed)."""
    for out in sorted(Path(run_dir).glob("kfp/*/publish/executor_output.json")):
        for artifact in json.loads(out.read_text()).get("artifacts", {}).get("record", {}).get("artifacts", []):
            return dict(artifact.get("metadata") or {})
    return None


def _published_lines(run: LocalRun) -> list[str]:
    record = published_record(run.run_dir)
    if record is None:
        return ["Published   nothing (publish runs only for a blessed model)"]
    location = str(record.get("location", ""))
    if location.startswith("s3://"):
        where = location
    else:  # a relative store is the stages' working directory's (the containers' for the docker runner)
        where = _rel(run.workdir / location if run.workdir and not Path(location).is_absolute() else Path(location))
    again = "  (already there: the same model)" if record.get("already_published") else ""
    lines = [f"Published   {where}{again}  -> wakeline lineage {where}"]
    name, status = record.get("registered_model"), record.get("registry_status")
    if record.get("model_version"):
        word = str(run.dataset_metadata.get("wake_word", ""))
        lines.append(f"  MLflow: {name} v{record['model_version']} (alias {record.get('alias')}"
                     f"{', reused' if status == 'reused' else ''}); to deploy: wakeline promote --wake-word {word!r}")
    else:
        lines.append(f"  MLflow: not registered ({record.get('registry_reason') or status})")
    return lines
