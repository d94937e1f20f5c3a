"""Plan and run offline speech synthesis: wake-word renditions, confusable phrases and general speech."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from components.common.artifacts import Label, QuarantineRecord
from components.common.config import ClipCounts, WakelineConfig
from components.data_prep import espeak, phrases, piper_tts
from components.data_prep.ingest import Clip, Quarantined, condition

ProgressFn = Callable[..., Iterator]


@dataclass(frozen=True)
class Job:
    engine: str  # "piper" | "espeak"
    label: Label
    text: str
    voice: str
    params: tuple[tuple[str, float], ...]
    index: int

    @property
    def origin(self) -> str:
        settings = ",".join(f"{k}={v}" for k, v in self.params)
        return f"tts:{self.voice}[{settings}]#{self.index}:{self.text}"


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def label_texts(config: WakelineConfig) -> dict[Label, list[str]]:
    """The texts each label draws from (renditions are expanded per clip in `plan`)."""
    dp = config.data_prep
    return {
        Label.POSITIVE: config.phrases,
        Label.ADVERSARIAL_NEGATIVE: phrases.adversarial_phrases(
            config.phrases, espeak.phonemize, dp.adversarial.extra_phrases, dp.adversarial.max_phrases),
        Label.NEGATIVE: phrases.speech_sentences(config.phrases),
    }


def plan(config: WakelineConfig, texts: dict[Label, list[str]]) -> list[Job]:
    """Every synthesis job, fully determined by the config: texts, voices and prosody settings."""
    dp = config.data_prep
    p, e = dp.tts.piper, dp.tts.espeak
    voices = [f"{lang}+{var}" for lang in e.languages for var in e.variants]
    voices = [voices[i] for i in _rng(config.seed, 1).permutation(len(voices))]
    counts: dict[Label, ClipCounts] = {Label.POSITIVE: dp.positives, Label.ADVERSARIAL_NEGATIVE: dp.adversarial,
                                       Label.NEGATIVE: dp.speech}
    jobs: list[Job] = []
    for stream, (label, count) in enumerate(counts.items(), start=10):
        rng = _rng(config.seed, stream)
        pool = texts[label]
        if not pool:
            continue
        n = count.piper_clips + count.espeak_clips
        if label is Label.POSITIVE:
            chosen = phrases.rendition_texts(pool, n, rng)
        else:
            chosen = [pool[i] for i in rng.permutation(max(n, len(pool)))[:n] % len(pool)]
        for i, text in enumerate(chosen):
            if i < count.piper_clips:
                params = (("length_scale", round(float(rng.uniform(*p.length_scale_range)), 3)),
                          ("noise_scale", round(float(rng.uniform(*p.noise_scale_range)), 3)),
                          ("noise_w_scale", round(float(rng.uniform(*p.noise_w_scale_range)), 3)))
                jobs.append(Job("piper", label, text, piper_tts.VOICE_ID, params, i))
            else:
                params = (("rate_wpm", int(rng.uniform(*e.rate_wpm_range))), ("pitch", int(rng.uniform(*e.pitch_range))),
                          ("seed", int(rng.integers(2 ** 31))))
                jobs.append(Job("espeak", label, text, f"espeak:{voices[(i + stream) % len(voices)]}", params, i))
    return jobs


def run_jobs(jobs: list[Job], config: WakelineConfig, workers: int,
             progress: ProgressFn) -> tuple[list[Clip], list[QuarantineRecord]]:
    """Synthesise and condition every job; failures are quarantined like bad user files."""
    dp = config.data_prep
    espeak_jobs = [j for j in jobs if j.engine == "espeak"]
    piper_jobs = [j for j in jobs if j.engine == "piper"]
    # Both engines keep their job order, so the clip list is reproducible whatever the worker count.
    results = []
    e_iter = espeak.synthesize_many(
        (espeak.EspeakJob(j.text, j.voice.removeprefix("espeak:"), **{k: int(v) for k, v in j.params})
         for j in espeak_jobs), workers)
    results += zip(espeak_jobs, progress(e_iter, total=len(espeak_jobs), desc="espeak-ng", unit="clip"))
    p_iter = piper_tts.synthesize_many(
        (piper_tts.PiperJob(j.text, **dict(j.params)) for j in piper_jobs), seed=config.seed)
    results += zip(piper_jobs, progress(p_iter, total=len(piper_jobs), desc="piper", unit="clip"))
    clips, rejected = [], []
    for job, (samples, sr) in results:
        try:
            data = samples.astype(np.float32)[:, None] / 32768.0
            out = condition(data, sr, dp.quality, trim=True, min_duration_s=dp.quality.min_clip_duration_s)
        except Quarantined as q:
            rejected.append(QuarantineRecord(job.origin, q.reason, q.detail, kind=job.label.value))
            continue
        clips.append(Clip(out, job.label, job.voice, job.engine, job.origin, job.text))
    return clips, rejected
