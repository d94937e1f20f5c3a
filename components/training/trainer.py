"""The training loop teachers and the student share: step-based learning-rate phases, weighted and
label-smoothed binary cross-entropy, device-like validation, checkpoint selection, resume, TensorBoard."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from components.common import atomic, cpus
from components.training.batches import Batch
from components.common.config import ConfigError, Toggle, Training, WeightAveraging
from components.common.metrics import (ESPHOME_DETECTOR, Checkpoint, DetectorSettings, OperatingPoint, StreamScores,
                                       at_fa_target, better_checkpoint, evaluate)
from components.common.observability import StepProfiler
from components.common.progress import progress
from components.common.jsonio import dumps


@dataclass
class EvalRecord:
    step: int
    fa_per_hour: float
    frr: float
    cutoff: float
    loss: float

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.step, self.fa_per_hour, 1.0 - self.frr)


@dataclass
class TrainResult:
    best: EvalRecord | None
    history: list[EvalRecord] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0
    steps_run: int = 0
    xla: bool = False


def lr_at(training: Training, step: int) -> float:
    edge = 0
    for steps, lr in zip(training.steps, training.learning_rates):
        edge += steps
        if step < edge:
            return lr
    return training.learning_rates[-1]


def use_xla(training: Training, gpu: bool) -> bool:
    return training.xla is Toggle.ON or (training.xla is Toggle.AUTO and gpu)


def use_mixed_precision(training: Training, gpu: bool, cpu_float16: set[str] | None = None) -> bool:
    """float16 compute: `auto` only on a GPU; `on` anywhere except a CPU with native float16 (`cpu_float16`,
    read from /proc/cpuinfo when None), where oneDNN's float16 kernels gave NaN losses from the first step
    (issue 19) and nothing here has shown them to train correctly."""
    if training.mixed_precision is Toggle.OFF or (training.mixed_precision is Toggle.AUTO and not gpu):
        return False
    if not gpu:
        flags = cpus.native_float16_flags() if cpu_float16 is None else cpu_float16
        if flags:
            raise ConfigError(f"training.mixed_precision: on is refused on this CPU ({', '.join(sorted(flags))}): "
                              "its native float16 kernels train to NaN; set training.mixed_precision: auto or off "
                              "(float32 on the CPU), or train on a GPU")
    return True


class NonFiniteLoss(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite: every step after it would be garbage,
    and a model trained on would be saved as if nothing had happened."""

    def __init__(self, model: str, step: int, total: int, what: str, loss: float, saved_step: int) -> None:
        self.step, self.what, self.loss = step, what, loss
        saved = f"the last saved state is step {saved_step}" if saved_step else "nothing was saved yet"
        super().__init__(f"training {model} stopped at step {step} of {total}: {what} (loss {loss}); {saved}. "
                         "Lower training.learning_rates, check the features for NaN, or set "
                         "training.mixed_precision: off")


def build_model(builder: Callable, spec, mixed_precision: bool):
    """Build under the right Keras dtype policy: float16 compute (float32 variables and output) when mixed."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    try:
        return builder(spec)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def operating_point(scores: StreamScores, target_fa_per_hour: float,
                    settings: DetectorSettings = ESPHOME_DETECTOR) -> OperatingPoint:
    """The best cutoff that meets the FA/h target (or, if none does, the one with the fewest false accepts)."""
    points = evaluate(scores, settings)
    best = at_fa_target(points, target_fa_per_hour)
    return best or min(points, key=lambda p: (p.fa_per_hour, p.frr))


def training_strategy():
    """MirroredStrategy over every visible GPU when there are several, else TensorFlow's default strategy.
    Build the model and the Trainer inside `strategy.scope()`."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


