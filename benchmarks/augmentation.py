"""augmentation throughput through the stage's real code paths: batched waveform ops and parallel features.

Metrics (names are stable; other fields are context):
  speedup_vs_audiomentations              ours (draw_params + augment_batch, NumPy, batches of 64) vs an
                                          audiomentations Compose doing the same ops clip by clip; every op
                                          on with p=1.0 on both sides (the "same work" comparison); the
                                          AugmentOps-default probabilities on both sides are an extra field
  feature_extraction_parallel_efficiency  FeatureExtractor(os.cpu_count()).map clips/s over
                                          (N x FeatureExtractor(1).map clips/s); pools warmed first
  gpu_speedup_vs_numpy                    augment_batch on CuPy vs NumPy on the same batches and parameters
                                          (value null with "skipped" where no GPU is usable)
  augment_clips_per_s_by_op               ours with one op alone at p=1.0 (context: which op costs what)

Context fields worth reading: ours_clips_per_s_blas_1_thread (the same passes with NumPy's BLAS limited to one
thread: the EQ's small matmul otherwise leaves OpenBLAS threads spinning on a busy machine) and, for the
features, the workers' CPU and run-queue wait seconds (/proc/<pid>/schedstat: wait = other load on the box).

Both augmentation sides get the same synthetic speech-like clips, the same RIRs and the same backgrounds (written
as wav files for audiomentations, which loads them from disk). One-time setup (RirBank, file writing, the
first pass that fills audiomentations' RIR cache) is excluded from the timings and reported as fields.
"""
from __future__ import annotations

import os
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from benchmarks.common import SEED, comparison, load_average, log, result, timer
from components.augmentation import ops
from components.augmentation.features import FeatureExtractor
from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import Augmentation, AugmentOps
from components.common.xp import gpu_status

SR = SAMPLE_RATE_HZ
CLIP_S = 2.0
N_CLIPS = 256
BATCH = 64
N_RIRS = 8
N_BACKGROUNDS = 4
BACKGROUND_S = 30.0
AUG_ROUNDS = 3  # ours and audiomentations passes alternate; medians are reported
BASELINE_WARMUP_CLIPS = 32  # fills audiomentations' RIR cache, librosa's lazy imports, background durations
N_FEATURE_CLIPS = 400
FEATURE_ROUNDS = 3
GPU_ROUNDS = 5

ALL_ON = AugmentOps(speed_probability=1.0, eq_probability=1.0, band_stop_probability=1.0, rir_probability=1.0,
                    background_probability=1.0, colored_noise_probability=1.0, gain_probability=1.0)
_ALL_OFF = dict(speed_probability=0.0, eq_probability=0.0, band_stop_probability=0.0, rir_probability=0.0,
                background_probability=0.0, colored_noise_probability=0.0, gain_probability=0.0)
_SINGLE_OPS = ("speed", "eq", "band_stop", "rir", "background", "colored_noise", "gain")

# Which audiomentations transform stands in for which of our ops (in our order of application).
OP_MAPPING = {
    "speed (linear-interp resample around an anchor: pitch + tempo)": "PitchShift (pitch only; audiomentations "
                                                                      "has no speed op; same factor range in "
                                                                      "semitones, default signalsmith_stretch)",
    "eq (7-band, +-eq_max_gain_db)": "SevenBandParametricEQ (same dB range)",
    "band_stop (Gaussian dip over log-f, 10-40 dB)": "BandStopFilter (same centre range)",
    "rir (FFT convolution, direct path kept in place)": "ApplyImpulseResponse (same RIRs as wav files)",
    "background (segment of an in-memory recording)": "AddBackgroundNoise (same recordings as wav files, "
                                                      "same SNR range)",
    "colored_noise (white/pink/brown)": "AddColorNoise (f_decay -6..0 dB/oct, same SNR range)",
    "gain": "Gain (same dB range)",
    "peak guard + int16": "np.clip(np.rint(x * 32767)) to int16 after the Compose",
}


def _rng(*stream: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *stream])


# ---------------------------------------------------------------------------------------------------- inputs

