"""Behaviour on the device's path: features streamed through TFLite-Micro as ESPHome runs them, then FRR and
FA/h at the manifest's cutoff and at the FA/h budgets. Verification and the cascade both measure with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.artifacts import LABEL_CODES, EsphomeManifest, FeatureStoreLayout, Label, Split
from components.common.errors import InputError
from components.common.evaluation import TaggedStream
from components.common.metrics import (ESPHOME_DETECTOR, DetectorSettings, OperatingPoint, StreamScores, at_fa_target,
                                       clip_detected, evaluate)
from components.runtime.tflm import TflmStreamer


class VerifyInputError(InputError, ValueError):
    """A verification input (model, audio folder, feature store) that is missing or not what it should be."""


FA_BUDGETS = (0.1, 0.5, 1.0, 2.0)
# The most samples (frames x channels) verify decodes from one recording: 2 h of 16 kHz mono, 460 MB as float32.
# A longer file would be decoded whole (several times that in memory) and streamed through TFLite-Micro at once.
MAX_RECORDING_SAMPLES = 2 * 3600 * 16_000


def audio_files(root: Path) -> list[Path]:
    """The wav/flac/ogg files under an audio folder, sorted; VerifyInputError when it is not a folder."""
    from components.common.audio import AUDIO_EXTENSIONS

    root = Path(root)
    if not root.exists():
        raise VerifyInputError(f"--audio {root}: no such folder")
    if not root.is_dir():
        raise VerifyInputError(f"--audio {root}: not a folder (give a folder: positive*/ sub-folders hold wake "
                               "words, everything else is ambient audio)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


@dataclass
class EvalAudio:
    """Raw frontend features (uint16 [frames, 40]) to stream: clips one by one, ambient as long streams."""

    positives: list[np.ndarray]
    negatives: list[np.ndarray]
    ambient: list[np.ndarray]

    @classmethod
    def from_store(cls, store: FeatureStoreLayout, split: Split) -> "EvalAudio":
        clips = store.open(split, 0)
        pick = lambda mask: [np.asarray(clips.clip(int(i))) for i in np.flatnonzero(mask)]  # noqa: E731
        positive = clips.labels == LABEL_CODES[Label.POSITIVE]
        return cls(pick(positive), pick(~positive), [np.asarray(raw) for raw in store.ambient(split)])

    @classmethod
    def from_audio_dir(cls, root: Path) -> "EvalAudio":
        """Any folder of wav/flac/ogg: files under a `positive*` sub-folder are wake words, the rest ambient.
        Raises VerifyInputError for a folder that is not one and for a file that does not decode."""
        from components.common.audio import (AudioReadError, audio_samples, read_audio, resample, to_int16, to_mono,
                                             wav_is_truncated)
        from components.common.frontend import features_uint16

        positives, ambient = [], []
        for path in audio_files(root):
            if path.suffix.lower() == ".wav" and wav_is_truncated(path):
                raise VerifyInputError(f"{path}: truncated (its WAV header declares more audio than the file holds); "
                                       "copy it again or move it out of the folder")
            try:
                frames, channels, rate = audio_samples(path)
                if frames * channels > MAX_RECORDING_SAMPLES:
                    raise VerifyInputError(
                        f"{path}: {frames / max(rate, 1) / 3600:.1f} h of audio ({channels} channel(s) at {rate} Hz) "
                        f"is more than verify reads from one file (2 h of 16 kHz mono, or as many samples); split it "
                        f"into shorter files (e.g. sox in.wav out.wav trim 0 3600 : newfile : restart)")
                data, sr = read_audio(path)
            except AudioReadError as e:
                raise VerifyInputError(f"{path}: not readable audio ({e}); convert it to wav/flac/ogg or move it "
                                       "out of the folder") from None
            if not len(data):
                raise VerifyInputError(f"{path}: no audio samples; remove it from the folder")
            if not np.isfinite(data).all():
                raise VerifyInputError(f"{path}: holds NaN or infinite samples; re-export it or move it out of the "
                                       "folder")
            feats = features_uint16(to_int16(resample(to_mono(data), sr)))
            is_pos = any(part.lower().startswith("positive") for part in path.relative_to(root).parts[:-1])
            (positives if is_pos else ambient).append(feats)
        return cls(positives, [], ambient)


@dataclass
class Scored:
    """The device's uint8 output streams for each positive clip, negative clip and ambient recording."""

    positives: list[np.ndarray]
    negatives: list[np.ndarray]
    ambient: list[np.ndarray]


