"""data_prep throughput through the stage's real code paths: piper TTS, espeak-ng TTS, and user-file ingestion.

Metrics (names are stable; other fields are context):
  synth_clips_per_s_piper             steady-state piper clips/s, voice load excluded (reported as a field)
  synth_realtime_factor_piper         audio seconds produced per wall second by piper (same clips)
  synth_clips_per_s_espeak            espeak.synthesize_many (every clip from pristine engine state), os.cpu_count() workers
  espeak_reproducible_overhead_ratio  the above / the same jobs through one in-process engine (fast, not reproducible)
  ingest_audio_hours_per_min          ingest.load_source_file (read, checks, resample, trim) over a mixed-format set
  ingest_vs_decode_ratio              the above / plain soundfile decoding of the same files

espeak runs first, as in the stage: its workers are started before onnxruntime (piper) starts threads.
Wake-word renditions are the text for both TTS engines, so their clips/s compare.
Run through `python -m benchmarks` (a real module): espeak's worker processes need an importable __main__.
"""
from __future__ import annotations

import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from benchmarks.common import SEED, comparison, log, result, timer
from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import EspeakSettings, PiperSettings, Quality
from components.common.storage import SourceFile
from components.data_prep import ingest, phrases
from components.synthesis import espeak, piper_tts

WAKE_WORD = "hey jarvis"
N_PIPER = 40
N_ESPEAK = 300
ESPEAK_ROUNDS = 3  # reproducible and in-process passes alternate; the medians are reported
N_INGEST_FILES = 120  # spread evenly over _FORMATS
INGEST_FILE_S = 10.0
INGEST_ROUNDS = 5  # decode and ingest passes alternate; the median pass of each is reported

# (name, suffix, sample rate, channels, soundfile format, subtype)
_FORMATS = (
    ("wav_44k1_stereo", ".wav", 44100, 2, "WAV", "PCM_16"),
    ("flac_48k_mono", ".flac", 48000, 1, "FLAC", "PCM_24"),
    ("ogg_22k05_mono", ".ogg", 22050, 1, "OGG", "VORBIS"),
    ("wav_16k_mono", ".wav", 16000, 1, "WAV", "PCM_16"),
)


def _rng(*stream: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *stream])


# ---------------------------------------------------------------------------------------------------- piper

def bench_piper() -> list[dict]:
    rng = _rng(1)
    p = PiperSettings()
    texts = phrases.rendition_texts([WAKE_WORD], N_PIPER, rng)
    jobs = [piper_tts.PiperJob(t, round(float(rng.uniform(*p.length_scale_range)), 3),
                               round(float(rng.uniform(*p.noise_scale_range)), 3),
                               round(float(rng.uniform(*p.noise_w_scale_range)), 3)) for t in texts]
    warmup = piper_tts.PiperJob(WAKE_WORD, 1.0, 0.667, 0.8)  # not counted: pays the load and first inference
    it = piper_tts.synthesize_many([warmup, *jobs], seed=SEED)
    with timer() as t_load:
        next(it)
    audio_s, empty = 0.0, 0
    with timer() as t:
        for samples, sr in it:
            audio_s += len(samples) / sr
            empty += samples.size == 0
    clips_per_s = N_PIPER / t[0]
    log(f"[bench]   piper: {N_PIPER} clips in {t[0]:.2f} s ({clips_per_s:.1f} clips/s), load {t_load[0]:.2f} s")
    ctx = dict(n=N_PIPER, audio_s=audio_s, wall_s=t[0], empty_clips=empty, text=WAKE_WORD)
    return [
        result("synth_clips_per_s_piper", clips_per_s, "clips/s",
               voice_load_and_first_clip_s=t_load[0], **ctx),
        result("synth_realtime_factor_piper", audio_s / t[0], "audio s / wall s", **ctx),
    ]


# --------------------------------------------------------------------------------------------------- espeak

def _espeak_jobs() -> list[espeak.EspeakJob]:
    rng = _rng(2)
    e = EspeakSettings()
    voices = [f"{lang}+{var}" for lang in e.languages for var in e.variants]
    texts = phrases.rendition_texts([WAKE_WORD], N_ESPEAK, rng)
    return [espeak.EspeakJob(t, voices[int(rng.integers(len(voices)))], int(rng.uniform(*e.rate_wpm_range)),
                             int(rng.uniform(*e.pitch_range)), int(rng.integers(2 ** 31))) for t in texts]


def bench_espeak() -> list[dict]:
    jobs = _espeak_jobs()
    workers = os.cpu_count() or 1
    # The stage's parent already holds an initialised engine (phonemize) when synthesis starts; so does this.
    with timer() as t_init:
        engine = espeak._Engine()
    ours_s, base_s = [], []
    for _ in range(ESPEAK_ROUNDS):
        with timer() as t:  # pool start-up and teardown included: the stage pays them too
            outs = list(espeak.synthesize_many(jobs, workers))
        ours_s.append(t[0])
        with timer() as t:
            base = [engine.synthesize(j) for j in jobs]
        base_s.append(t[0])
    audio_s = sum(len(s) / sr for s, sr in outs)
    base_audio_s = sum(len(s) for s in base) / engine.sample_rate
    ours, baseline = len(jobs) / statistics.median(ours_s), len(jobs) / statistics.median(base_s)
    log(f"[bench]   espeak: reproducible {ours:.1f} clips/s ({workers} workers), in-process {baseline:.1f} clips/s")
    return [
        result("synth_clips_per_s_espeak", ours, "clips/s", n=len(jobs), workers=workers, audio_s=audio_s,
               wall_s=statistics.median(ours_s), rounds=ESPEAK_ROUNDS, wall_s_all_rounds=ours_s,
               empty_clips=sum(s.size == 0 for s, _ in outs), text=WAKE_WORD),
        comparison("espeak_reproducible_overhead_ratio", ours, baseline, unit="clips/s",
                   baseline_name="same jobs, one in-process espeak._Engine, sequential (not reproducible)",
                   n=len(jobs), workers=workers, rounds=ESPEAK_ROUNDS, baseline_wall_s_all_rounds=base_s,
                   baseline_engine_init_s=t_init[0], baseline_audio_s=base_audio_s, ours_audio_s=audio_s),
    ]


