"""training throughput through the stage's real code path: `Trainer.train_step`, the compiled optimizer step.

Metrics (names are stable; other fields are context):
  train_samples_per_s                   the default device-sized MixedNet ("mixednet-v2") on the CPU, batch 128
                                        (default Training), XLA off: samples/s of train_step, warm-up excluded
  train_samples_per_s_<teacher>         the same for each default teacher (load_config("default").teachers;
                                        "-" in the name becomes "_"), fewer timed steps where a step is slow
  xla_speedup                           the same MixedNet, same batches, same number of steps: samples/s with
                                        xla=True over xla=False (separate Trainers, same initial weights);
                                        compile time excluded (first_step_s field); one_step_loss_match is
                                        the sanity check that both compute the same losses
  gpu_train_samples_per_s               MixedNet on the GPU, XLA and precision as Training()'s auto toggles
                                        resolve there (float32 and mixed samples/s both as fields)
  mixed_precision_speedup               trainer.build_model(mixed_precision=True) over float32 on the GPU,
                                        same batches, steps and initial weights
  (the last two: value null with "skipped" where TensorFlow sees no usable GPU; never estimated)
  validation_scoring_speedup_<model>    validation's scoring of one 5-min stream (the default student and first
                                        teacher, random weights): `scoring.model_scorer` (the MixedNet body once over
                                        the stream) over window-by-window `stream_probabilities` (the baseline, what
                                        validation did before); max_abs_difference says they agree

Inputs: synthetic features, float32 uniform in [0, 26] (the feature range, raw uint16 x 0.0390625), fixed seed;
labels drawn with Training().sampling_weights' positive share and weights from the class weights. A few
distinct batches are cycled; they are tf tensors before the clock starts. Each timed step is what
`Trainer.fit` does around it: `float(train_step(x, y, w))` (the float() is the host sync). Rounds of the two
sides being compared alternate; medians are reported, with process CPU seconds per round (CPU seconds / wall
seconds = cores the step kept busy; the box may be shared, see load_avg_1m in the report).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import SEED, comparison, load_average, log, result, timer
from components.training.batches import Batch
from components.common.config import ModelSpec, Training, load_config
from components.training.trainer import Trainer, build_model, use_mixed_precision, use_xla

STUDENT = ModelSpec(name="mixednet-v2", pointwise_filters=[64, 64, 64, 64],
                    mixconv_kernels=[[5], [7, 11], [9, 15], [23]], first_conv_filters=32, first_conv_kernel=5,
                    stride=3, input_frames=170)
N_BATCHES = 8  # distinct synthetic batches, cycled
WARMUP_STEPS = 5  # the first includes tracing (and XLA compilation); reported, never timed
TIMED_STEPS = 40
ROUNDS = 3
TEACHER_ROUND_BUDGET_S = 5.0  # teachers: timed steps per round sized to about this (5..TIMED_STEPS)
LOSS_RTOL = 1e-3  # XLA vs no XLA: relative tolerance on the sanity check's losses
SANITY_STEPS = 2
GPU_WARMUP_STEPS = 20
GPU_TIMED_STEPS = 100


def _rng(*stream: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *stream])


def _synthetic_batches(training: Training, input_frames: int, stream: int) -> list[Batch]:
    """Random features in [0, 26]; positives at the sampling weights' share, weights from the class weights."""
    rng = _rng(stream)
    sw = training.sampling_weights
    p_pos = sw.positive / (sw.positive + sw.negative + sw.adversarial_negative + sw.hard_negative + sw.background)
    out = []
    for _ in range(N_BATCHES):
        x = rng.uniform(0.0, 26.0, (training.batch_size, input_frames, 40)).astype(np.float32)
        y = (rng.random(training.batch_size) < p_pos).astype(np.float32)
        w = np.where(y > 0, training.positive_class_weight, training.negative_class_weight).astype(np.float32)
        out.append(Batch(x, y, w, 0))
    return out


def _tensors(batches: list[Batch]) -> list[tuple[Any, Any, Any]]:
    import tensorflow as tf

    return [(tf.constant(b.x), tf.constant(b.y), tf.constant(b.weight)) for b in batches]


