"""quantization stage entry: a Keras MixedNet `Model` + the FeatureStore in, the ESPHome `.tflite` + v2 manifest out.

Parity is measured, not assumed: the float streaming model against the Keras model on held-out clips, and the
INT8 model in TFLite-Micro against the float streaming model. The manifest's arena is the smallest TFLite-Micro
accepts plus a margin; its cutoff is calibrated on validation audio to the FA/h target, on the device's uint8 path.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from components.common.artifacts import (EsphomeManifest, FeatureStoreLayout, Label, Lineage, ModelLayout,
                                         Split, code_version, sha256_file)
from components.training.batches import stream_windows
from components.common.config import WakelineConfig
from components.common.stages import StageResult
from components.common.frontend import FLOAT_SCALE
from components.common.evaluation import finite_or_none
from components.common.metrics import ESPHOME_DETECTOR
from components.common.names import slug
from components.runtime.arena import minimum_arena
from components.runtime.tflm import TflmStreamer
from components.runtime import device_path
from components.runtime.device_path import CALIBRATION_SAMPLES
from components.runtime.streaming import stream
from components.common.jsonio import dumps

MINIMUM_ESPHOME_VERSION = "2024.7.0"
ARENA_MARGIN_BYTES = 2048  # on top of the x86-64 minimum; ESPHome's 32-bit structs are smaller, not larger


def manifest(config: WakelineConfig, model_file: str, cutoff: float, arena: int) -> EsphomeManifest:
    """The v2 manifest of the model (`EsphomeManifest.to_doc` writes exactly ESPHome's v2 keys)."""
    return EsphomeManifest(wake_word=config.wake_word.title(), model=model_file,
                           probability_cutoff=round(float(cutoff), 2),
                           sliding_window_size=ESPHOME_DETECTOR.sliding_window, tensor_arena_size=int(arena),
                           feature_step_size=10, minimum_esphome_version=MINIMUM_ESPHOME_VERSION, version=2,
                           type="micro", author="wakeline", trained_languages=("en",))


def run(model_dir: Path, features_dir: Path, output_dir: Path, config: WakelineConfig,
        *, parity_clips: int = 40) -> dict[str, Any]:
    """Quantize, measure, write the ESPHome pair; tracked as one MLflow run."""
    from components.common.tracking import stage_run

    params = {"arena_margin_bytes": ARENA_MARGIN_BYTES, "calibration_samples": CALIBRATION_SAMPLES,
              "target_fa_per_hour": config.target_false_accepts_per_hour, "parity_clips": parity_clips}
    with stage_run("quantization", f"wakeline/{config.wake_word}", params,
                   tags={"config_sha256": config.sha256()}) as tracker:
        metadata = _quantize(model_dir, features_dir, output_dir, config, parity_clips)
        tracker.log_metrics({"file_size_bytes": metadata["file_size_bytes"],
                             "tensor_arena_size": metadata["tensor_arena_size"],
                             "probability_cutoff": metadata["probability_cutoff"],
                             **{f"parity_{k}": v for k, v in metadata["parity"].items()}})
        tracker.log_artifact(Path(output_dir))
    metadata["mlflow_run_id"] = tracker.run_id
    return metadata


def _quantize(model_dir: Path, features_dir: Path, output_dir: Path, config: WakelineConfig,
              parity_clips: int) -> dict[str, Any]:
    import keras

    t0 = time.monotonic()
    model_dir, out = Path(model_dir), Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = ModelLayout(model_dir)
    spec = layout.model_spec()
    model = keras.models.load_model(layout.model)
    store = FeatureStoreLayout(Path(features_dir))
    rng = np.random.default_rng([config.seed, 55])
    name = slug(config.wake_word)  # hey_jarvis.tflite, the ESPHome convention
    module, tflite_path = device_path.to_int8(model, spec, store, config.seed, out / f"{name}.tflite")

    # 1. float streaming vs Keras on held-out clips (the windows that align with the streaming stride)
    held_out = device_path.clips(store, Split.TEST, Label.POSITIVE, parity_clips, rng)
    float_diff = 0.0
    for raw in held_out:
        feats = raw.astype(np.float32) * np.float32(FLOAT_SCALE)
        streamed = stream(module, feats, spec.stride)
        usable = (len(feats) // spec.stride) * spec.stride
        offset = (usable - spec.input_frames) % spec.stride
        windows = stream_windows(feats[offset:usable], spec.input_frames, spec.stride)
        if len(windows):
            ref = model(windows, training=False).numpy()[:, 0]
            float_diff = max(float_diff, float(np.abs(ref - streamed[-len(ref):]).max()))

    # 2. TFLite-Micro vs float streaming on the same held-out clips (LSB = 1/256)
    exact = TflmStreamer(tflite_path, device=False)
    errors = []
    for raw in held_out:
        u8 = exact(raw).astype(np.float64) / 256
        fl = stream(module, raw.astype(np.float32) * np.float32(FLOAT_SCALE), spec.stride)
        errors.append(np.abs(u8 - fl[:len(u8)]) * 256)
    err = np.concatenate(errors) if errors else np.zeros(1)

    # 3. arena and cutoff
    arena_min = minimum_arena(tflite_path)
    if arena_min is None:
        raise RuntimeError(f"{tflite_path}: TFLite-Micro cannot load the converted model with any arena")
    judged = device_path.validate(tflite_path, store, config)
    chosen, at_cutoff = judged.chosen, judged.at_cutoff
    arena = int(arena_min + ARENA_MARGIN_BYTES)
    doc = manifest(config, tflite_path.name, chosen.cutoff, arena)
    doc.write(out / f"{name}.json")
    parity = {"float_stream_vs_keras_max_abs": float_diff, "tflm_vs_float_max_lsb": float(err.max()),
              "tflm_vs_float_mean_lsb": float(err.mean()), "tflm_vs_float_p99_lsb": float(np.percentile(err, 99)),
              "held_out_clips": len(held_out)}
    (out / "parity.json").write_text(dumps(parity, indent=2))
    return {"tflite": tflite_path.name, "manifest": f"{name}.json", "file_size_bytes": tflite_path.stat().st_size,
            "tensor_arena_min_bytes": arena_min, "tensor_arena_size": arena, "arena_margin_bytes": ARENA_MARGIN_BYTES,
            "probability_cutoff": doc.probability_cutoff,
            "validation_at_cutoff": {"frr": finite_or_none(chosen.frr), "worst_condition_fa_per_hour": finite_or_none(chosen.fa_per_hour),
                                     "breakdown": at_cutoff.as_dict()},
            "parity": parity, "wall_s": round(time.monotonic() - t0, 1),
            **Lineage(config.sha256(), code_version(),
                      {"model": sha256_file(layout.model),
                       "features_metadata": sha256_file(store.root / FeatureStoreLayout.METADATA)},
                      {tflite_path.name: sha256_file(tflite_path),
                       f"{name}.json": sha256_file(out / f"{name}.json")}).as_metadata()}


def run_stage(inputs: Mapping[str, Path], outputs: Mapping[str, Path], config: WakelineConfig) -> StageResult:
    """The stage entry (components.common.stages): the student `model` and `features` in, `tflite_model` out."""
    return StageResult({"tflite_model": run(inputs["model"], inputs["features"], outputs["tflite_model"], config)})
