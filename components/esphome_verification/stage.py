"""esphome_verification stage entry: contract checks + behaviour on the device runtime -> report + blessing."""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from components.common.artifacts import BlessingLayout, EsphomeManifest, FeatureStoreLayout, Kind, Split, find
from components.common.config import WakelineConfig
from components.common.metrics import OperatingPoint
from components.common.stages import StageResult
from components.common.evaluation import ALL, Breakdown, breakdown, format_text, store_streams
from components.esphome_verification.contract import Check, verify_contract
from components.runtime.evaluate import (EvalAudio, VerifyInputError, audio_files, audio_streams, behaviour,
                                         behaviour_of, budget_reasons, score)
from components.runtime.tflm import TflmStreamer
from components.common.jsonio import dumps
from components.common import atomic


@dataclass
class Verdict:
    blessed: bool
    generation: str
    checks: list[Check]
    reasons: list[str] = field(default_factory=list)
    behaviour: dict[str, Any] = field(default_factory=dict)
    roc: list[tuple[float, float, float]] = field(default_factory=list)  # (cutoff, FPR on negative clips, TPR)
    contract_passed: bool = False  # every contract check and the device budget; not a blessing on its own

    def scalars(self) -> dict[str, float]:
        """What the KFP UI shows as scalar metrics."""
        b = self.behaviour
        out = {"blessed": float(self.blessed), "checks_failed": float(sum(not c.passed for c in self.checks))}
        out.update({f"test_{k}": float(b[k]) for k in ("frr", "fa_per_hour", "cutoff", "ambient_hours")
                    if b.get(k) is not None})
        t = b.get("breakdown")
        if t:
            cells = {f"fa_per_hour_{c['condition']}": c["fa_per_hour"] for c in t["fa"]}
            cells.update({f"fa_per_hour_upper95_{c['condition']}": c["upper_95_per_hour"] for c in t["fa"]})
            cells.update({f"frr_family_{c['family'].replace(':', '_')}": c["frr"] for c in t["frr"]
                          if c["condition"] == ALL})
            cells.update({f"frr_condition_{c['condition']}": c["frr"] for c in t["frr"]
                          if c["family"] == ALL and c["condition"] != ALL})
            cells.update(worst_condition_fa_per_hour=t["worst_fa_per_hour"], heldout_family_frr=t["worst_heldout_frr"])
            # KFP's metrics cannot carry NaN: a cell with nothing measured (None) is left out; the report names it
            out.update({k: float(v) for k, v in cells.items() if v is not None})
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def roc_curve(self) -> tuple[list[float], list[float], list[float]]:
        """(fpr, tpr, thresholds) for `ClassificationMetrics.log_roc_curve`."""
        return [r[1] for r in self.roc], [r[2] for r in self.roc], [r[0] for r in self.roc]

    def as_dict(self) -> dict[str, Any]:
        return {"blessed": self.blessed, "contract_passed": self.contract_passed, "generation": self.generation,
                "reasons": self.reasons,
                "checks": [c.as_dict() for c in self.checks], "behaviour": self.behaviour}


def check_feature_store(path: Path) -> FeatureStoreLayout:
    """A feature store with a test split, or VerifyInputError saying what the folder is not."""
    path = Path(path)
    if not path.is_dir():
        raise VerifyInputError(f"--features {path}: no such folder")
    store = FeatureStoreLayout(path)
    test_set = store.set_dir(Split.TEST, 0) / store.OFFSETS
    if not (path / FeatureStoreLayout.METADATA).is_file() or not test_set.is_file():
        raise VerifyInputError(f"--features {path}: not a feature store with a test split (no {store.METADATA} and "
                               "test/epoch-000/); give a run's features folder, e.g. runs/<run-id>/outputs/features")
    return store