class _Side:
    """One Trainer on one model, with its own temp workdir; runs warm-up and timed rounds."""

    def __init__(self, spec: ModelSpec, training: Training, *, xla: bool, device: str, label: str,
                 weights: list | None = None, mixed_precision: bool = False) -> None:
        import keras
        import tensorflow as tf

        from components.training.models import build

        self.label, self.device = label, device
        self._tmp = tempfile.TemporaryDirectory(prefix=f"wakeline-bench-train-{label}-")
        keras.utils.set_random_seed(SEED)  # same initial weights and dropout seed state on every side
        with tf.device(device):
            self.model = build_model(build, spec, mixed_precision)  # as the teacher stage builds it
            if weights is not None:
                self.model.set_weights(weights)
            self.trainer = Trainer(self.model, training, self._tmp.name, xla=xla, seed=SEED)
        self.mixed = self.trainer.mixed
        self.batch_size = training.batch_size
        self.first_step_s = float("nan")
        self.warmup_losses: list[float] = []
        self.round_s: list[float] = []
        self.round_cpu_s: list[float] = []
        self._next = 0

    def _step(self, data) -> float:
        import tensorflow as tf

        x, y, w = data[self._next % len(data)]
        self._next += 1
        with tf.device(self.device):
            return float(self.trainer.train_step(x, y, w))

    def warmup(self, data, steps: int) -> float:
        """Runs `steps` steps (the first traces/compiles); returns the mean time of the steps after the first."""
        with timer() as t:
            self.warmup_losses.append(self._step(data))
        self.first_step_s = t[0]
        with timer() as t:
            for _ in range(steps - 1):
                self.warmup_losses.append(self._step(data))
        return t[0] / max(1, steps - 1)

    def timed_round(self, data, steps: int) -> None:
        cpu0 = time.process_time()
        with timer() as t:
            for _ in range(steps):
                self._step(data)
        self.round_cpu_s.append(time.process_time() - cpu0)
        self.round_s.append(t[0])

    def samples_per_s(self, steps: int) -> float:
        return steps * self.batch_size / statistics.median(self.round_s)

    def cores_busy(self) -> float:
        return sum(self.round_cpu_s) / sum(self.round_s)

    def close(self) -> None:
        self.trainer.tb.close()
        self._tmp.cleanup()


def _rel_diff(a: list[float], b: list[float]) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a_ - b_) / np.maximum(np.abs(b_), 1e-12)


def _one_step_check(data, training: Training) -> dict[str, Any]:
    """Sanity: does one step compute the same loss with and without XLA? Dropout masks come from different
    RNG lowerings under XLA, so the check runs on a dropout-free copy of the student (same weights, same
    batches); step 2 also checks the first optimizer update. The timed pair's warm-up losses (dropout on) are
    reported next to it."""
    spec = STUDENT.model_copy(update={"dropout": 0.0})
    off = _Side(spec, training, xla=False, device="/CPU:0", label="check-off")
    on = _Side(spec, training, xla=True, device="/CPU:0", label="check-on", weights=off.model.get_weights())
    try:
        off.warmup(data, SANITY_STEPS)
        on.warmup(data, SANITY_STEPS)
    finally:
        off.close()
        on.close()
    rel = _rel_diff(off.warmup_losses, on.warmup_losses)
    return dict(one_step_loss_match=bool(rel.max() <= LOSS_RTOL), loss_rtol=LOSS_RTOL,
                one_step_loss={"xla_off": off.warmup_losses, "xla_on": on.warmup_losses},
                one_step_loss_rel_diff=[float(r) for r in rel],
                one_step_check=f"{SANITY_STEPS} steps from identical weights on the same batches, dropout 0 "
                               f"(step 2 includes the first Adam update); match = every rel diff <= {LOSS_RTOL}")


# ------------------------------------------------------------------------------------------------------ CPU

