"""Score a clip with a wakeline model the way the device would: device frontend features, one inference per
`stride` frames from fresh state, the device's sliding-window mean, compared with the model's calibrated cutoff.

A judge model is either
- a wakeline `Model` directory (`model.keras` + `model_spec.json` + `validation.json`, as
  `components.training.fit` writes for teachers and students): the cutoff is `validation.json`'s `cutoff`
  (calibrated at the config's FA/h target); probabilities are float;
- an ESPHome `.tflite` (or a directory holding one) with its v2 manifest beside it: the cutoff is the
  manifest's `probability_cutoff`, probabilities are the INT8 model's uint8 outputs in TFLite-Micro (run by
  `components.runtime.tflm.TflmStreamer`), compared as ESPHome compares them.

The windows are scored by `components.runtime.scorers` (NumPy MixedNet, Keras window by window, or
TFLite-Micro); the decision is `components.common.metrics.clip_detected`, the rule FRR is measured with.
"""
from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.artifacts import ArtifactError, Kind, ModelLayout, find
from components.common.errors import InputError
from components.common.audio import to_int16
from components.common.frontend import FEATURE_CHANNELS, FEATURE_STEP_MS, FEATURE_WINDOW_MS, features_uint16
from components.common.metrics import ESPHOME_DETECTOR, DetectorSettings, clip_detected, sliding_mean
from components.common.names import slug

SAMPLE_RATE_HZ = 16_000
UINT8_SCALE = 256  # the INT8 model's output scale is 1/256


class JudgeModelError(InputError, ValueError):
    """The path is not a model the judge can serve, or it lacks what the judge needs (e.g. a cutoff)."""


@dataclass(frozen=True)
class JudgeScore:
    """One clip's verdict. `score` is the peak of the sliding-window mean probability (what the cutoff
    applies to); `peak_ms` is where that window ends, from the start of the clip."""

    score: float
    detected: bool
    peak_ms: int | None
    max_probability: float  # the highest single-window probability, unsmoothed
    inferences: int
    audio_s: float


@dataclass
class Judge:
    """A loaded judge model. Thread-safe: TFLite-Micro interpreters are per thread, other scorers are pure."""

    scorer: Any  # a components.runtime.scorers.Scorer
    cutoff: float
    name: str  # the wake word id (e.g. "hey_jarvis")
    phrase: str  # the wake word as spoken (e.g. "Hey Jarvis")
    settings: DetectorSettings = ESPHOME_DETECTOR
    quantized: bool = False  # uint8 outputs compared as ESPHome compares them
    source: str = ""
    languages: list[str] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def kind(self) -> str:
        return self.scorer.kind

    def _thread_scorer(self):
        if self.scorer.kind != "tflite":
            return self.scorer
        mine = getattr(self._local, "scorer", None)
        if mine is None:  # a fresh interpreter for this thread (TfliteScorer pickles as its path)
            mine = self._local.scorer = pickle.loads(pickle.dumps(self.scorer))
        return mine

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """One probability per inference for 16 kHz mono audio, from a fresh frontend and fresh model state."""
        return self._thread_scorer().score(features_uint16(as_int16(samples)))

    def judge(self, samples: np.ndarray) -> JudgeScore:
        """The verdict on one clip of 16 kHz mono audio: a fresh frontend, then `judge_features`."""
        pcm = as_int16(samples)
        return self.judge_features(features_uint16(pcm), audio_s=len(pcm) / SAMPLE_RATE_HZ)

    def judge_features(self, frames: np.ndarray, audio_s: float | None = None) -> JudgeScore:
        """The verdict on raw uint16 device features [frames, 40] (what `judge` computes from audio): one
        inference per stride from fresh model state, the peak of the sliding-window mean against the cutoff.
        `audio_s` is the clip's duration when known (default: what the frames span)."""
        raw = np.asarray(frames)
        if raw.ndim != 2 or raw.shape[1] != FEATURE_CHANNELS:
            raise ValueError(f"expected features [frames, {FEATURE_CHANNELS}], got shape {raw.shape}")
        probs = np.asarray(self._thread_scorer().score(raw), np.float64) if len(raw) else np.zeros(0)
        if audio_s is None:
            audio_s = ((len(raw) - 1) * FEATURE_STEP_MS + FEATURE_WINDOW_MS) / 1000 if len(raw) else 0.0
        if probs.size == 0:  # shorter than one model window
            return JudgeScore(0.0, False, None, 0.0, 0, audio_s)
        mean = sliding_mean(probs, self.settings.sliding_window)
        peak = int(np.argmax(mean))
        values = np.rint(probs * UINT8_SCALE) if self.quantized else probs
        detected = clip_detected(values, self.cutoff, self.settings, quantized=self.quantized)
        end_frame = self.scorer.geometry.end_frame(peak)
        return JudgeScore(float(mean[peak]), bool(detected), end_frame * FEATURE_STEP_MS + FEATURE_WINDOW_MS,
                          float(probs.max()), int(probs.size), audio_s)

    def score_audio(self, samples: np.ndarray) -> float:
        """The peak over the clip's streaming inferences of the sliding-window mean probability."""
        return self.judge(samples).score

    @property
    def threshold(self) -> float:
        """The score a clip must exceed: the cutoff, or for uint8 outputs ESPHome's `int(cutoff*255)` in
        units of the output scale."""
        return self.threshold_at(self.cutoff)

    def threshold_at(self, cutoff: float) -> float:
        """The score a clip must exceed at another cutoff than the calibrated one (same rule as `threshold`)."""
        return int(cutoff * 255) / UINT8_SCALE if self.quantized else float(cutoff)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "phrase": self.phrase, "kind": self.kind, "identity": self.scorer.identity,
                "cutoff": self.cutoff, "threshold": self.threshold, "sliding_window": self.settings.sliding_window,
                "stride_frames": self.settings.stride_frames, "source": self.source}


