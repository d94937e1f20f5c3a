"""Does a front end that has heard real speech help? A small head on openWakeWord's frozen speech embeddings
(`components.training.speech_embedding`), trained only on a wakeline Dataset, scored on real recordings.

  1. fit `EmbeddingHead` on the TRAIN split: positives vs negatives + adversarial negatives + 16-embedding
     windows cut from train background files; each train clip also gets seeded augmented copies (a segment
     of a train background mixed in at 5-20 dB SNR, random gain, a random 0-0.3 s tail, sometimes a train RIR),
     plus windows from streams of the train negatives played back to back (running speech);
  2. choose the cutoff on the VALIDATION background streams only: the lowest score at which false accepts
     (the head slid over the audio every 80 ms; a firing then a 1 s refractory period) are <= 0.5 per hour,
     else the highest;
  3. report, at that cutoff: FRR on the test-split positives and FA/h on the test-split background streams
     (synthetic), FRR on the real "hey chatterbox" recordings (each padded with 1 s of silence both sides,
     detected if any window scores >= cutoff) and FA/h on real speech. The real recordings are never
     trained on and never used to choose the cutoff.

`python -m benchmarks.embedding_teacher --dataset DIR` (results in runs/bench/embedding_teacher.json);
under `python -m benchmarks` it runs only when WAKELINE_EMBEDDING_DATASET names a dataset.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.common import OUT_DIR, log, report, result, write_report

REAL_WAKEWORD = Path("/work/shared/data/real-wakeword-dev/hey_chatterbox")
REAL_SPEECH = Path("/work/shared/data/real-speech-dev")
SR = 16000
N_LAST = 16  # embeddings per head input (~2 s of audio)
STEP_S = 0.08  # one head score per 80 ms
REFRACTORY = 13  # steps (1.04 s) after a firing during which the detector stays quiet
TARGET_FA_PER_HOUR = 0.5
NEGATIVE_LABELS = ("negative", "adversarial_negative")


# --- audio ------------------------------------------------------------------------------------------------
def read16k(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz (resampled with soxr when the file is not)."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return x if sr == SR else soxr.resample(x, sr, SR, quality="HQ").astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def augment(clip: np.ndarray, rng: np.random.Generator, noises: list[np.ndarray], rirs: list[np.ndarray],
            rir_prob: float) -> np.ndarray:
    """Clip (maybe reverberated) + 0-0.3 s tail, front-padded to whole embeddings, with background noise
    over the whole padded length (5-20 dB SNR against the clip) and a random gain of -10..+6 dB."""
    from scipy.signal import fftconvolve

    from components.training.speech_embedding import SpeechEmbedding

    x = clip.astype(np.float32)
    if rirs and rng.random() < rir_prob:
        r = rirs[rng.integers(len(rirs))]
        y = fftconvolve(x, r)[: len(x)]
        x = (y * (rms(x) / max(rms(y), 1e-9))).astype(np.float32)
    x = np.concatenate([x, np.zeros(rng.integers(0, int(0.3 * SR)), np.float32)])
    x = SpeechEmbedding.pad_front(x, N_LAST)
    if noises:
        n = noises[rng.integers(len(noises))]
        start = rng.integers(0, max(1, len(n) - len(x)))
        seg = np.resize(n[start:start + len(x)], len(x))
        snr = rng.uniform(5, 20)
        x = x + seg * (rms(clip) / max(rms(seg), 1e-9) * 10 ** (-snr / 20))
    x = x * 10 ** (rng.uniform(-10, 6) / 20)
    return np.clip(x, -1, 1).astype(np.float32)


# --- scoring ----------------------------------------------------------------------------------------------
def head_inputs(emb: np.ndarray, stride: int = 1) -> np.ndarray:
    """`[n, 16, 96]`: every `stride`-th run of 16 consecutive embeddings of a stream."""
    if len(emb) < N_LAST:
        return np.zeros((0, N_LAST, emb.shape[1]), np.float32)
    return np.lib.stride_tricks.sliding_window_view(emb, N_LAST, axis=0)[::stride].transpose(0, 2, 1)


def stream_scores(head, emb: np.ndarray) -> np.ndarray:
    w = head_inputs(emb)
    return np.concatenate([head.predict_proba(w[i:i + 4096]) for i in range(0, len(w), 4096)]) if len(w) else \
        np.zeros(0)


def fires(scores: np.ndarray, cutoff: float, refractory: int = REFRACTORY) -> int:
    """Firings on one stream: score >= cutoff, then `refractory` steps of deafness."""
    idx = np.flatnonzero(scores >= cutoff)
    n, i = 0, 0
    while i < len(idx):
        n += 1
        i = int(np.searchsorted(idx, idx[i] + refractory))
    return n


def total_fires(streams: list[np.ndarray], cutoff: float) -> int:
    return sum(fires(s, cutoff) for s in streams)


def hours(streams: list[np.ndarray]) -> float:
    return sum(len(s) for s in streams) * STEP_S / 3600


def choose_cutoff(streams: list[np.ndarray], target: float = TARGET_FA_PER_HOUR) -> float:
    """Lowest score with <= target FA/h on `streams` (firings only drop as the cutoff rises: bisect)."""
    allowed = int(np.floor(target * hours(streams) + 1e-9))
    cand = np.unique(np.concatenate(streams)) if streams else np.zeros(0)
    cand = np.append(cand, np.nextafter(cand[-1] if cand.size else 1.0, np.inf))  # above every score: none
    lo, hi = 0, len(cand) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if total_fires(streams, cand[mid]) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    return float(cand[lo])


# --- data -------------------------------------------------------------------------------------------------
class Embedder:
    """The front end plus an on-disk cache of unaugmented files' embeddings and extraction timing."""

    def __init__(self, cache: Path | None):
        from components.training.speech_embedding import SpeechEmbedding

        self.front, self.cache = SpeechEmbedding(), cache
        self.clip_s = self.clip_n = self.stream_s = self.stream_audio_s = 0.0

    def _cached(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        if self.cache is None:
            return make()
        f = self.cache / (hashlib.sha1(key.encode()).hexdigest() + ".npy")
        if f.exists():
            return np.load(f)
        out = make()
        self.cache.mkdir(parents=True, exist_ok=True)
        np.save(f, out)
        return out

    def clips(self, audio: list[np.ndarray]) -> np.ndarray:
        """`[n, 16, 96]` for clips (front-padded), timed."""
        t = time.perf_counter()
        out = self.front.for_clips(audio, N_LAST)
        self.clip_s += time.perf_counter() - t
        self.clip_n += len(audio)
        return out

    def audio(self, x: np.ndarray) -> np.ndarray:
        """Embeddings of in-memory audio (not cached), timed as a stream."""
        t = time.perf_counter()
        e = self.front.embed(x)
        self.stream_s += time.perf_counter() - t
        self.stream_audio_s += len(x) / SR
        return e

    def stream(self, path: Path, pad_s: float = 0.0) -> np.ndarray:
        """Embeddings of a whole file (optionally with `pad_s` of silence both sides), cached."""
        st = path.stat()

        def make() -> np.ndarray:
            x = read16k(path)
            z = np.zeros(int(pad_s * SR), np.float32)
            return self.audio(self.front.pad_front(np.concatenate([z, x, z]), N_LAST))
        return self._cached(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{pad_s}", make)


def load_manifest(dataset: Path) -> list[dict]:
    return [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines() if line.strip()]


def pick(records: list[dict], split: str, labels: tuple[str, ...]) -> list[dict]:
    return [r for r in records if r["split"] == split and r["label"] in labels]


def build_train(dataset: Path, records: list[dict], emb: Embedder, rng: np.random.Generator, pos_copies: int,
                neg_copies: int, rir_prob: float, bg_stride: int, speech_streams: int) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs and labels from the train split only (condition streams excluded everywhere)."""
    train = [r for r in records if r["split"] == "train" and r.get("source") != "condition_stream"]
    noise_recs = pick(train, "train", ("background",))
    noises = [read16k(dataset / r["path"]) for r in noise_recs]
    rirs = [read16k(dataset / r["path"]) for r in pick(train, "train", ("rir",))]
    xs, ys, clips_of = [], [], {}
    for labels, y, copies in ((("positive",), 1.0, pos_copies), (NEGATIVE_LABELS, 0.0, neg_copies)):
        clips = clips_of[y] = [read16k(dataset / r["path"]) for r in pick(train, "train", labels)]
        batch = clips + [augment(c, rng, noises, rirs, rir_prob) for _ in range(copies) for c in clips]
        xs.append(emb.clips(batch))
        ys.append(np.full(len(batch), y))
        log(f"[embedding_teacher] train {labels[0]}: {len(clips)} clips + {len(batch) - len(clips)} augmented")
    for r in noise_recs:
        xs.append(head_inputs(emb.stream(dataset / r["path"]), bg_stride))
    for _ in range(speech_streams):  # running speech: windows that straddle several negatives
        xs.append(head_inputs(emb.audio(speech_stream(clips_of[0.0], rng, noises)), bg_stride))
    ys.append(np.zeros(sum(len(x) for x in xs) - sum(len(y) for y in ys)))
    return np.concatenate(xs), np.concatenate(ys)


def speech_stream(clips: list[np.ndarray], rng: np.random.Generator, noises: list[np.ndarray]) -> np.ndarray:
    """All negative clips in a random order, 0-0.4 s apart, over a train background at 5-20 dB SNR: the
    continuous speech that the isolated training clips never show the head."""
    parts = []
    for i in rng.permutation(len(clips)):
        parts += [clips[i], np.zeros(rng.integers(0, int(0.4 * SR)), np.float32)]
    x = np.concatenate(parts)
    if noises:
        n = noises[rng.integers(len(noises))]
        x = x + np.resize(n, len(x)) * (rms(x) / max(rms(n), 1e-9) * 10 ** (-rng.uniform(5, 20) / 20))
    return np.clip(x, -1, 1).astype(np.float32)


def clip_peaks(head, emb: Embedder, paths: list[Path]) -> np.ndarray:
    """Highest score per clip, each clip padded with 1 s of silence both sides."""
    return np.array([stream_scores(head, emb.stream(p, pad_s=1.0)).max() for p in paths])


# --- the benchmark ----------------------------------------------------------------------------------------
def measure(dataset: Path, *, seed: int = 1234, pos_copies: int = 2, neg_copies: int = 1, rir_prob: float = 0.25,
            bg_stride: int = 2, speech_streams: int = 2, hidden: int = 64, epochs: int = 20, cache: Path | None = None,
            save_head: Path | None = None) -> tuple[list[dict], dict]:
    from components.training.embedding_head import EmbeddingHead, HeadConfig

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    records = load_manifest(dataset)
    emb = Embedder(cache)
    x, y = build_train(dataset, records, emb, rng, pos_copies, neg_copies, rir_prob, bg_stride, speech_streams)
    log(f"[embedding_teacher] fitting on {len(y)} inputs ({int(y.sum())} positive)")
    t = time.perf_counter()
    head = EmbeddingHead(HeadConfig(hidden=hidden, epochs=epochs, seed=seed)).fit(x, y)
    fit_s = time.perf_counter() - t
    if save_head:
        save_head.parent.mkdir(parents=True, exist_ok=True)
        head.save(save_head)
    del x

    def streams(split: str) -> dict[str, list[np.ndarray]]:
        out: dict[str, list[np.ndarray]] = {}
        for r in pick(records, split, ("background",)):
            out.setdefault(r.get("condition", "?"), []).append(stream_scores(head, emb.stream(dataset / r["path"])))
        return out

    val = streams("validation")
    val_all = [s for v in val.values() for s in v]
    cutoff = choose_cutoff(val_all)
    test = streams("test")
    test_all = [s for v in test.values() for s in v]
    test_pos = clip_peaks(head, emb, [dataset / r["path"] for r in pick(records, "test", ("positive",))])
    real_pos = clip_peaks(head, emb, sorted(REAL_WAKEWORD.glob("*.wav")))
    real_speech = [stream_scores(head, emb.stream(p)) for p in sorted(REAL_SPEECH.glob("*.wav"))]

    def fa(ss: list[np.ndarray], c: float = cutoff) -> tuple[int, float, float]:
        n, h = total_fires(ss, c), hours(ss)
        return n, h, n / h if h else float("nan")

    # the trade-off on real data around the chosen point (cutoffs still chosen on validation only)
    curve = []
    for target in (0.5, 1.0, 2.0, 5.0, 10.0):
        c = choose_cutoff(val_all, target)
        curve.append({"val_target_fa_per_hour": target, "cutoff": c, "real_frr": float(np.mean(real_pos < c)),
                      "real_speech_fa": fa(real_speech, c)[0], "test_fa_per_hour": fa(test_all, c)[2],
                      "test_frr": float(np.mean(test_pos < c))})
    (val_n, val_h, val_rate), (t_n, t_h, t_rate), (rs_n, rs_h, rs_rate) = fa(val_all), fa(test_all), fa(real_speech)
    res = [
        result("embedding_teacher_real_frr", float(np.mean(real_pos < cutoff)), "fraction",
               detected=int(np.sum(real_pos >= cutoff)), clips=len(real_pos),
               baseline_student_detected=27, baseline_student_frr=0.518),
        result("embedding_teacher_real_speech_fa_per_hour", rs_rate, "1/h", false_accepts=rs_n, hours=rs_h,
               baseline_student_false_accepts=0),
        result("embedding_teacher_test_frr", float(np.mean(test_pos < cutoff)), "fraction", clips=len(test_pos)),
        result("embedding_teacher_test_fa_per_hour", t_rate, "1/h", false_accepts=t_n, hours=t_h,
               per_condition={k: fa(v)[0] for k, v in sorted(test.items())}),
        result("embedding_teacher_cutoff", cutoff, "probability", validation_false_accepts=val_n,
               validation_hours=val_h, target_fa_per_hour=TARGET_FA_PER_HOUR),
        result("embedding_clips_per_s", emb.clip_n / emb.clip_s if emb.clip_s else float("nan"), "clips/s",
               clips=int(emb.clip_n), note="front-padded to 16 embeddings (2.03 s), 1 thread, batched windows"),
        result("embedding_stream_realtime_factor",
               emb.stream_audio_s / emb.stream_s if emb.stream_s else float("nan"), "x",
               audio_s=emb.stream_audio_s, note="audio seconds per second of extraction (uncached files only)"),
    ]
    extra = {"dataset": str(dataset), "train_inputs": int(len(y)), "train_positives": int(y.sum()),
             "fit_s": fit_s, "head": {"hidden": hidden, "epochs": epochs, "seed": seed},
             "train": {"pos_copies": pos_copies, "neg_copies": neg_copies, "rir_prob": rir_prob,
                       "bg_stride": bg_stride, "speech_streams": speech_streams}, "tradeoff": curve,
             "measure_wall_s": time.perf_counter() - t0}
    return res, extra


def print_table(res: list[dict], extra: dict) -> None:
    print(f"dataset: {extra['dataset']}")
    for r in res:
        ctx = {k: v for k, v in r.items() if k in ("detected", "clips", "false_accepts", "hours")}
        print(f"  {r['metric']:<44} {r['value']!s:>10} {r['unit']:<12} {ctx if ctx else ''}")
    print("  trade-off (cutoffs chosen on validation streams only):")
    print("    val FA/h target  cutoff      real FRR  real-speech FAs  test FRR  test FA/h")
    for c in extra["tradeoff"]:
        print(f"    {c['val_target_fa_per_hour']:>15}  {c['cutoff']:<10.4g}  {c['real_frr']:<8.3f}  "
              f"{c['real_speech_fa']:>15}  {c['test_frr']:<8.3f}  {c['test_fa_per_hour']:.3g}")
    print("  current student on the same real data: 27/56 detected (FRR 0.518), 0 FAs in 0.159 h real speech")


def run() -> list[dict]:
    """Registry entry: only with WAKELINE_EMBEDDING_DATASET set (it needs a data-prep Dataset)."""
    ds = os.environ.get("WAKELINE_EMBEDDING_DATASET")
    if not ds:
        log("[embedding_teacher] skipped: set WAKELINE_EMBEDDING_DATASET to a data-prep dataset directory")
        return []
    res, _ = measure(Path(ds))
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, default=os.environ.get("WAKELINE_EMBEDDING_DATASET"),
                    help="data-prep dataset directory (holds manifest.jsonl)")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--pos-copies", type=int, default=2, help="augmented copies per train positive")
    ap.add_argument("--neg-copies", type=int, default=1, help="augmented copies per train negative")
    ap.add_argument("--rir-prob", type=float, default=0.25)
    ap.add_argument("--bg-stride", type=int, default=2, help="train background windows every N x 80 ms")
    ap.add_argument("--speech-streams", type=int, default=2,
                    help="train streams of back-to-back negative clips (each: all of them, shuffled)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden units (0: logistic regression)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=None, help="cache unaugmented embeddings here")
    ap.add_argument("--save-head", type=Path, default=None, help="write the fitted head (.npz)")
    a = ap.parse_args(argv)
    if a.dataset is None:
        ap.error("--dataset is required")
    start = time.perf_counter()
    res, extra = measure(a.dataset, seed=a.seed, pos_copies=a.pos_copies, neg_copies=a.neg_copies,
                         rir_prob=a.rir_prob, bg_stride=a.bg_stride, speech_streams=a.speech_streams,
                         hidden=a.hidden, epochs=a.epochs, cache=a.cache, save_head=a.save_head)
    path = write_report(report("embedding_teacher", res, wall_s=time.perf_counter() - start, **extra), a.out)
    print_table(res, extra)
    log(f"[embedding_teacher] wrote {path}")


if __name__ == "__main__":
    main()
