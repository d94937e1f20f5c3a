"""cascade_evaluation stage entry: the quantized model as the on-device sentry, a teacher as the server-side
judge, both on the test split (the sentry in TFLite-Micro on the device's path, as verification runs it; the
judge on the features around each activation) -> `cascade.json`, `report.html`, scalar metrics."""
from __future__ import annotations

import html
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from components.cascade_evaluation.cascade import (CascadeResult, SegmentWindow, Stream, evaluate_cascade,
                                        judge_cutoff_grid, sentry_cutoff_grid)
from components.common.artifacts import (CASCADE_FILE, CASCADE_SCHEMA, EsphomeManifest, FeatureStoreLayout, Kind,
                                         Lineage, ModelLayout, Split, code_version, find, sha256_file)
from components.common.config import WakelineConfig
from components.common.stages import StageResult
from components.common.jsonio import dumps
from components.common import atomic

REPORT_FILE = "report.html"
JUDGE_FOLDER = "judge/"  # where publish puts the judge model, beside the sentry
STREAM_NOTE = ("The judge scored the stream's own features around each activation, so the frontend's state (noise "
               "estimate, PCAN gain) continued from the stream; a judge server runs a fresh frontend on the audio it "
               "receives, whose noise estimate settles over the first few hundred ms of the segment.")


class CascadeError(ValueError):
    pass


def sentry_streams(model: Path, manifest: EsphomeManifest, store: FeatureStoreLayout,
                   split: Split = Split.TEST) -> tuple[list[Stream], list[Stream]]:
    """A split's positive clips (each from fresh state) and ambient recordings through the sentry in
    TFLite-Micro with ESPHome's integer feature mapping: (positives, ambient)."""
    from components.runtime.evaluate import EvalAudio
    from components.runtime.tflm import TflmStreamer

    audio = EvalAudio.from_store(store, split)
    tflm = TflmStreamer(model, manifest.tensor_arena_size)
    return ([Stream(tflm(raw), raw) for raw in audio.positives], [Stream(tflm(raw), raw) for raw in audio.ambient])


def chosen_on_validation(validation: CascadeResult, test: CascadeResult) -> CascadeResult:
    """The test result, with the operating point chosen on validation (as the shipped cutoff is calibrated):
    choosing it on the test grid would report the best of many tries on the very audio it is measured on."""
    picked = validation.chosen
    test.extra["chosen_on_validation"] = asdict(picked) if picked else None
    if picked is None:
        test.chosen, test.chosen_reason = None, f"on validation: {validation.chosen_reason}"
    else:
        test.chosen = test.point(picked.sentry_cutoff, picked.judge_cutoff)
        test.chosen_reason = (f"chosen on validation ({validation.chosen_reason}), measured on test")
    return test


def _judge_facts(judge, role: str) -> dict[str, Any]:
    model_file = Path(judge.source)
    layout = ModelLayout(model_file.parent)
    spec = layout.read_spec().get("spec", {}) if layout.spec.is_file() else {}
    return {"role": role, "name": spec.get("name", model_file.parent.name), "architecture": spec.get("architecture"),
            "kind": judge.kind, "model_file": model_file.name, "sha256": sha256_file(model_file),
            "calibrated_cutoff": judge.cutoff, "input_frames": spec.get("input_frames"),
            "stride_frames": judge.settings.stride_frames, "sliding_window": judge.settings.sliding_window}