def score(model: Path, audio: EvalAudio, manifest: EsphomeManifest) -> Scored:
    """Run every clip and recording through TFLite-Micro with the manifest's arena, as the device would."""
    tflm = TflmStreamer(model, manifest.tensor_arena_size)
    return Scored([tflm(raw) for raw in audio.positives], [tflm(raw) for raw in audio.negatives],
                  [tflm(raw) for raw in audio.ambient])


def behaviour(model: Path, audio: EvalAudio, manifest: EsphomeManifest,
              settings: DetectorSettings = ESPHOME_DETECTOR) -> tuple[dict[str, Any], list[OperatingPoint], dict]:
    """FRR and FA/h on the device's path (integer feature mapping, stride, uint8 window, refractory)."""
    return behaviour_of(score(model, audio, manifest), manifest, settings)


def behaviour_of(scored: Scored, manifest: EsphomeManifest,
                 settings: DetectorSettings = ESPHOME_DETECTOR) -> tuple[dict[str, Any], list[OperatingPoint], dict]:
    """The summary figures of scored streams at the manifest's cutoff; FRR and FA/h are None (not NaN) when
    there were no positives or no ambient audio to measure them on."""
    pos, neg, ambient = scored.positives, scored.negatives, scored.ambient
    points = evaluate(StreamScores(pos, ambient, quantized=True), settings)
    cutoff = float(manifest.probability_cutoff)
    at = min(points, key=lambda p: abs(p.cutoff - cutoff))
    hours = sum(len(a) for a in ambient) * settings.inference_s / 3600
    budgets = {}
    for budget in FA_BUDGETS:
        op = at_fa_target(points, budget)
        budgets[str(budget)] = None if op is None else {"cutoff": op.cutoff, "frr": _finite(op.frr)}
    peaks = {"positive": [int(p.max()) if len(p) else 0 for p in pos],
             "negative": [int(n.max()) if len(n) else 0 for n in neg + ambient]}
    roc = [(p.cutoff, float(np.mean([clip_detected(n, p.cutoff, settings, True) for n in neg])) if neg else 0.0,
            1.0 - p.frr) for p in points if math.isfinite(p.frr)]
    peaks["roc"] = roc
    return ({"cutoff": cutoff, "frr": _finite(at.frr), "fa_per_hour": _finite(at.fa_per_hour),
             "false_accepts": at.false_accepts, "positives": len(pos), "ambient_hours": hours, "budgets": budgets},
            points, peaks)


def _finite(x: float) -> float | None:
    """None where nothing was measured (NaN, infinities): JSON has no NaN and a reader should not guess."""
    return float(x) if math.isfinite(x) else None


AUDIO_FAMILY = "recorded"  # an audio folder's positives: one family, one condition (no voices or channels known)
AUDIO_CONDITION = "recorded"
AMBIENT_CONDITION = "ambient"


def audio_streams(scored: Scored) -> tuple[list[TaggedStream], list[TaggedStream]]:
    """An audio folder's scored streams tagged for the breakdown, so it goes through the pipeline's gate."""
    return ([TaggedStream(p, AUDIO_CONDITION, AUDIO_FAMILY) for p in scored.positives],
            [TaggedStream(a, AMBIENT_CONDITION) for a in scored.ambient])


def budget_reasons(model: Path, manifest_path: Path, max_tflite_bytes: int | None,
                   max_arena_bytes: int | None) -> list[str]:
    """Why the model does not fit the configured device budget (empty when it fits)."""
    reasons = []
    size = model.stat().st_size if model.is_file() else 0  # a missing model fails the model_file check
    if max_tflite_bytes is not None and size > max_tflite_bytes:
        reasons.append(f"model size {size:,} B exceeds device_budget.max_tflite_bytes {max_tflite_bytes:,} B")
    arena = EsphomeManifest.read(manifest_path).tensor_arena_size
    if max_arena_bytes is not None and isinstance(arena, int) and arena > max_arena_bytes:
        reasons.append(f"tensor_arena_size {arena:,} B exceeds device_budget.max_arena_bytes {max_arena_bytes:,} B")
    return reasons
