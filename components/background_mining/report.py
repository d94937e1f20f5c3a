"""The mining report: report.json (everything) and a self-contained HTML page (score histogram, top hits with
their offsets, and the best ones to listen to)."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from components.background_mining.scan import HIST_BINS

TOP_ROWS = 25
AUDIO_ROWS = 8


def histogram_png_base64(counts: list[int], hit_counts: list[int], threshold: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, 1, HIST_BINS + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    a.bar(edges[:-1], np.maximum(np.asarray(counts, float), 0), width=1 / HIST_BINS, align="edge", color="#4878d0")
    a.set_yscale("symlog", linthresh=1)
    a.axvline(threshold, color="#d65f5f", linestyle="--", label=f"threshold {threshold:g}")
    a.set_xlabel("window score (every inference)")
    a.set_ylabel("windows")
    a.legend()
    b.bar(edges[:-1], hit_counts, width=1 / HIST_BINS, align="edge", color="#ee854a")
    b.set_xlim(min(threshold, 0.95) - 0.02, 1.0)
    b.set_xlabel("hit score (peaks above the threshold)")
    b.set_ylabel("hits")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _wav_base64(samples: np.ndarray) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, 16_000, subtype="PCM_16", format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def report_html(report: dict[str, Any], clips: dict[str, np.ndarray]) -> str:
    s, sc = report["summary"], report["scorer"]
    plot = histogram_png_base64(report["histogram"]["counts"], report["hit_histogram"]["counts"],
                                report["params"]["threshold"])
    rows = []
    for h in report["kept"][:TOP_ROWS]:
        audio = ""
        if h["rank"] <= AUDIO_ROWS and h["clip"] in clips:
            audio = f"<audio controls preload=none src='data:audio/wav;base64,{_wav_base64(clips[h['clip']])}'></audio>"
        rows.append(f"<tr><td>{h['rank']}</td><td>{h['score']:.3f}</td><td><code>{html.escape(h['file'])}</code><br>"
                    f"<small>{html.escape(str(h.get('source') or ''))}</small></td><td>{h['start_s']:.2f}</td>"
                    f"<td>{h['end_s']:.2f}</td><td><code>{html.escape(h['clip'])}</code></td><td>{audio}</td></tr>")
    probe = report.get("probe")
    probe_line = ""
    if probe:
        probe_line = (f"<p>Probe trained on {probe['training_clips']} clean training clips ({probe['steps']} steps; "
                      f"training windows above the threshold: positives {probe['positives_above_threshold']:.0%}, "
                      f"negatives {probe['negatives_above_threshold']:.0%}).</p>")
    sess = report["session"]
    return (
        "<!doctype html><meta charset=utf-8><title>wakeline background mining</title>"
        "<style>body{font-family:sans-serif;max-width:1100px}td,th{padding:2px 8px;text-align:left}"
        "tr:nth-child(even){background:#f4f4f4}</style>"
        "<h1>Background mining</h1>"
        f"<p><b>{s['kept']}</b> hard negatives kept (top {s['top_k']} = {report['params']['top_k_per_hour']:g} "
        f"per hour) of <b>{s['hits']}</b> hits above {report['params']['threshold']:g} in "
        f"<b>{s['hours_scanned'] * 60:.1f} min</b> "
        f"of training background audio ({s['files']} files): {s['hits_per_hour']:.1f} hits per hour.</p>"
        f"<p>Scorer: <code>{html.escape(sc['kind'])}</code> <code>{html.escape(sc['identity'])}</code>"
        f" ({html.escape(sc['source'])}); one score every "
        f"{sc['stride_frames'] * 10} ms.</p>{probe_line}"
        f"<p>Session <code>{html.escape(sess['key'])}</code>: {sess['chunks_reused']} of {sess['chunks_total']} chunks "
        f"from earlier runs, {sess['chunks_scanned']} scanned now.</p>"
        f"<img alt='score histograms' src='data:image/png;base64,{plot}'/>"
        f"<h2>Top hits</h2><table><tr><th>#</th><th>score</th><th>background file</th><th>clip start (s)</th>"
        f"<th>hit end (s)</th><th>hard negative</th><th></th></tr>{''.join(rows)}</table>"
    )