def gate_reasons(b: Breakdown, target_fa_per_hour: float, max_frr: float) -> list[str]:
    """Why the per-family, per-condition results do not bless: the worst FA/h condition over the target, FRR
    over all test positives over the limit, any held-out family over the limit, or nothing measured (no
    ambient audio, a condition with no hours, no positives, a figure that is not a finite number)."""
    reasons = []
    worst = b.worst_fa()
    if worst is None:
        reasons.append("no test ambient audio was measured: FA/h unknown")
    elif not worst.hours > 0:
        reasons.append(f"test condition {worst.condition!r} has no audio measured (0 hours): FA/h unknown")
    elif not math.isfinite(worst.fa_per_hour):
        reasons.append(f"FA/h on test condition {worst.condition!r} is not a number ({worst.fa_per_hour})")
    elif not worst.fa_per_hour <= target_fa_per_hour:
        reasons.append(f"FA/h {worst.fa_per_hour:.2f} on test condition {worst.condition!r} ({worst.false_accepts} in "
                       f"{worst.hours * 60:.1f} min) exceeds the target {target_fa_per_hour}")
    overall = b.frr_cell(ALL, ALL)
    if overall is None or not overall.clips:
        reasons.append("no test positives were measured: FRR unknown")
    elif not overall.frr <= max_frr:
        reasons.append(f"FRR {overall.frr:.1%} over all {overall.clips} test positives exceeds the limit {max_frr:.0%}")
    for family in b.heldout_families:
        cell = b.frr_cell(family, ALL)
        if cell is None or not cell.clips:
            reasons.append(f"held-out family {family!r} has no test positives: its FRR is unknown")
        elif not cell.frr <= max_frr:
            reasons.append(f"FRR {cell.frr:.1%} on held-out family {family!r} ({cell.clips} clips) exceeds the "
                           f"limit {max_frr:.0%}")
    if not math.isfinite(b.cutoff):
        reasons.append(f"the cutoff is not a number ({b.cutoff})")
    return reasons


