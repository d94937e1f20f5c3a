"""The probe: a small MixedNet (`mining.probe`) trained in the stage on the clean *training* clips, used as the
scorer when no previous production model is given.

Examples are windows of exactly `input_frames` device features: a positive ends in the last 0.15 s of its window
(where a streaming detector fires), a negative or adversarial clip ends there too in one variant and lies anywhere
in the window in the other (so position alone is no clue), over a bed of silence,
coloured noise or music-like tones; plus windows of bed alone. Each window is featurised after one second of its
bed, so the frontend's noise estimate has settled as it has in the streaming scan. The beds are synthetic
(seeded): the probe depends on the training clips only, never on the background audio it will scan, so adding
background audio later keeps the probe, and the session, of the earlier runs.

The trained probe is cached under `<session_root>/probes/<identity>/` (Keras file + NumPy weights): a repeated run
on the same clips loads it without TensorFlow.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.runtime.scorers import NumpyMixedNet, _Block, identity_hash
from components.common.artifacts import DatasetLayout, Label, ManifestRecord, ModelLayout, Split
from components.common.audio import read_wav_int16
from components.common.config import Mining, ModelSpec
from components.common.frontend import features_uint16
from components.common.progress import progress
from components.common.jsonio import dumps

RECIPE = "probe-v2"  # bump when the recipe below changes: it is part of the probe's identity
CLIP_LABELS = {Label.POSITIVE: 1.0, Label.NEGATIVE: 0.0, Label.ADVERSARIAL_NEGATIVE: 0.0}
VARIANTS = 2  # windows per clip (different beds and placements)
WARMUP_S = 1.0  # bed audio before each window, featurised and dropped
POSITIVE_END_MARGIN_S = (0.0, 0.15)
BED_WINDOWS_MIN = 64
LEARNING_RATE = 0.005
SR = 16_000


@dataclass
class ProbeResult:
    scorer: NumpyMixedNet
    identity: str
    trained: bool  # False: loaded from the cache
    info: dict[str, Any]
    directory: Path


def training_clips(dataset: DatasetLayout) -> list[ManifestRecord]:
    return sorted((r for r in dataset.read_manifest() if r.split is Split.TRAIN and r.label in CLIP_LABELS),
                  key=lambda r: (r.label.value, r.path))


def probe_identity(mining: Mining, seed: int, clips: list[ManifestRecord]) -> str:
    return identity_hash({"recipe": RECIPE, "spec": mining.probe.model_dump(mode="json"), "steps": mining.probe_steps,
                          "batch_size": mining.probe_batch_size, "seed": seed, "learning_rate": LEARNING_RATE,
                          "clips": [[r.label.value, r.sha256] for r in clips]})[:16]


def _beds(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Long float beds at -20 dBFS: silence, coloured noise (two colours), music-like tones."""
    from components.synthesis.ambient import coloured_noise, music_like

    return [np.zeros(n), coloured_noise(n, rng), coloured_noise(n, rng), music_like(n, rng)]


def _bed_segment(beds: list[np.ndarray], rng: np.random.Generator, n: int, level_db: tuple[float, float]) -> np.ndarray:
    bed = beds[int(rng.integers(len(beds)))]
    start = int(rng.integers(0, len(bed) - n + 1))
    return bed[start:start + n] * 10 ** (rng.uniform(*level_db) / 20) / 0.1  # beds sit at -20 dBFS = 0.1 rms