# --------------------------------------------------------------------------------------------------- ingest

def _speech_like(rng: np.random.Generator, sr: int, channels: int, duration_s: float) -> np.ndarray:
    """Syllable-rate bursts of a gliding harmonic voice plus fricative noise, between quiet lead-in and tail."""
    n = int(duration_s * sr)
    lead, tail = int(rng.uniform(0.5, 1.5) * sr), int(rng.uniform(0.5, 1.5) * sr)
    env = np.zeros(n)
    pos = lead
    while pos < n - tail:  # syllables 80-300 ms, gaps 30-200 ms, an occasional pause
        syl = int(rng.uniform(0.08, 0.3) * sr)
        end = min(pos + syl, n - tail)
        env[pos:end] = np.sin(np.linspace(0, np.pi, end - pos)) * rng.uniform(0.3, 1.0)
        pos = end + int((rng.uniform(0.3, 0.6) if rng.random() < 0.1 else rng.uniform(0.03, 0.2)) * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(100, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    noise = np.diff(rng.standard_normal(n + 1))  # high-passed: fricative-like
    out = np.empty((n, channels), np.float32)
    for c in range(channels):
        mix = env * (0.8 * voiced + 0.2 * noise) + 10 ** (-80 / 20) * rng.standard_normal(n)  # -80 dBFS floor
        out[:, c] = mix * (rng.uniform(0.3, 0.7) / np.max(np.abs(mix)))
    return out if channels > 1 else out[:, 0]


def _make_ingest_set(root: Path) -> tuple[list[SourceFile], dict[str, str]]:
    rng = _rng(3)
    files, fmt_of = [], {}
    for i in range(N_INGEST_FILES):
        name, suffix, sr, ch, fmt, subtype = _FORMATS[i % len(_FORMATS)]
        rel = PurePosixPath(f"speaker{i % 7}/{name}_{i:03d}{suffix}")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), _speech_like(rng, sr, ch, INGEST_FILE_S), sr, format=fmt, subtype=subtype)
        files.append(SourceFile(str(path), path, rel))
        fmt_of[str(path)] = name
    return files, fmt_of


def bench_ingest() -> list[dict]:
    quality = Quality()
    with tempfile.TemporaryDirectory(prefix="wakeline-bench-ingest-") as tmp:
        with timer() as t_gen:
            files, fmt_of = _make_ingest_set(Path(tmp))
        audio_h = len(files) * INGEST_FILE_S / 3600
        log(f"[bench]   ingest: generated {len(files)} files ({audio_h * 60:.0f} audio min) in {t_gen[0]:.1f} s")

        def decode_pass() -> float:
            with timer() as t:
                for f in files:
                    sf.read(str(f.local_path), dtype="float32", always_2d=True)
            return t[0]

        per_format: dict[str, list[float]] = defaultdict(list)
        kept_s: list[float] = []

        def ingest_pass() -> float:
            kept_s.clear()
            with timer() as t:
                for f in files:
                    with timer() as tf:
                        out = ingest.load_source_file(f, quality, trim=True,
                                                      min_duration_s=quality.min_clip_duration_s)
                    per_format[fmt_of[str(f.local_path)]].append(tf[0])
                    kept_s.append(len(out) / SAMPLE_RATE_HZ)
            return t[0]

        ingest.load_source_file(files[0], quality, trim=True, min_duration_s=0.1)  # warm-up: lazy imports
        decode_s, ingest_s = [], []
        for _ in range(INGEST_ROUNDS):
            decode_s.append(decode_pass())
            ingest_s.append(ingest_pass())
    t_dec, t_ing = statistics.median(decode_s), statistics.median(ingest_s)
    ours, baseline = audio_h / (t_ing / 60), audio_h / (t_dec / 60)
    format_audio_h = len(files) * INGEST_ROUNDS / len(_FORMATS) * INGEST_FILE_S / 3600  # per format, all rounds
    by_format = {k: round(format_audio_h / (sum(v) / 60), 2) for k, v in per_format.items()}
    log(f"[bench]   ingest: {ours:.1f} audio h/min (decode only {baseline:.1f})")
    return [
        result("ingest_audio_hours_per_min", ours, "audio h/min", n=len(files), audio_s=audio_h * 3600,
               wall_s=t_ing, rounds=INGEST_ROUNDS, wall_s_all_rounds=ingest_s, kept_audio_s=sum(kept_s),
               formats=[f[0] for f in _FORMATS], by_format_audio_h_per_min=by_format),
        comparison("ingest_vs_decode_ratio", ours, baseline, unit="audio h/min",
                   baseline_name="soundfile.read(float32) of the same files, no checks/resample/trim",
                   n=len(files), rounds=INGEST_ROUNDS, decode_wall_s_all_rounds=decode_s),
    ]


def run() -> list[dict]:
    return bench_espeak() + bench_ingest() + bench_piper()