def bench_student_cpu() -> list[dict]:
    import tensorflow as tf

    training = Training()
    data = _tensors(_synthetic_batches(training, STUDENT.input_frames, 1))
    cpu = "/CPU:0"

    # One throwaway step first: process-level start-up (kernel registration, thread pools) would otherwise
    # land in whichever side's first step came first.
    with timer() as t_proc:
        s = _Side(STUDENT, training, xla=False, device=cpu, label="proc-warmup")
        s.warmup(data, 1)
        s.close()

    off = _Side(STUDENT, training, xla=False, device=cpu, label="xla-off")
    on = _Side(STUDENT, training, xla=True, device=cpu, label="xla-on", weights=off.model.get_weights())
    try:
        step_est = {"xla_off": off.warmup(data, WARMUP_STEPS), "xla_on": on.warmup(data, WARMUP_STEPS)}
        log(f"[bench]   training: first step (trace) xla off {off.first_step_s:.2f} s, "
            f"xla on (trace + compile) {on.first_step_s:.2f} s; warm step xla off {step_est['xla_off'] * 1e3:.1f} ms, "
            f"on {step_est['xla_on'] * 1e3:.1f} ms")
        for _ in range(ROUNDS):  # alternate, so drifting load on a shared box hits both sides alike
            off.timed_round(data, TIMED_STEPS)
            on.timed_round(data, TIMED_STEPS)
        thr_off, thr_on = off.samples_per_s(TIMED_STEPS), on.samples_per_s(TIMED_STEPS)
        dropout_rel = _rel_diff(off.warmup_losses, on.warmup_losses)
        log(f"[bench]   training: {STUDENT.name} CPU xla off {thr_off:.0f} samples/s, xla on {thr_on:.0f} "
            f"samples/s ({thr_on / thr_off:.2f}x); cores busy {off.cores_busy():.2f} / {on.cores_busy():.2f}")
        params = off.model.count_params()
    finally:
        off.close()
        on.close()
    with timer() as t_check:
        match = _one_step_check(data, training)
    log(f"[bench]   training: one-step loss match xla on/off (dropout 0): {match['one_step_loss_match']} "
        f"(rel diffs {match['one_step_loss_rel_diff']}); with dropout, first step rel diff {dropout_rel[0]:.2g}")

    ctx = dict(model=STUDENT.name, params=params, batch_size=training.batch_size, input_frames=STUDENT.input_frames,
               device="CPU", cpu_count=os.cpu_count(), distinct_batches=N_BATCHES, warmup_steps_excluded=WARMUP_STEPS,
               timed_steps_per_round=TIMED_STEPS, rounds=ROUNDS,
               tf_intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
               tf_inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
               process_warmup_s_excluded=t_proc[0])
    return [
        result("train_samples_per_s", thr_off, "samples/s", xla=False, first_step_s=off.first_step_s,
               wall_s_all_rounds=off.round_s, cpu_s_all_rounds=off.round_cpu_s, cores_busy=off.cores_busy(),
               timed="float(Trainer.train_step(x, y, w)) per step, as in Trainer.fit", **ctx),
        comparison("xla_speedup", thr_on, thr_off, unit="samples/s",
                   baseline_name="same model/batches/steps/initial weights, Trainer(xla=False)",
                   first_step_s={"xla_off": off.first_step_s, "xla_on": on.first_step_s},
                   first_step_note="xla_off: tf.function tracing; xla_on: tracing + XLA compilation; both excluded",
                   wall_s_all_rounds={"xla_off": off.round_s, "xla_on": on.round_s},
                   cpu_s_all_rounds={"xla_off": off.round_cpu_s, "xla_on": on.round_cpu_s},
                   cores_busy={"xla_off": off.cores_busy(), "xla_on": on.cores_busy()},
                   with_dropout_warmup_loss_rel_diff=[float(r) for r in dropout_rel],
                   with_dropout_note="the timed pair (dropout 0.1) draws different dropout masks with and without "
                                     "XLA, so its losses differ from step 1; see one_step_loss_match",
                   one_step_check_s=t_check[0],
                   default_resolution=f"Training(xla={training.xla.value}) -> xla="
                                      f"{use_xla(training, gpu=False)} on a CPU-only machine",
                   precision="float32 (Training(mixed_precision=auto) -> "
                             f"{use_mixed_precision(training, gpu=False)} on the CPU)",
                   **match, **ctx),
    ]