def _speech_clips(rng: np.random.Generator, count: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`[count, n]` float32 windows: syllable-rate bursts of a gliding harmonic voice plus fricative noise,
    0.5-1.4 s long and ending 0.1-0.4 s before the window's end, over a -80 dBFS floor. Returns
    (clips, speech_start, speech_end)."""
    clips = np.empty((count, n), np.float32)
    starts, ends = np.empty(count, np.int64), np.empty(count, np.int64)
    t = np.arange(n) / SR
    for c in range(count):
        end = n - int(rng.uniform(0.1, 0.4) * SR)
        start = max(0, end - int(rng.uniform(0.5, 1.4) * SR))
        env = np.zeros(n)
        pos = start
        while pos < end:
            syl_end = min(pos + int(rng.uniform(0.08, 0.3) * SR), end)
            env[pos:syl_end] = np.sin(np.linspace(0, np.pi, syl_end - pos)) * rng.uniform(0.3, 1.0)
            pos = syl_end + int(rng.uniform(0.03, 0.2) * SR)
        f0 = rng.uniform(100, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        mix = env * (0.8 * voiced + 0.2 * np.diff(rng.standard_normal(n + 1))) + 1e-4 * rng.standard_normal(n)
        clips[c] = mix * (rng.uniform(0.3, 0.7) / np.max(np.abs(mix)))
        starts[c], ends[c] = start, end
    return clips, starts, ends


def _rirs(rng: np.random.Generator) -> list[np.ndarray]:
    """Exponentially decaying noise tails (RT60 0.2-0.9 s), 0.3-1.0 s long, after a 1-20 ms direct path."""
    out = []
    for _ in range(N_RIRS):
        length = int(rng.uniform(0.3, 1.0) * SR)
        delay = int(rng.uniform(0.001, 0.02) * SR)
        rt60 = rng.uniform(0.2, 0.9)
        tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / (rt60 * SR)) * 0.3
        tail[:delay] = 0.0
        tail[delay] = 1.0
        out.append(tail.astype(np.float32))
    return out


def _backgrounds(rng: np.random.Generator) -> list[np.ndarray]:
    """int16 recordings of BACKGROUND_S: brown-ish rumble, babble-like modulated noise, hum, hiss."""
    n = int(BACKGROUND_S * SR)
    t = np.arange(n) / SR
    out = []
    for i in range(N_BACKGROUNDS):
        white = rng.standard_normal(n)
        kind = i % 4
        if kind == 0:
            x = np.cumsum(white)
            x -= np.convolve(x, np.ones(801) / 801, mode="same")
        elif kind == 1:
            x = np.diff(white, prepend=0.0) * (1 + np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        elif kind == 2:
            x = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t) + 0.05 * white
        else:
            x = white
        x = x / np.max(np.abs(x)) * rng.uniform(0.1, 0.5)
        out.append(np.round(x * 32767).astype(np.int16))
    return out


class _Inputs:
    def __init__(self, count: int, stream: int) -> None:
        self.n = int(CLIP_S * SR)
        self.clips, self.start, self.end = _speech_clips(_rng(stream, 1), count, self.n)
        self.rirs = _rirs(_rng(stream, 2))
        self.backgrounds = _backgrounds(_rng(stream, 3))
        self.snr_range = tuple(Augmentation().eval_snr_db_range)

    def batches(self):
        for i in range(0, len(self.clips), BATCH):
            sl = slice(i, i + BATCH)
            yield self.clips[sl], self.start[sl], self.end[sl]

    def params(self, rng: np.random.Generator, augment_ops: AugmentOps, n_rirs: int, start, end) -> ops.BatchParams:
        return ops.draw_params(rng, start, end, end.copy(), self.n, augment_ops, self.snr_range, n_rirs,
                               self.backgrounds, np.ones(len(start), bool))


# ------------------------------------------------------------------------------------------------ ours (CPU)

def _ours_pass(inp: _Inputs, bank: ops.RirBank, augment_ops: AugmentOps, seed: int) -> tuple[float, list]:
    """draw_params + augment_batch over every batch (what the stage does per batch, minus features)."""
    out = []
    with timer() as t:
        for b, (clean, start, end) in enumerate(inp.batches()):
            p = inp.params(np.random.default_rng([SEED, seed, b]), augment_ops, bank.count, start, end)
            out.append(ops.augment_batch(clean, p, bank, np))
    return t[0], out


# ---------------------------------------------------------------------------------------- audiomentations

def _ops_probabilities(o: AugmentOps) -> dict[str, float]:
    return {"speed": o.speed_probability, "eq": o.eq_probability, "band_stop": o.band_stop_probability,
            "rir": o.rir_probability, "background": o.background_probability,
            "colored_noise": o.colored_noise_probability, "gain": o.gain_probability}


def _baseline_chain(o: AugmentOps, rir_paths: list[str], bg_paths: list[str], snr: tuple[float, float]):
    import audiomentations as am

    semis = [12 * float(np.log2(f)) for f in o.speed_factor_range]
    return am.Compose([
        am.PitchShift(min_semitones=min(semis), max_semitones=max(semis), p=o.speed_probability),
        am.SevenBandParametricEQ(min_gain_db=-o.eq_max_gain_db, max_gain_db=o.eq_max_gain_db, p=o.eq_probability),
        am.BandStopFilter(min_center_freq=o.band_stop_center_hz_range[0],
                          max_center_freq=o.band_stop_center_hz_range[1], p=o.band_stop_probability),
        am.ApplyImpulseResponse(rir_paths, p=o.rir_probability, leave_length_unchanged=True),
        am.AddBackgroundNoise(bg_paths, min_snr_db=snr[0], max_snr_db=snr[1], p=o.background_probability),
        am.AddColorNoise(min_snr_db=snr[0], max_snr_db=snr[1], min_f_decay=-6.0, max_f_decay=0.0,
                         p=o.colored_noise_probability),
        am.Gain(min_gain_db=o.gain_db_range[0], max_gain_db=o.gain_db_range[1], p=o.gain_probability),
    ])


def _median_rms_dbfs(pcm: np.ndarray) -> float:
    rms = np.sqrt(np.mean((pcm.astype(np.float64) / 32768) ** 2, axis=1))
    return float(np.median(20 * np.log10(np.maximum(rms, 1e-10))))


def _baseline_pass(chain, clips: np.ndarray) -> tuple[float, list]:
    out = []
    with timer() as t:
        for clip in clips:
            y = chain(samples=clip, sample_rate=SR)
            out.append(np.clip(np.rint(y * 32767), -32768, 32767).astype(np.int16))
    return t[0], out


def _baseline_by_op(chain, clips: np.ndarray) -> dict[str, float]:
    """clips/s of each transform alone on the chain's own intermediate signals (context for the profile)."""
    spent = {type(tr).__name__: 0.0 for tr in chain.transforms}
    for clip in clips:
        x = clip
        for tr in chain.transforms:
            with timer() as t:
                x = tr(samples=x, sample_rate=SR)
            spent[type(tr).__name__] += t[0]
    return {k: len(clips) / v for k, v in spent.items()}


def bench_vs_audiomentations() -> list[dict]:
    inp = _Inputs(N_CLIPS, 10)
    rir_max = int(AugmentOps().rir_max_duration_s * SR)
    with timer() as t_bank:
        bank = ops.RirBank(inp.rirs, inp.n, rir_max, np)
    with tempfile.TemporaryDirectory(prefix="wakeline-bench-aug-") as tmp:
        with timer() as t_files:
            rir_paths, bg_paths = [], []
            for i, r in enumerate(inp.rirs):
                rir_paths.append(str(Path(tmp) / f"rir_{i}.wav"))
                sf.write(rir_paths[-1], r, SR, subtype="FLOAT")
            for i, bg in enumerate(inp.backgrounds):
                bg_paths.append(str(Path(tmp) / f"bg_{i}.wav"))
                sf.write(bg_paths[-1], bg, SR, subtype="PCM_16")
        log(f"[bench]   augmentation: setup RirBank {t_bank[0]:.2f} s (nfft {bank.nfft}), files {t_files[0]:.2f} s")

        res = {}
        for label, o in (("all_on", ALL_ON), ("defaults", AugmentOps())):
            random.seed(SEED)  # audiomentations draws from `random` and `np.random`
            np.random.seed(SEED)
            chain = _baseline_chain(o, rir_paths, bg_paths, inp.snr_range)
            with timer() as t_warm:
                _baseline_pass(chain, inp.clips[:BASELINE_WARMUP_CLIPS])
                _ours_pass(inp, bank, o, 99)  # first-call costs on our side too (FFT twiddles, allocations)
            ours_s, base_s = [], []
            rounds = AUG_ROUNDS if label == "all_on" else 1
            for r in range(rounds):
                t_o, out_o = _ours_pass(inp, bank, o, r)
                t_b, out_b = _baseline_pass(chain, inp.clips)
                ours_s.append(t_o)
                base_s.append(t_b)
            ours, base = N_CLIPS / statistics.median(ours_s), N_CLIPS / statistics.median(base_s)
            res[label] = dict(ours=ours, base=base, ours_s=ours_s, base_s=base_s, warm_s=t_warm[0], chain=chain,
                              rms=(_median_rms_dbfs(np.concatenate(out_o)), _median_rms_dbfs(np.stack(out_b))))
            if label == "all_on":  # context: NumPy's OpenBLAS threads (the EQ matmul) vs a busy 2-core machine
                with threadpool_limits(limits=1, user_api="blas"):
                    blas1_s = [_ours_pass(inp, bank, o, r)[0] for r in range(AUG_ROUNDS)]
                res[label]["ours_blas1"] = N_CLIPS / statistics.median(blas1_s)
                log(f"[bench]   augmentation ({label}): ours with BLAS on 1 thread {res[label]['ours_blas1']:.1f} "
                    f"clips/s")
            log(f"[bench]   augmentation ({label}): ours {ours:.1f} clips/s, audiomentations {base:.1f} clips/s "
                f"({ours / base:.1f}x); median output RMS {res[label]['rms'][0]:.1f} / {res[label]['rms'][1]:.1f} dBFS")
        with timer() as t_by_op:
            base_by_op = _baseline_by_op(res["all_on"]["chain"], inp.clips[:64])

    ours_by_op = {}
    with timer() as t_ours_by_op:
        for op in ("none", *_SINGLE_OPS):
            o = AugmentOps(**{**_ALL_OFF, **({f"{op}_probability": 1.0} if op != "none" else {})})
            ours_by_op[op] = N_CLIPS / _ours_pass(inp, bank, o, 50)[0]
    log(f"[bench]   augmentation: ours by op (clips/s) {ours_by_op}")
    log(f"[bench]   augmentation: audiomentations by op (clips/s) {base_by_op}")

    a, d = res["all_on"], res["defaults"]
    ctx = dict(n=N_CLIPS, clip_s=CLIP_S, sample_rate=SR, batch_size=BATCH, n_rirs=N_RIRS,
               n_backgrounds=N_BACKGROUNDS, snr_db_range=list(inp.snr_range), cpu_count=os.cpu_count(),
               op_mapping=OP_MAPPING)
    return [
        comparison("speedup_vs_audiomentations", a["ours"], a["base"], unit="clips/s",
                   baseline_name="audiomentations 0.43.1 Compose, clip by clip, same ops/clips/RIRs/backgrounds",
                   probabilities="all 1.0 on both sides", ours_probabilities=_ops_probabilities(ALL_ON),
                   rounds=AUG_ROUNDS, ours_wall_s_all_rounds=a["ours_s"], baseline_wall_s_all_rounds=a["base_s"],
                   defaults_probabilities=_ops_probabilities(AugmentOps()),
                   defaults_speedup=d["ours"] / d["base"], defaults_ours_clips_per_s=d["ours"],
                   defaults_baseline_clips_per_s=d["base"], defaults_rounds=1,
                   ours_clips_per_s_blas_1_thread=a["ours_blas1"],
                   median_output_rms_dbfs={"ours": a["rms"][0], "baseline": a["rms"][1]},
                   speedup_blas_1_thread=a["ours_blas1"] / a["base"],
                   setup_rirbank_s=t_bank[0], rirbank_nfft=bank.nfft, setup_file_writing_s=t_files[0],
                   warmup_s_excluded=a["warm_s"], baseline_warmup_clips=BASELINE_WARMUP_CLIPS,
                   timed_ours="draw_params + augment_batch (numpy), per batch",
                   timed_baseline="Compose(...)(clip) + int16 conversion, per clip", **ctx),
        result("augment_clips_per_s_by_op", ours_by_op.get("none", 0.0), "clips/s",
               note="value: ours with every op off (the fixed FFT/noise/int16 path); fields: one op alone at p=1.0",
               ours_by_op_clips_per_s=ours_by_op, baseline_by_op_clips_per_s=base_by_op,
               baseline_by_op_n=64, wall_s=t_ours_by_op[0] + t_by_op[0], **ctx),
    ]


# ---------------------------------------------------------------------------------------------- features

def _schedstat(pids: list[int]) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over pids, from /proc/<pid>/schedstat;
    (nan, nan) where unavailable. Waiting time separates other load on the machine from idle workers."""
    cpu = wait = 0.0
    try:
        for pid in pids:
            on, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
            cpu, wait = cpu + int(on) / 1e9, wait + int(waiting) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")
    return cpu, wait


def _worker_pids(fx: FeatureExtractor) -> list[int]:
    return [proc.pid for proc in getattr(fx._pool, "_pool", [])]  # multiprocessing.pool.Pool's processes

def bench_features() -> list[dict]:
    inp = _Inputs(N_FEATURE_CLIPS, 20)
    bank = ops.RirBank(inp.rirs, inp.n, int(AugmentOps().rir_max_duration_s * SR), np)
    pcm = np.concatenate([ops.augment_batch(clean, inp.params(_rng(20, 4, i), AugmentOps(), bank.count, s, e),
                                            bank, np) for i, (clean, s, e) in enumerate(inp.batches())])
    clips = list(pcm)
    workers = os.cpu_count() or 1
    times: dict[int, list[float]] = {1: [], workers: []}
    cpu_s: dict[int, list[float]] = {1: [], workers: []}
    wait_s: dict[int, list[float]] = {1: [], workers: []}
    load: dict[int, float | None] = {}
    startup: dict[int, float] = {}
    frames = 0
    for w in (1, workers):
        with timer() as t_start:
            fx = FeatureExtractor(w).__enter__()
            fx.map(clips[: 2 * w])  # warm: spawned interpreters import the frontend
        startup[w] = t_start[0]
        try:
            pids = _worker_pids(fx)
            for _ in range(FEATURE_ROUNDS):
                c0, w0 = _schedstat(pids)
                with timer() as t:
                    feats = fx.map(clips)
                c1, w1 = _schedstat(pids)
                times[w].append(t[0])
                cpu_s[w].append(c1 - c0)
                wait_s[w].append(w1 - w0)
            load[w] = load_average()
        finally:
            fx.__exit__(None, None, None)
        frames = sum(len(f) for f in feats)
    thr1 = N_FEATURE_CLIPS / statistics.median(times[1])
    thr_n = N_FEATURE_CLIPS / statistics.median(times[workers])
    eff = thr_n / (workers * thr1)
    log(f"[bench]   features: 1 worker {thr1:.1f} clips/s, {workers} workers {thr_n:.1f} clips/s "
        f"(efficiency {eff:.2f}); worker cpu s {cpu_s}, runqueue wait s {wait_s}")
    return [result("feature_extraction_parallel_efficiency", eff, "fraction", workers=workers,
                   clips_per_s_1_worker=thr1, clips_per_s_n_workers=thr_n, n=N_FEATURE_CLIPS, clip_s=CLIP_S,
                   frames=frames, rounds=FEATURE_ROUNDS, wall_s_all_rounds_1_worker=times[1],
                   wall_s_all_rounds_n_workers=times[workers], pool_startup_and_warm_s_excluded=startup,
                   worker_cpu_s_all_rounds={str(k): v for k, v in cpu_s.items()},
                   worker_runqueue_wait_s_all_rounds={str(k): v for k, v in wait_s.items()},
                   load_avg_1m_after={str(k): v for k, v in load.items()},
                   note="runqueue wait = workers runnable but not scheduled: other load on the machine",
                   input="augment_batch int16 output (AugmentOps defaults)")]


# --------------------------------------------------------------------------------------------------- GPU

def bench_gpu() -> list[dict]:
    ok, why = gpu_status()
    if not ok:
        log(f"[bench]   gpu: skipped ({why})")
        return [result("gpu_speedup_vs_numpy", None, "x", skipped=f"no usable GPU: {why}")]
    import cupy

    inp = _Inputs(N_CLIPS, 30)
    rir_max = int(AugmentOps().rir_max_duration_s * SR)
    bank_np = ops.RirBank(inp.rirs, inp.n, rir_max, np)
    with timer() as t_bank:
        bank_cp = ops.RirBank(inp.rirs, inp.n, rir_max, cupy)
        cupy.cuda.Device().synchronize()
    batches = [(clean, inp.params(_rng(30, 4, i), ALL_ON, bank_np.count, s, e))
               for i, (clean, s, e) in enumerate(inp.batches())]

    def one_pass(xp, bank) -> float:
        with timer() as t:
            for clean, p in batches:
                ops.augment_batch(clean, p, bank, xp)
            if xp is cupy:
                cupy.cuda.Device().synchronize()
        return t[0]

    with timer() as t_warm:  # kernel compilation, cuFFT plans
        one_pass(cupy, bank_cp)
        one_pass(np, bank_np)
    cp_s, np_s = [], []
    for _ in range(GPU_ROUNDS):
        cp_s.append(one_pass(cupy, bank_cp))
    for _ in range(max(1, GPU_ROUNDS // 2)):
        np_s.append(one_pass(np, bank_np))
    ours, base = N_CLIPS / statistics.median(cp_s), N_CLIPS / statistics.median(np_s)
    # Equivalence check on one batch: same parameters give (nearly) the same int16 audio.
    clean, p = batches[0]
    diff = int(np.max(np.abs(ops.augment_batch(clean, p, bank_cp, cupy).astype(np.int32)
                             - ops.augment_batch(clean, p, bank_np, np).astype(np.int32))))
    log(f"[bench]   gpu: cupy {ours:.1f} clips/s, numpy {base:.1f} clips/s ({ours / base:.1f}x)")
    return [comparison("gpu_speedup_vs_numpy", ours, base, unit="clips/s",
                       baseline_name="augment_batch with NumPy, same batches and parameters",
                       device=why, n=N_CLIPS, batch_size=BATCH, probabilities="all 1.0",
                       timed="augment_batch incl. host->device copies and int16 result back to host",
                       rounds_gpu=GPU_ROUNDS, rounds_numpy=len(np_s), gpu_wall_s_all_rounds=cp_s,
                       numpy_wall_s_all_rounds=np_s, setup_rirbank_gpu_s=t_bank[0],
                       warmup_s_excluded=t_warm[0], max_abs_int16_diff_vs_numpy=diff)]


def _gpu_or_error() -> list[dict]:
    """bench_gpu, but a failure on the GPU path is recorded (value null) instead of dropping the CPU results."""
    try:
        return bench_gpu()
    except Exception as e:  # noqa: BLE001 - reported in the JSON and the log, never hidden
        log(f"[bench]   gpu: FAILED: {e!r}")
        return [result("gpu_speedup_vs_numpy", None, "x", error=f"GPU path failed: {e!r}")]


def run() -> list[dict]:
    # Features first: their spawned pools start before anything else holds big arrays or a CUDA context.
    return bench_features() + bench_vs_audiomentations() + _gpu_or_error()