class Trainer:
    """One optimizer step per batch. Constructed inside a strategy scope it trains data-parallel: the batch
    is split across replicas and the weighted loss is normalised by the whole batch's weight, so the
    gradient equals the single-device one (up to BatchNorm's per-replica statistics)."""

    def __init__(self, model, training: Training, workdir: Path, *, xla: bool, seed: int,
                 loss_fn: Callable | None = None) -> None:
        import keras
        import tensorflow as tf

        from components.training.models import split_body_head

        self.model, self.training, self.workdir, self.xla = model, training, Path(workdir), xla
        self.workdir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(seed)
        self.strategy = tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.mixed = any(getattr(layer, "compute_dtype", "float32") == "float16" for layer in model.layers)
        # under `ema` Adam keeps the average itself (updated in the same compiled step, saved with its variables)
        self._adam = self.optimizer = keras.optimizers.Adam(
            learning_rate=training.learning_rates[0], use_ema=training.weight_averaging is WeightAveraging.EMA,
            ema_momentum=training.ema_decay)
        if self.mixed:  # dynamic loss scaling keeps float16 gradients from underflowing
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(model.trainable_variables)
        bce = keras.losses.BinaryCrossentropy(label_smoothing=training.label_smoothing, reduction="none")
        self.loss_fn = loss_fn or (lambda y, p, w, total: tf.reduce_sum(bce(y[:, None], p) * w) / total)

        if training.recompute_gradients:
            # Keep activations of the body out of memory: recompute them in the backward pass. Only the
            # body is recomputed; the head's dropout would draw a different mask the second time.
            body, head = split_body_head(model)
            body_fwd = tf.recompute_grad(lambda x: body(x, training=True))
            self.forward = lambda x: head(body_fwd(x), training=True)
        else:
            self.forward = lambda x: model(x, training=True)

        def replica_step(x, y, w, total):
            """The loss and the count of non-finite gradient entries (0 under loss scaling, whose optimizer
            skips a step with overflowed gradients and lowers the scale: overflow there is routine)."""
            with tf.GradientTape() as tape:
                loss = self.loss_fn(y, self.forward(x), w, total)
                scaled = self.optimizer.scale_loss(loss) if self.mixed else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
            bad = tf.constant(0.0) if self.mixed else tf.add_n(
                [tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32)) for g in grads if g is not None])
            return loss, bad

        def checked_step(x, y, w):
            return replica_step(x, y, w, tf.reduce_sum(w))

        def distributed(x, y, w, total):
            losses, bad = self.strategy.run(replica_step, args=(x, y, w, total))
            return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None),
                    self.strategy.reduce(tf.distribute.ReduceOp.SUM, bad, axis=None))

        # train_step (the loss only: benchmarks and tests time and compare it) and the checked step fit uses
        self.train_step = tf.function(lambda x, y, w: checked_step(x, y, w)[0], jit_compile=xla,
                                      reduce_retracing=True)
        self._checked_step = tf.function(checked_step, jit_compile=xla, reduce_retracing=True)
        self._distributed = tf.function(distributed, reduce_retracing=True)
        self.tb = tf.summary.create_file_writer(str(self.workdir / "tensorboard"))

    def step(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
        """One optimizer step on a host batch, on one device or split across the strategy's replicas."""
        return self.checked_step(x, y, w)[0]

    def checked_step(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, int]:
        """One optimizer step: the loss and how many gradient entries were NaN or infinite."""
        import tensorflow as tf

        if self.replicas == 1:
            loss, bad = self._checked_step(tf.constant(x), tf.constant(y), tf.constant(w))
            return float(loss), int(bad)
        n = self.replicas

        def shard(a):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(a[ctx.replica_id_in_sync_group::n]))

        loss, bad = self._distributed(shard(x), shard(y), shard(w), tf.constant(np.float32(w.sum())))
        return float(loss), int(bad)

    @contextlib.contextmanager
    def judged_weights(self):
        """Inside, the model holds the weights that are validated, checkpointed and shipped: the moving average
        under `training.weight_averaging: ema`, otherwise the live ones. The live weights come back after."""
        if not self._adam.use_ema:
            yield
            return
        live = [v.numpy() for v in self.model.trainable_variables]
        # Keras 3.15 has no public accessor for the averages; the test recomputes them by hand, so a change shows
        for var, average in zip(self.model.trainable_variables, self._adam._model_variables_moving_average):
            var.assign(average)
        try:
            yield
        finally:
            for var, value in zip(self.model.trainable_variables, live):
                var.assign(value)

    # --- resumable state -------------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.workdir / "state.json"

    def save_state(self, step: int, result: TrainResult) -> None:
        """Weights and optimizer under names of their step, then state.json naming them (atomically): a kill at
        any point leaves the previous state.json with the files it names, never new weights under an old step."""
        weights, optimizer = f"last-{step:07d}.weights.h5", f"optimizer-{step:07d}.npz"
        with atomic.replaced(self.workdir / weights) as tmp:
            self.model.save_weights(str(tmp))
        with atomic.replaced(self.workdir / optimizer) as tmp:
            np.savez(tmp, **{f"optimizer_{i}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)},
                     **{f"rng_{i}": np.asarray(v) for i, v in enumerate(self._rng_variables())})
        state = {"step": step, "weights": weights, "optimizer": optimizer, "result": _result_json(result)}
        atomic.write_text(self._state_file, dumps(state))
        for old in [*self.workdir.glob("last-*.weights.h5"), *self.workdir.glob("optimizer-*.npz")]:
            if old.name not in (weights, optimizer):
                old.unlink(missing_ok=True)

    def _rng_variables(self) -> list:
        """The model variables save_weights leaves out: the dropout layers' seed-generator states. Restored on
        resume, the masks after it are those an uninterrupted run draws, so both end with the same weights."""
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def load_state(self) -> tuple[int, TrainResult]:
        if not self._state_file.is_file():
            return 0, TrainResult(best=None)
        state = json.loads(self._state_file.read_text())
        self.model.load_weights(str(self.workdir / state.get("weights", "last.weights.h5")))
        saved = np.load(self.workdir / state.get("optimizer", "optimizer.npz"))
        prefix = "optimizer_" if any(k.startswith("optimizer_") for k in saved.files) else "arr_"  # arr_: before rng
        for var, key in zip(self.optimizer.variables, _numbered(saved.files, prefix)):
            var.assign(saved[key])
        for var, key in zip(self._rng_variables(), _numbered(saved.files, "rng_")):
            var.assign(saved[key])
        result = _result_from_json(state["result"])
        result.resumed_from_step = state["step"]
        return state["step"], result

    # --- the loop ----------------------------------------------------------------------------------------
    def fit(self, next_batch: Callable[[int, int], Batch], validate: Callable[[], OperatingPoint],
            target_fa_per_hour: float, *, show_progress: bool = True, stop_after: int | None = None,
            profile_dir: Path | None = None, prefetch: bool = False) -> TrainResult:
        """Train to `training.total_steps`, judging the model with `validate` (its operating point on the
        validation split) every `training.eval_every_steps`; `stop_after` ends early (tests of resume use it). With
        `training.profile_steps` > 0 the first steps (data loading included) are cProfiled into `profile_dir`.
        `prefetch` draws each next batch on a worker thread while the step trains (`BatchPrefetcher`; off while
        profiling): worth it where drawing a batch runs TensorFlow (distillation's teachers), not for NumPy-only
        batches, whose worker holds the GIL the step needs (measured: teachers 4-14 % slower, students 26 % faster)."""
        import tensorflow as tf

        total = self.training.total_steps
        start, result = self.load_state()
        result.xla = self.xla
        steps = range(start, total)
        bar = progress(steps, total=total - start, desc=f"train {self.model.name}", unit="step",
                       disable=not show_progress)
        recent: list[float] = []
        saved_step = start
        profiler = StepProfiler(self.training.profile_steps, profile_dir or self.workdir)
        end = total if stop_after is None else min(total, start + stop_after)
        with BatchPrefetcher(next_batch, total, end, enabled=prefetch and self.training.profile_steps == 0) as batches:
            for step in bar:
                if step >= end:
                    break
                with profiler:
                    t0 = time.perf_counter()
                    batch = batches.take(step)
                    t1 = time.perf_counter()
                    self.optimizer.learning_rate.assign(lr_at(self.training, step))
                    loss, bad = self.checked_step(batch.x, batch.y, batch.weight)
                    t2 = time.perf_counter()
                if not np.isfinite(loss) or bad:
                    bar.close()
                    raise NonFiniteLoss(self.model.name, step + 1, total,
                                        "the loss is not finite" if not np.isfinite(loss)
                                        else f"{bad} gradient entries are not finite", loss, saved_step)
                recent.append(loss)
                result.losses.append(loss)
                result.steps_run += 1
                with self.tb.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", lr_at(self.training, step))
                    tf.summary.scalar("step_time_s", t2 - t1)
                    tf.summary.scalar("data_time_s", t1 - t0)  # with prefetch: the wait for the batch
                    tf.summary.scalar("augmentation_epoch", batch.epoch)
                done = step + 1
                if done % self.training.eval_every_steps == 0 or done == total:
                    with self.judged_weights():
                        point = validate()
                        rec = EvalRecord(done, point.fa_per_hour, point.frr, point.cutoff, float(np.mean(recent)))
                        recent = []
                        result.history.append(rec)
                        with self.tb.as_default(step=done):
                            tf.summary.scalar("val/frr", rec.frr)
                            tf.summary.scalar("val/fa_per_hour", rec.fa_per_hour)
                            tf.summary.scalar("val/cutoff", rec.cutoff)
                        if better_checkpoint(rec.checkpoint(), result.best.checkpoint() if result.best else None,
                                             target_fa_per_hour):
                            result.best = rec
                            with atomic.replaced(self.workdir / "best.weights.h5") as tmp:
                                self.model.save_weights(str(tmp))
                    self.save_state(done, result)
                    saved_step = done
        self.tb.flush()
        if result.best is not None:
            self.model.load_weights(str(self.workdir / "best.weights.h5"))
        return result


class BatchPrefetcher:
    """Draws step s+1's batch on a worker thread while step s trains: batch assembly (NumPy, and in distillation
    the teachers' forward passes) overlaps the optimizer step instead of adding to it. Batches are a function of
    (seed, step), so a run trains on exactly the batches it would draw inline. `enabled=False` draws inline."""

    def __init__(self, next_batch: Callable[[int, int], Batch], total: int, end: int, *, enabled: bool = True):
        from concurrent.futures import ThreadPoolExecutor

        self.next_batch, self.total, self.end = next_batch, total, end
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="next-batch") if enabled else None
        self.pending: tuple[int, object] | None = None

    def take(self, step: int) -> Batch:
        """Step `step`'s batch (drawn ahead when it was the one expected), and the next one started."""
        if self.pool is None:
            return self.next_batch(step, self.total)
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self.next_batch(step, self.total)
        self.pending = (step + 1, self.pool.submit(self.next_batch, step + 1, self.total)) if step + 1 < self.end \
            else None
        return batch

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a batch still being drawn (it is discarded) and stop the worker."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool, self.pending = None, None


def _numbered(keys: list[str], prefix: str) -> list[str]:
    """`prefix<i>` keys of an npz in the order of i."""
    return sorted((k for k in keys if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))


def _result_json(r: TrainResult) -> dict:
    return {"best": asdict(r.best) if r.best else None, "history": [asdict(h) for h in r.history],
            "losses": r.losses, "steps_run": r.steps_run}


def _result_from_json(d: dict) -> TrainResult:
    return TrainResult(best=EvalRecord(**d["best"]) if d["best"] else None,
                       history=[EvalRecord(**h) for h in d["history"]], losses=list(d["losses"]),
                       steps_run=d["steps_run"])