@dataclass(frozen=True)
class Gate:
    """What a blessing requires, from the config: the pipeline's verification stage and `wakeline verify`
    both take it from here, so the same model and audio get the same verdict from either."""

    target_fa_per_hour: float
    max_frr: float
    max_tflite_bytes: int | None = None
    max_arena_bytes: int | None = None
    heldout_families: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> "Gate":
        budget = config.device_budget
        return cls(config.target_false_accepts_per_hour, config.verification_max_frr, budget.max_tflite_bytes,
                   budget.max_arena_bytes, tuple(config.data_prep.splits.heldout_families))

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `run`."""
        return {"target_fa_per_hour": self.target_fa_per_hour, "max_frr": self.max_frr,
                "max_tflite_bytes": self.max_tflite_bytes, "max_arena_bytes": self.max_arena_bytes,
                "heldout_families": self.heldout_families}


NOT_MEASURED = ("behaviour not measured: a blessing needs FRR and FA/h on the device path; give --audio DIR "
                "(positive*/ sub-folders hold wake words, the rest is ambient) or --features DIR")


def run(model_dir: Path, features_dir: Path | None, output_dir: Path, *, target_fa_per_hour: float,
        max_frr: float, audio_dir: Path | None = None, max_tflite_bytes: int | None = None,
        max_arena_bytes: int | None = None, heldout_families: tuple[str, ...] = ()) -> Verdict:
    """Verify one model; write `verdict.json` and `report.html` into `output_dir`."""
    t0 = time.monotonic()
    out = Path(output_dir)
    model, manifest_path = find(model_dir, Kind.ESPHOME_MODEL).pair
    if features_dir is not None and audio_dir is not None:
        raise VerifyInputError("give --features or --audio, not both: the gate measures on one test set")
    store = check_feature_store(features_dir) if features_dir is not None else None
    files = audio_files(audio_dir) if audio_dir is not None else []  # a bad folder is refused before any work
    out.mkdir(parents=True, exist_ok=True)
    checks, generation = verify_contract(model, manifest_path)
    verdict = Verdict(False, generation, checks)
    verdict.reasons = [f"{c.name}: found {c.found}, expected {c.expected}" for c in checks if not c.passed]
    verdict.reasons += budget_reasons(model, manifest_path, max_tflite_bytes, max_arena_bytes)
    verdict.contract_passed = not verdict.reasons
    points: list[OperatingPoint] = []
    peaks: dict = {}
    if not verdict.reasons and (features_dir is not None or audio_dir is not None):
        manifest = EsphomeManifest.read(manifest_path)
        if store is not None:
            verdict.behaviour, points, peaks = behaviour(model, EvalAudio.from_store(store, Split.TEST), manifest)
            # the gate: per voice family and per condition, on the test split only
            tflm = TflmStreamer(model, manifest.tensor_arena_size)
            pos, amb = store_streams(store, Split.TEST, tflm)
        else:
            if not files:
                verdict.reasons.append(f"{audio_dir}: no wav/flac/ogg files, so nothing was measured")
            scored = score(model, EvalAudio.from_audio_dir(Path(audio_dir)), manifest)
            verdict.behaviour, points, peaks = behaviour_of(scored, manifest)
            pos, amb = audio_streams(scored)
            heldout_families = ()  # an audio folder has no voice families
        b = verdict.behaviour
        table = breakdown(pos, amb, b["cutoff"], quantized=True, heldout_families=heldout_families)
        b["breakdown"] = table.as_dict()
        b["breakdown_text"] = format_text(table)
        verdict.reasons += gate_reasons(table, target_fa_per_hour, max_frr)
    elif not verdict.reasons:
        verdict.reasons.append(NOT_MEASURED)
    verdict.blessed = not verdict.reasons
    verdict.behaviour["wall_s"] = round(time.monotonic() - t0, 2)
    verdict.roc = peaks.get("roc", [])
    atomic.write_text(out / BlessingLayout.VERDICT, dumps(verdict.as_dict(), indent=2, default=str))
    (out / BlessingLayout.REPORT).write_text(report_html(verdict, model, points, peaks))
    return verdict


def _plot_png_base64(points: list[OperatingPoint], peaks: dict) -> str:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([p.fa_per_hour for p in points], [p.frr for p in points], marker=".")
    a.set_xlabel("false accepts per hour (test ambient)")
    a.set_ylabel("false-reject rate (test clips)")
    a.set_xscale("symlog", linthresh=0.1)
    a.grid(alpha=0.3)
    bins = np.arange(0, 257, 8)
    b.hist(peaks.get("negative", []), bins=bins, alpha=0.6, label="negatives")
    b.hist(peaks.get("positive", []), bins=bins, alpha=0.6, label="positives")
    b.set_xlabel("peak uint8 output per clip")
    b.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def model_facts(model: Path, checks: list[Check]) -> str:
    """Size, arena, parameters and op histogram, for the report."""
    if not model.is_file():
        return model.name
    facts = [f"{model.name}: {model.stat().st_size:,} bytes"]
    arena = next((c.found for c in checks if c.name == "tflm_loads"), None)
    try:
        from collections import Counter

        from components.esphome_verification.contract import parse

        pm = parse(model)
        ops = Counter(pm.op_names(0))
        sg = pm.model.subgraphs[0]
        params = sum(int(np.prod(t.shape)) for t in sg.tensors
                     if t.buffer and pm.model.buffers[t.buffer].data is not None and len(t.shape))
        facts.append(f"about {params:,} stored parameters")
        facts.append("ops: " + ", ".join(f"{k} ×{v}" for k, v in sorted(ops.items())))
    except Exception:  # noqa: BLE001 - facts are informative; the checks already report parse failures
        pass
    if isinstance(arena, dict) and arena.get("ok"):
        facts.append("runs in TFLite-Micro with the manifest arena")
    return "; ".join(facts)


def _num(v, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def breakdown_html(t: dict[str, Any]) -> str:
    """The per-condition FA/h table and the per-family x per-condition FRR table, the worst cells named and marked."""
    worst_c = t.get("worst_fa_condition")
    fa_rows = []
    for c in t["fa"]:
        mark = " class=bad" if c["condition"] == worst_c else ""
        fa_rows.append(f"<tr{mark}><td>{html.escape(c['condition'])}</td><td>{c['hours'] * 60:.1f}</td>"
                       f"<td>{c['false_accepts']}</td><td>{_num(c['fa_per_hour'])}</td>"
                       f"<td>{_num(c['upper_95_per_hour'])}</td></tr>")
    cells = {(c["family"], c["condition"]): c for c in t["frr"]}
    conds = sorted({c for _, c in cells if c != ALL}) + [ALL]
    fams = sorted({f for f, _ in cells if f != ALL}) + [ALL]
    worst = t.get("worst_frr_cell") or {}
    heldout = set(t.get("heldout_families", []))
    frr_rows = []
    for f in fams:
        tds = []
        for c in conds:
            cell = cells.get((f, c))
            mark = " class=bad" if (worst.get("family"), worst.get("condition")) == (f, c) else ""
            text = "" if cell is None else f"{_num(cell['frr'], '.1%')} <small>({cell['misses']}/{cell['clips']})</small>"
            tds.append(f"<td{mark}>{text}</td>")
        name = html.escape(f) + (" <b>(held out)</b>" if f in heldout else "")
        frr_rows.append(f"<tr><td>{name}</td>{''.join(tds)}</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in conds)
    worst_lines = []
    if worst_c is not None:
        worst_lines.append(f"Worst FA/h condition: <b>{html.escape(worst_c)}</b> ({_num(t['worst_fa_per_hour'])} FA/h).")
    if worst:
        worst_lines.append(f"Worst FRR cell: <b>{html.escape(worst['family'])} / {html.escape(worst['condition'])}"
                           f"</b> ({_num(worst['frr'], '.1%')}).")
    if t.get("worst_heldout_family"):
        worst_lines.append(f"Held-out family {html.escape(t['worst_heldout_family'])}: FRR "
                           f"{_num(t['worst_heldout_frr'], '.1%')} (never in training or validation).")
    return (f"<h2>Per condition and per voice family (test split, cutoff {t['cutoff']:.2f})</h2>"
            f"<p>{' '.join(worst_lines)}</p>"
            "<table><tr><th>ambient condition</th><th>minutes</th><th>false accepts</th><th>FA/h</th>"
            f"<th>95 % upper FA/h</th></tr>{''.join(fa_rows)}</table>"
            "<p>False-reject rate (misses/clips), voice family × channel condition:</p>"
            f"<table><tr><th>family</th>{head}</tr>{''.join(frr_rows)}</table>")


def report_html(verdict: Verdict, model: Path, points: list[OperatingPoint], peaks: dict) -> str:
    rows = "".join(f"<tr class={'ok' if c.passed else 'bad'}><td>{html.escape(c.name)}</td>"
                   f"<td>{'pass' if c.passed else 'FAIL'}</td><td><code>{html.escape(str(c.found))}</code></td>"
                   f"<td>{html.escape(c.expected)}</td></tr>" for c in verdict.checks)
    b = verdict.behaviour
    facts = model_facts(model, verdict.checks)
    plot = (f"<img alt='FRR vs FA/h and score histograms' src='data:image/png;base64,"
            f"{_plot_png_base64(points, peaks)}'/>" if points else "<p>No behaviour run.</p>")
    summary = (f"<p>At cutoff {b['cutoff']}: FRR {_num(b['frr'], '.1%')} on {b['positives']} test clips, "
               f"{_num(b['fa_per_hour'])} FA/h over {b['ambient_hours'] * 60:.1f} min of test ambient audio.</p>"
               if "frr" in b else "")
    verdict_line = "BLESSED" if verdict.blessed else "NOT BLESSED: " + "; ".join(verdict.reasons)
    table = breakdown_html(b["breakdown"]) if b.get("breakdown") else ""
    return (f"<!doctype html><meta charset=utf-8><title>wakeline verification</title>"
            f"<style>body{{font-family:sans-serif;max-width:1000px}}td{{padding:2px 8px}}"
            f".bad td{{background:#fdd}}.ok td{{background:#efe}}</style>"
            f"<h1>ESPHome verification</h1><p><b>{html.escape(verdict_line)}</b> ({verdict.generation} manifest; "
            f"{html.escape(facts)})</p>{table}<h2>Mixed test clips and ambient audio</h2>{summary}{plot}"
            f"<h2>Contract checks</h2>"
            f"<table><tr><th>check</th><th>result</th><th>found</th><th>expected</th></tr>{rows}</table>")


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig) -> StageResult:
    """The stage entry (components.common.stages): `tflite_model` and `features` in; the `blessing` and the
    `report` out, as their own artifacts; thresholds from the config. The Verdict is the result's value."""
    import shutil
    import tempfile

    from components.common.tracking import stage_run

    gate = Gate.from_config(config)
    params = {k: v for k, v in gate.kwargs().items() if k != "heldout_families"}
    with stage_run("esphome_verification", f"wakeline/{config.wake_word}", params,
                   tags={"config_sha256": config.sha256()}) as tracker, tempfile.TemporaryDirectory() as tmp:
        verdict = run(inputs["tflite_model"], inputs["features"], Path(tmp), **gate.kwargs())
        tracker.log_metrics(verdict.scalars())
        tracker.log_artifact(Path(tmp))
        for name, produced in (("blessing", BlessingLayout.VERDICT), ("report", BlessingLayout.REPORT)):
            outputs[name].parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(tmp) / produced, outputs[name])
    return StageResult({"blessing": verdict.as_dict()}, verdict.scalars(), verdict)