def bench_teachers_cpu() -> list[dict]:
    training = Training()
    out = []
    for i, spec in enumerate(load_config("default").teachers):
        metric = f"train_samples_per_s_{spec.name.replace('-', '_')}"
        data = _tensors(_synthetic_batches(training, spec.input_frames, 10 + i))
        side = _Side(spec, training, xla=False, device="/CPU:0", label=spec.name)
        try:
            est = side.warmup(data, WARMUP_STEPS)
            steps = int(min(TIMED_STEPS, max(5, round(TEACHER_ROUND_BUDGET_S / max(est, 1e-6)))))
            for _ in range(ROUNDS):
                side.timed_round(data, steps)
            thr = side.samples_per_s(steps)
            log(f"[bench]   training: teacher {spec.name} CPU {thr:.0f} samples/s ({steps} steps x {ROUNDS} rounds, "
                f"first step {side.first_step_s:.2f} s)")
            out.append(result(metric, thr, "samples/s", model=spec.name, architecture=spec.architecture.value,
                              params=side.model.count_params(), batch_size=training.batch_size,
                              input_frames=spec.input_frames, device="CPU", xla=False,
                              warmup_steps_excluded=WARMUP_STEPS, timed_steps_per_round=steps, rounds=ROUNDS,
                              first_step_s=side.first_step_s, wall_s_all_rounds=side.round_s,
                              cpu_s_all_rounds=side.round_cpu_s, cores_busy=side.cores_busy(),
                              steps_note=f"timed steps sized to ~{TEACHER_ROUND_BUDGET_S} s per round "
                                         f"(5..{TIMED_STEPS}) to fit the time budget"))
        finally:
            side.close()
        out[-1]["load_avg_1m_after"] = load_average()
    return out


# ------------------------------------------------------------------------------------------------------ GPU

def _tf_gpu_status() -> tuple[bool, str]:
    """Whether TensorFlow (not CuPy: training runs in TF) can use a GPU, and why not when it cannot."""
    import tensorflow as tf

    from components.common.xp import gpu_status

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return True, f"TensorFlow GPUs: {[g.name for g in gpus]}"
    cupy_ok, cupy_why = gpu_status()
    build = "built with CUDA" if tf.test.is_built_with_cuda() else "a CPU-only build (no CUDA)"
    return False, (f"TensorFlow {tf.__version__} sees no GPU (it is {build}); CuPy: "
                   f"{cupy_why if not cupy_ok else 'usable (' + cupy_why + '), but training runs in TensorFlow'}")