def build_examples(dataset: DatasetLayout, clips: list[ManifestRecord], spec: ModelSpec,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw uint16 features [N, input_frames, 40], labels [N]) for the probe, a function of the clips and seed."""
    rng = np.random.default_rng([seed, 83])
    frames = spec.input_frames
    n = (frames + 2) * 160  # samples giving exactly `frames` features
    warm = int(WARMUP_S * SR)
    beds = _beds(rng, 20 * SR)
    x, y = [], []

    def window(audio: np.ndarray | None, at_end: bool, level_db: tuple[float, float]) -> np.ndarray:
        total = _bed_segment(beds, rng, warm + n, level_db)
        if audio is not None:
            a = audio.astype(np.float64) / 32768.0
            if at_end:
                end = n - int(rng.uniform(*POSITIVE_END_MARGIN_S) * SR)
                a = a[-end:]
                start = end - len(a)
            elif len(a) >= n:
                off = int(rng.integers(0, len(a) - n + 1))
                a, start = a[off:off + n], 0
            else:
                start = int(rng.integers(0, n - len(a) + 1))
            total[warm + start:warm + start + len(a)] += a
        pcm = np.clip(np.round(total * 32767), -32768, 32767).astype(np.int16)
        return features_uint16(pcm)[-frames:]

    for r in clips:
        audio = read_wav_int16(dataset.root / r.path)
        for v in range(VARIANTS):
            # positives end near the window's end; negatives too in one variant (so the position alone
            # says nothing), anywhere in the others
            x.append(window(audio, CLIP_LABELS[r.label] == 1.0 or v == 0, (-60.0, -30.0)))
            y.append(CLIP_LABELS[r.label])
    for _ in range(max(BED_WINDOWS_MIN, len(clips))):
        x.append(window(None, False, (-60.0, -15.0)))
        y.append(0.0)
    return np.stack(x).astype(np.uint16), np.asarray(y, np.float32)


def train(x_raw: np.ndarray, y: np.ndarray, mining: Mining, seed: int, workdir: Path, show_progress: bool = True):
    """Train the probe MixedNet with the shared Trainer; balanced batches (half positives)."""
    import keras

    from components.common.config import Toggle, Training
    from components.common.frontend import FLOAT_SCALE
    from components.training.models import build
    from components.training.trainer import Trainer

    keras.utils.set_random_seed(seed)
    model = build(mining.probe)
    training = Training(steps=[mining.probe_steps], learning_rates=[LEARNING_RATE], batch_size=mining.probe_batch_size,
                        eval_every_steps=mining.probe_steps, label_smoothing=0.0, negative_class_weight=1.0,
                        spec_augment=Toggle.OFF, xla=Toggle.OFF, mixed_precision=Toggle.OFF,
                        checkpoint_root=str(workdir))
    trainer = Trainer(model, training, workdir, xla=False, seed=seed)
    pos, neg = np.flatnonzero(y == 1.0), np.flatnonzero(y == 0.0)
    if not pos.size or not neg.size:
        raise ValueError(f"the probe needs positive and negative training clips (found {pos.size} positive and "
                         f"{neg.size} negative windows)")
    x = x_raw.astype(np.float32) * np.float32(FLOAT_SCALE)
    b = mining.probe_batch_size
    ones = np.ones(b, np.float32)
    losses = []
    for step in progress(range(mining.probe_steps), desc="probe", unit="step", disable=not show_progress):
        rng = np.random.default_rng([seed, 89, step])
        idx = np.concatenate([rng.choice(pos, b // 2), rng.choice(neg, b - b // 2)])
        losses.append(trainer.step(x[idx], y[idx], ones))
    rng = np.random.default_rng([seed, 97])
    calibrate_batch_norm(model, x[np.concatenate([rng.choice(pos, 1024), rng.choice(neg, 1024)])])
    probs = np.concatenate([np.asarray(model(x[i:i + 1024], training=False)).reshape(-1)
                            for i in range(0, len(x), 1024)])
    return model, losses, probs


def calibrate_batch_norm(model, x: np.ndarray) -> None:
    """Set every BatchNorm's moving statistics to those of `x` (drawn like the training batches). A few hundred
    steps leave the moving averages (momentum 0.99) far from the trained network's statistics, and inference
    would use those."""
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m


def save_numpy(net: NumpyMixedNet, path: Path) -> None:
    arrays = {"first": net.first, "head": net.head, "head_bias": np.float32(net.head_bias)}
    for b, blk in enumerate(net.blocks):
        arrays[f"b{b}_sizes"] = np.asarray(blk.sizes, np.int64)
        arrays[f"b{b}_pointwise"], arrays[f"b{b}_bias"] = blk.pointwise, blk.bias
        for g, k in enumerate(blk.kernels):
            arrays[f"b{b}_dw{g}"] = k
    np.savez(path, **arrays)


def load_numpy(path: Path, spec: ModelSpec, identity: str) -> NumpyMixedNet:
    with np.load(path) as z:
        blocks = []
        for b, kernels in enumerate(spec.mixconv_kernels):
            blocks.append(_Block(z[f"b{b}_sizes"].tolist(), [z[f"b{b}_dw{g}"] for g in range(len(kernels))],
                                 z[f"b{b}_pointwise"], z[f"b{b}_bias"]))
        return NumpyMixedNet(spec, z["first"], blocks, z["head"], float(z["head_bias"]), kind="probe",
                             identity=identity)


def get_probe(dataset: DatasetLayout, mining: Mining, seed: int, threshold: float, *, show_progress: bool = True,
              log=lambda msg: print(msg, file=sys.stderr)) -> ProbeResult:
    """The cached probe for these clips, or a newly trained one (then cached)."""
    clips = training_clips(dataset)
    key = probe_identity(mining, seed, clips)
    identity = f"probe:{key}"
    root = Path(mining.session_root).resolve() / "probes"
    final = root / key
    if (final / "probe.npz").is_file() and (final / "probe.json").is_file():
        info = json.loads((final / "probe.json").read_text())
        log(f"background_mining: probe {key} from the cache ({final})")
        return ProbeResult(load_numpy(final / "probe.npz", mining.probe, identity), identity, False, info, final)

    t0 = time.monotonic()
    log(f"background_mining: training probe {key} on {len(clips)} training clips, {mining.probe_steps} steps")
    x, y = build_examples(dataset, clips, mining.probe, seed)
    t1 = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        model, losses, probs = train(x, y, mining, seed, tmp / "trainer", show_progress)
        net = NumpyMixedNet.from_keras(model, mining.probe, kind="probe", identity=identity)
        model.save(tmp / "probe.keras")
        ModelLayout(tmp).write_spec({"spec": mining.probe.model_dump(mode="json"),
                                     "features": {"input_frames": mining.probe.input_frames,
                                                  "stride_frames": mining.probe.stride},
                                     "output": ModelLayout.OUTPUT_KIND})
        save_numpy(net, tmp / "probe.npz")
        pos = y == 1.0
        info = {"identity": identity, "training_clips": len(clips), "windows": int(len(y)),
                "positive_windows": int(pos.sum()), "steps": mining.probe_steps,
                "batch_size": mining.probe_batch_size, "learning_rate": LEARNING_RATE,
                "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:])),
                "positives_above_threshold": float(np.mean(probs[pos] > threshold)) if pos.any() else None,
                "negatives_above_threshold": float(np.mean(probs[~pos] > threshold)) if (~pos).any() else None,
                "examples_s": round(t1 - t0, 2), "train_s": round(time.monotonic() - t1, 2)}
        (tmp / "probe.json").write_text(dumps(info, indent=2))
        shutil.rmtree(tmp / "trainer", ignore_errors=True)  # optimizer state and TensorBoard of a finished probe
        try:
            os.replace(tmp, final)
        except OSError:  # another run cached the same probe meanwhile: identical inputs, keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return ProbeResult(load_numpy(final / "probe.npz", mining.probe, identity), identity, False,
                               json.loads((final / "probe.json").read_text()), final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"background_mining: probe trained in {info['examples_s'] + info['train_s']:.1f} s "
        f"(loss {info['loss_first']:.3f} -> {info['loss_last']:.3f})")
    return ProbeResult(net, identity, True, info, final)
