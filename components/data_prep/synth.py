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


KLATT_VARIANTS = frozenset({"klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"})
BREATHY_VARIANTS = frozenset({"whisper", "whisperf", "croak"})
NON_ENGLISH_FAMILY = "espeak:non_english"


def family_of(voice: str) -> str:
    """A voice's family: engine plus voice group. espeak-ng's Klatt variants are another synthesiser than its
    formant voices, so they are their own family (a natural hold-out); other languages are one family."""
    engine, _, name = voice.partition(":")
    if engine == "piper":
        parts = name.split("-")
        return f"piper:{parts[1] if len(parts) > 2 else name}"
    if engine == "espeak":
        lang, _, variant = name.partition("+")
        if not lang.lower().startswith("en"):
            return NON_ENGLISH_FAMILY
        if variant in KLATT_VARIANTS:
            return "espeak:klatt"
        if variant in BREATHY_VARIANTS:
            return "espeak:breathy"
        return "espeak:formant"
    return f"user:{name or voice}" if engine in ("speaker", "file") else voice


@dataclass(frozen=True)
class Job:
    engine: str  # "piper" | "espeak"
    label: Label
    text: str
    voice: str
    params: tuple[tuple[str, float], ...]
    index: int

    @property
    def family(self) -> str:
        return family_of(self.voice)

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
        Label.NEGATIVE: phrases.general_speech(config.phrases, dp.generated_sentences, config.seed),
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
    ne = dp.conditions.non_english
    rng = _rng(config.seed, 20)
    for i in range(ne.espeak_clips):
        lang = ne.languages[i % len(ne.languages)]
        pool = phrases.NON_ENGLISH_SENTENCES[lang]
        params = (("rate_wpm", int(rng.uniform(*e.rate_wpm_range))), ("pitch", int(rng.uniform(*e.pitch_range))),
                  ("seed", int(rng.integers(2 ** 31))))
        variant = e.variants[int(rng.integers(len(e.variants)))]
        jobs.append(Job("espeak", Label.NEGATIVE, pool[int(rng.integers(len(pool)))], f"espeak:{lang}+{variant}",
                        params, 100_000 + i))
    return jobs


def hold_out_texts(jobs: list[Job], voice_split: dict, heldout: set[str], seed: int) -> list[Job]:
    """General speech says held-out texts only in the test split and other texts only elsewhere: each English
    negative job whose text is on the wrong side draws a replacement from its side (seeded, in job order)."""
    from components.common.artifacts import Split

    if not heldout:
        return jobs
    english = {j.text for j in jobs if j.label is Label.NEGATIVE and j.family != NON_ENGLISH_FAMILY}
    pools = {True: sorted(english & heldout) or sorted(heldout), False: sorted(english - heldout)}
    rng = _rng(seed, 30)
    out = []
    for j in jobs:
        if j.label is Label.NEGATIVE and j.family != NON_ENGLISH_FAMILY:
            side = voice_split.get(j.voice) is Split.TEST
            if (j.text in heldout) != side and pools[side]:
                j = Job(j.engine, j.label, pools[side][int(rng.integers(len(pools[side])))], j.voice, j.params,
                        j.index)
        out.append(j)
    return out


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
        clips.append(Clip(out, job.label, job.voice, job.engine, job.origin, job.text, job.family))
    return clips, rejected