def run(config: WakelineConfig, tflite_dir: Path, judge_model_dir: Path, features_dir: Path, output_dir: Path,
        *, judge_role: str | None = None) -> dict[str, Any]:
    """Evaluate the cascade; write `cascade.json` and `report.html` into `output_dir`; return the document."""
    from components.runtime.judge import load_judge

    t0 = time.monotonic()
    settings = config.cascade
    role = judge_role or settings.judge.value
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, manifest_path = find(Path(tflite_dir), Kind.ESPHOME_MODEL).pair
    manifest = EsphomeManifest.read(manifest_path)
    shipped = float(manifest.probability_cutoff)
    judge = load_judge(Path(judge_model_dir))
    store = FeatureStoreLayout(Path(features_dir))
    window = SegmentWindow.from_seconds(settings.judge_context_s, settings.judge_after_s)
    t_judge = time.monotonic()
    results = {}
    for split in (Split.VALIDATION, Split.TEST):
        positives, ambient = sentry_streams(model, manifest, store, split)
        if not positives:
            raise CascadeError(f"{features_dir}: the {split.value} split has no positive clips; the cascade's FRR "
                               f"cannot be measured")
        results[split] = evaluate_cascade(
            positives, ambient, lambda frames: judge.judge_features(frames).score, shipped_cutoff=shipped,
            sentry_cutoffs=sentry_cutoff_grid(shipped, settings.sentry_cutoff_floor, settings.sentry_cutoff_step),
            judge_cutoffs=judge_cutoff_grid(settings.judge_cutoff_step, judge.cutoff), window=window,
            target_fa_per_hour=config.target_false_accepts_per_hour, judge_threshold=judge.threshold_at)
    judge_s = time.monotonic() - t_judge
    result = chosen_on_validation(results[Split.VALIDATION], results[Split.TEST])
    chosen = result.chosen
    doc = {"schema": CASCADE_SCHEMA, "wake_word": config.wake_word,
           "sentry": {"tflite": model.name, "manifest": manifest_path.name, "sha256": sha256_file(model),
                      "shipped_cutoff": shipped},
           "judge": _judge_facts(judge, role),
           "settings": {"judge_context_s": settings.judge_context_s, "judge_after_s": settings.judge_after_s,
                        "sentry_cutoff_floor": settings.sentry_cutoff_floor,
                        "sentry_cutoff_step": settings.sentry_cutoff_step,
                        "judge_cutoff_step": settings.judge_cutoff_step,
                        "target_fa_per_hour": config.target_false_accepts_per_hour},
           # what a deployment needs: the device's cutoff, what it sends, and the judge's cutoff
           "operating_point": None if chosen is None else {
               "sentry_cutoff": chosen.sentry_cutoff, "judge_cutoff": chosen.judge_cutoff,
               "judge_context_s": settings.judge_context_s, "judge_after_s": settings.judge_after_s,
               "judge": JUDGE_FOLDER, "frr": chosen.frr, "fa_per_hour": chosen.fa_per_hour},
           "reduction_definition": ("sentry-alone FA/h at its shipped cutoff / the lowest cascade FA/h among grid "
                                    "points with an equal or better FRR; lower_bound when that cascade FA/h is 0 "
                                    "(counted as one false accept over the test hours)"),
           **result.as_dict(), "note": STREAM_NOTE,
           "ambient_streams": len(ambient), "judge_wall_s": round(judge_s, 2),
           "code_version": code_version(), "config_sha256": config.sha256(),
           "wall_s": round(time.monotonic() - t0, 2)}
    atomic.write_text(out / CASCADE_FILE, dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")
    (out / REPORT_FILE).write_text(report_html(doc, result))
    return doc


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def scalars(doc: dict[str, Any]) -> dict[str, float]:
    """What the KFP UI shows as scalar metrics: finite numbers only (a reduction that is undefined is left out)."""
    alone, chosen = doc["sentry_alone"], doc.get("chosen") or {}
    out = {"sentry_cutoff": alone["cutoff"], "sentry_frr": alone["frr"], "sentry_fa_per_hour": alone["fa_per_hour"],
           "cascade_sentry_cutoff": chosen.get("sentry_cutoff"), "cascade_judge_cutoff": chosen.get("judge_cutoff"),
           "cascade_frr": chosen.get("frr"), "cascade_fa_per_hour": chosen.get("fa_per_hour"),
           "cascade_judge_requests_per_hour": chosen.get("judge_requests_per_hour"),
           "fa_per_hour_reduction": doc.get("fa_per_hour_reduction"),
           "fa_per_hour_reduction_is_lower_bound": (float(doc["reduction_kind"] == "lower_bound")
                                                    if doc.get("fa_per_hour_reduction") is not None else None),
           "ambient_hours": doc["ambient_hours"], "judged_segments": doc["judged_segments"], "wall_s": doc["wall_s"]}
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def artifact_metadata(doc: dict[str, Any], cascade_path: Path, features_dir: Path) -> dict[str, Any]:
    """The cascade artifact's metadata: lineage (its file, the sentry, the judge, the feature store it was
    evaluated on) and the operating points a person wants to see."""
    inputs = {"tflite_model": doc["sentry"]["sha256"], "judge_model": doc["judge"]["sha256"]}
    meta = Path(features_dir) / FeatureStoreLayout.METADATA
    if meta.is_file():
        inputs["features_metadata"] = sha256_file(meta)
    alone, chosen = doc["sentry_alone"], doc.get("chosen") or {}
    facts = {"judge": doc["judge"]["role"], "judge_name": doc["judge"]["name"],
             "sentry_cutoff": alone["cutoff"], "sentry_frr": alone["frr"], "sentry_fa_per_hour": alone["fa_per_hour"],
             "cascade_sentry_cutoff": chosen.get("sentry_cutoff"), "cascade_judge_cutoff": chosen.get("judge_cutoff"),
             "cascade_frr": chosen.get("frr"), "cascade_fa_per_hour": chosen.get("fa_per_hour"),
             "judge_context_s": doc["settings"]["judge_context_s"], "judge_after_s": doc["settings"]["judge_after_s"],
             "fa_per_hour_reduction": doc.get("fa_per_hour_reduction"), "reduction_kind": doc["reduction_kind"],
             "ambient_hours": doc["ambient_hours"]}
    facts = {k: v for k, v in facts.items() if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
    lineage = Lineage(doc["config_sha256"], doc["code_version"], inputs, {CASCADE_FILE: sha256_file(cascade_path)})
    return {**lineage.as_metadata(), **facts}


# --------------------------------------------------------------------------------------------------
# the report


def _fmt_fa(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _plot_png_base64(result: CascadeResult) -> str:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s_cuts, j_cuts = result.sentry_cutoffs, result.judge_cutoffs
    frr = np.array([[result.point(s, j).frr for j in j_cuts] for s in s_cuts])
    fa = np.array([[result.point(s, j).fa_per_hour for j in j_cuts] for s in s_cuts])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    extent = dict(aspect="auto", origin="lower", interpolation="nearest")
    for ax, values, title, cmap in ((axes[0], frr, "cascade FRR (test clips)", "viridis"),
                                    (axes[1], np.log10(1 + np.nan_to_num(fa)), "cascade log10(1 + FA/h)", "magma")):
        im = ax.imshow(values, cmap=cmap, **extent)
        ax.set_xticks(range(len(j_cuts)), [f"{c:g}" for c in j_cuts], rotation=90, fontsize=7)
        ax.set_yticks(range(len(s_cuts)), [f"{c:g}" for c in s_cuts], fontsize=7)
        ax.set_xlabel("judge cutoff")
        ax.set_ylabel("sentry cutoff")
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
        if result.chosen is not None:
            ax.plot(j_cuts.index(result.chosen.judge_cutoff), s_cuts.index(result.chosen.sentry_cutoff), marker="*",
                    color="red", markersize=14, markeredgecolor="white")
    ax = axes[2]
    ax.plot([p.fa_per_hour for p in result.grid], [p.frr for p in result.grid], ".", color="0.75",
            label="cascade grid points")
    ax.plot([p.fa_per_hour for p in result.sentry], [p.frr for p in result.sentry], "-o", markersize=3,
            label="sentry alone (over its cutoffs)")
    alone = result.sentry_alone
    ax.plot([alone.fa_per_hour], [alone.frr], "s", color="black", label=f"sentry alone, shipped {alone.cutoff:g}")
    if result.chosen is not None:
        ax.plot([result.chosen.fa_per_hour], [result.chosen.frr], "*", color="red", markersize=14,
                label="chosen cascade point")
    ax.axvline(result.target_fa_per_hour, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=0.1)
    finite = [v for v in [p.fa_per_hour for p in result.grid] + [result.target_fa_per_hour] if math.isfinite(v)]
    ax.set_xlim(-0.03, max(finite) * 2)  # a point at 0 FA/h stays visible
    ax.set_xlabel("false accepts per hour (test ambient)")
    ax.set_ylabel("false-reject rate (test clips)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=85)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _row(name: str, p: dict[str, Any] | None, sentry_cutoff: Any, judge_cutoff: Any, requests: Any) -> str:
    if p is None:
        return f"<tr><td>{html.escape(name)}</td><td colspan=6>none</td></tr>"
    return (f"<tr><td>{html.escape(name)}</td><td>{sentry_cutoff}</td><td>{judge_cutoff}</td><td>{p['frr']:.1%}</td>"
            f"<td>{p['false_accepts']}</td><td>{_fmt_fa(p['fa_per_hour'])}</td><td>{requests}</td></tr>")


def report_html(doc: dict[str, Any], result: CascadeResult) -> str:
    alone, chosen, red = doc["sentry_alone"], doc.get("chosen"), doc.get("reduction_point")
    judge, st = doc["judge"], doc["settings"]
    minutes = doc["ambient_hours"] * 60
    rows = _row("sentry alone (shipped cutoff)", alone, alone["cutoff"], "-", _fmt_fa(alone["fa_per_hour"]))
    if chosen is not None:
        rows += _row("cascade, chosen", chosen, chosen["sentry_cutoff"], chosen["judge_cutoff"],
                     _fmt_fa(chosen["judge_requests_per_hour"]))
    else:
        rows += _row("cascade, chosen", None, "", "", "")
    if red is not None:
        rows += _row("cascade, lowest FA/h at equal or better FRR", red, red["sentry_cutoff"], red["judge_cutoff"],
                     _fmt_fa(red["judge_requests_per_hour"]))
    value, kind = doc.get("fa_per_hour_reduction"), doc.get("reduction_kind")
    if value is None:
        reduction = f"The FA/h reduction is not defined here: {doc.get('reduction_reason')}."
    elif kind == "lower_bound":
        reduction = (f"The judge cuts false accepts at least {value:.1f}-fold at an equal or better FRR (a lower "
                     f"bound: {doc.get('reduction_reason')}).")
    else:
        reduction = f"The judge cuts false accepts {value:.1f}-fold at an equal or better FRR."
    if chosen is not None:
        chosen_text = (f"At the FA/h target {st['target_fa_per_hour']:g}, the cascade runs the device at cutoff "
                       f"{chosen['sentry_cutoff']:g} and the judge at {chosen['judge_cutoff']:g}: FRR "
                       f"{chosen['frr']:.1%} at {_fmt_fa(chosen['fa_per_hour'])} FA/h, against the sentry alone's "
                       f"FRR {alone['frr']:.1%} at {_fmt_fa(alone['fa_per_hour'])} FA/h (cutoff {alone['cutoff']:g}). "
                       f"The device would ask the judge {_fmt_fa(chosen['judge_requests_per_hour'])} times per hour "
                       f"of ambient audio.")
    else:
        chosen_text = f"No cascade operating point was chosen: {doc['chosen_reason']}."
    plot = f"<img alt='cascade FRR and FA/h over the grid' src='data:image/png;base64,{_plot_png_base64(result)}'/>"
    return (f"<!doctype html><meta charset=utf-8><title>wakeline cascade</title>"
            f"<style>body{{font-family:sans-serif;max-width:1300px}}td,th{{padding:2px 8px;text-align:left}}</style>"
            f"<h1>Cascade evaluation</h1>"
            f"<p>The sentry is the shipped model ({html.escape(doc['sentry']['tflite'])}, TFLite-Micro on the "
            f"device's path); the judge is {html.escape(judge['role'])} ({html.escape(str(judge['name']))}, "
            f"{html.escape(str(judge['kind']))}, calibrated cutoff {judge['calibrated_cutoff']:g}). On each "
            f"detection the device sends {st['judge_context_s']:g} s before it and {st['judge_after_s']:g} s after "
            f"it; the judge accepts when the peak of its sliding-window mean exceeds the judge cutoff. Measured on "
            f"{doc['positives']} test clips and {minutes:.1f} min of test ambient audio; the judge scored "
            f"{doc['judged_segments']} segments.</p>"
            f"<p>{html.escape(chosen_text)}</p><p>{html.escape(reduction)}</p>"
            f"<table><tr><th>operating point</th><th>sentry cutoff</th><th>judge cutoff</th><th>FRR</th>"
            f"<th>false accepts</th><th>FA/h</th><th>judge requests/h</th></tr>{rows}</table>"
            f"<h2>Over the grid</h2>{plot}"
            f"<p>The red star is the chosen point, picked on the validation split (the lowest FRR among grid points "
            f"meeting the FA/h target there; ties: lower FA/h, then the higher sentry cutoff) and measured here on "
            f"test, as the shipped cutoff is calibrated on validation and measured on test.</p>"
            f"<h2>Limits</h2><p>{html.escape(STREAM_NOTE)}</p>")


# --------------------------------------------------------------------------------------------------
# the pipeline's view


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig) -> StageResult:
    """The stage entry (components.common.stages): `tflite_model`, `teacher_a`, `teacher_b`, `features` in; the
    judge is the teacher `cascade.judge` names. `cascade` (the document) and the HTML `report` out."""
    import shutil
    import tempfile

    from components.common.tracking import stage_run

    role = config.cascade.judge.value
    if role not in inputs:
        raise CascadeError(f"cascade.judge is {role!r}, but only {sorted(inputs)} were given")
    params = {"judge": role, **config.cascade.model_dump(mode="json"),
              "target_fa_per_hour": config.target_false_accepts_per_hour}
    with stage_run("cascade_evaluation", f"wakeline/{config.wake_word}", params,
                   tags={"config_sha256": config.sha256()}) as tracker, tempfile.TemporaryDirectory() as tmp:
        doc = run(config, inputs["tflite_model"], inputs[role], inputs["features"], Path(tmp), judge_role=role)
        metrics = scalars(doc)
        tracker.log_metrics(metrics)
        tracker.log_artifact(Path(tmp))
        for src, dst in ((Path(tmp) / CASCADE_FILE, outputs["cascade"]), (Path(tmp) / REPORT_FILE, outputs["report"])):
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return StageResult({"cascade": artifact_metadata(doc, Path(outputs["cascade"]), inputs["features"])}, metrics)