def bench_gpu() -> list[dict]:
    ok, why = _tf_gpu_status()
    if not ok:
        log(f"[bench]   training gpu: skipped ({why})")
        return [result("gpu_train_samples_per_s", None, "samples/s", skipped=f"no usable GPU: {why}"),
                result("mixed_precision_speedup", None, "x", skipped=f"no usable GPU: {why}")]

    training = Training()
    xla = use_xla(training, gpu=True)
    mixed_default = use_mixed_precision(training, gpu=True)
    data = _tensors(_synthetic_batches(training, STUDENT.input_frames, 2))
    fp32 = _Side(STUDENT, training, xla=xla, device="/GPU:0", label="gpu-fp32", mixed_precision=False)
    mixed = _Side(STUDENT, training, xla=xla, device="/GPU:0", label="gpu-mixed", mixed_precision=True,
                  weights=fp32.model.get_weights())
    try:
        if not mixed.mixed or fp32.mixed:
            raise RuntimeError(f"Trainer.mixed is {fp32.mixed} / {mixed.mixed} for the float32 / mixed sides")
        fp32.warmup(data, GPU_WARMUP_STEPS)
        mixed.warmup(data, GPU_WARMUP_STEPS)
        for _ in range(ROUNDS):
            fp32.timed_round(data, GPU_TIMED_STEPS)
            mixed.timed_round(data, GPU_TIMED_STEPS)
        thr32, thr16 = fp32.samples_per_s(GPU_TIMED_STEPS), mixed.samples_per_s(GPU_TIMED_STEPS)
        rel = _rel_diff(fp32.warmup_losses[:1], mixed.warmup_losses[:1])[0]
        log(f"[bench]   training gpu: float32 {thr32:.0f} samples/s, mixed_float16 {thr16:.0f} samples/s "
            f"({thr16 / thr32:.2f}x), xla={xla}")
    finally:
        fp32.close()
        mixed.close()
    default_thr, default_side = (thr16, mixed) if mixed_default else (thr32, fp32)
    ctx = dict(model=STUDENT.name, batch_size=training.batch_size, device=why, xla=xla,
               xla_note=f"Training(xla={training.xla.value}) resolved for a GPU", distinct_batches=N_BATCHES,
               warmup_steps_excluded=GPU_WARMUP_STEPS, timed_steps_per_round=GPU_TIMED_STEPS, rounds=ROUNDS)
    return [
        result("gpu_train_samples_per_s", default_thr, "samples/s",
               precision="mixed_float16" if mixed_default else "float32",
               precision_note=f"Training(mixed_precision={training.mixed_precision.value}) resolved for a GPU",
               float32_samples_per_s=thr32, mixed_float16_samples_per_s=thr16,
               first_step_s=default_side.first_step_s, wall_s_all_rounds=default_side.round_s, **ctx),
        comparison("mixed_precision_speedup", thr16, thr32, unit="samples/s",
                   baseline_name="float32, same model/batches/steps/initial weights",
                   precision="trainer.build_model(mixed_precision=True): float16 compute, float32 variables and "
                             "output, LossScaleOptimizer",
                   first_step_s={"float32": fp32.first_step_s, "mixed_float16": mixed.first_step_s},
                   first_step_loss={"float32": fp32.warmup_losses[0], "mixed_float16": mixed.warmup_losses[0]},
                   first_step_loss_rel_diff=rel,
                   wall_s_all_rounds={"float32": fp32.round_s, "mixed_float16": mixed.round_s}, **ctx),
    ]


def _gpu_or_error() -> list[dict]:
    """bench_gpu, but a failure on the GPU path is recorded (value null) instead of dropping the CPU results."""
    try:
        return bench_gpu()
    except Exception as e:  # noqa: BLE001 - reported in the JSON and the log, never hidden
        log(f"[bench]   training gpu: FAILED: {e!r}")
        return [result("gpu_train_samples_per_s", None, "samples/s", error=f"GPU path failed: {e!r}"),
                result("mixed_precision_speedup", None, "x", error=f"GPU path failed: {e!r}")]


def bench_validation_scoring(stream_s: float = 300.0, rounds: int = 3) -> list[dict]:
    from components.training.models import build
    from components.training.scoring import model_scorer, stream_probabilities

    config = load_config("default")
    raw = np.random.default_rng(SEED).integers(0, 600, (int(stream_s * 100), 40)).astype(np.uint16)
    out = []
    for spec in (config.distillation.student, config.teachers[0]):
        model = build(spec)
        whole = model_scorer(model, spec)
        windows = lambda r: stream_probabilities(lambda x: model(x, training=False).numpy(), r,  # noqa: E731
                                                 spec.input_frames, spec.stride)
        whole(raw[:1000]), windows(raw[:1000])  # warm-up: tracing
        times: dict[str, list[float]] = {"whole": [], "windows": []}
        for _ in range(rounds):
            for name, f in (("whole", whole), ("windows", windows)):
                with timer() as t:
                    scores = f(raw)
                times[name].append(t[0])
                if name == "whole":
                    a = scores
        diff = float(np.max(np.abs(a - windows(raw))))
        w, b = statistics.median(times["whole"]), statistics.median(times["windows"])
        log(f"[bench] validation scoring {spec.name}: whole stream {w:.3f} s, window by window {b:.2f} s")
        out.append(comparison(f"validation_scoring_speedup_{spec.name.replace('-', '_')}", stream_s / w, stream_s / b,
                              baseline_name="stream_probabilities (window by window)", unit="audio s per s",
                              stream_s=stream_s, windows=len(a), max_abs_difference=diff, rounds=rounds,
                              load_avg_1m=load_average()))
    return out


def run() -> list[dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import: quiet C++ logs
    return bench_student_cpu() + bench_teachers_cpu() + bench_validation_scoring() + _gpu_or_error()