def as_int16(samples: np.ndarray) -> np.ndarray:
    """16 kHz mono samples as int16: int16 as they are, floats in [-1, 1] scaled; anything else refused."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
    if x.dtype == np.int16:
        return x
    if np.issubdtype(x.dtype, np.floating):
        return to_int16(np.nan_to_num(x.astype(np.float64)))
    raise ValueError(f"expected int16 or float samples, got {x.dtype}")


def load_judge(path: Path | str, *, cutoff: float | None = None, name: str | None = None) -> Judge:
    """Open a judge model (`find`'s `Kind.MODEL`: a Model directory, a .keras, or a .tflite with its manifest
    when one names it). `cutoff` overrides the calibrated one; `name` overrides the wake word."""
    from components.runtime.scorers import load_scorer

    phrase, found_cutoff, languages, window = None, None, [], ESPHOME_DETECTOR.sliding_window
    try:
        found = find(Path(path), Kind.MODEL)
        model_file = found.main
        if found.kind is Kind.ESPHOME_MODEL:
            manifest = found.read_manifest()
            if manifest is not None:
                phrase, found_cutoff, languages = manifest.phrase, manifest.probability_cutoff, list(manifest.languages)
                window = manifest.sliding_window_size if manifest.sliding_window_size is not None else window
        else:
            layout = ModelLayout(model_file.parent)
            if layout.spec.is_file():
                wake_word = layout.read_spec().get("wake_word")
                phrase = wake_word if isinstance(wake_word, str) else None
            if layout.validation.is_file():
                found_cutoff = layout.read_validation().get("cutoff")
    except ArtifactError as e:
        raise JudgeModelError(str(e)) from None
    chosen = cutoff if cutoff is not None else found_cutoff
    if not isinstance(chosen, (int, float)) or isinstance(chosen, bool) or not 0.0 <= float(chosen) <= 1.0:
        where = "the manifest's micro.probability_cutoff" if model_file.suffix == ".tflite" else \
            f"{ModelLayout.VALIDATION}'s cutoff"
        raise JudgeModelError(f"{model_file}: no usable cutoff in {where} (found {chosen!r}); pass --cutoff")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise JudgeModelError(f"{model_file}: sliding_window_size must be an integer >= 1, found {window!r}")
    try:
        scorer = load_scorer(model_file)
    except Exception as e:  # noqa: BLE001 - any load failure means the same: this file is not a usable model
        raise JudgeModelError(f"{model_file}: does not load ({type(e).__name__}: {str(e)[:300]})") from None
    phrase = phrase or name or (model_file.stem if model_file.suffix == ".tflite" else model_file.parent.name)
    settings = DetectorSettings(sliding_window=window, stride_frames=scorer.geometry.stride)
    return Judge(scorer, float(chosen), slug(name or phrase), phrase.replace("_", " ").strip(), settings,
                 quantized=model_file.suffix == ".tflite", source=str(model_file), languages=languages)
