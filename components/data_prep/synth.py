"""Plan and run offline speech synthesis: wake-word renditions, confusable phrases and general speech."""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from components.common.artifacts import (NON_ENGLISH_FAMILY, OTHER_LANGUAGE_FAMILY, SAMPLE_RATE_HZ, Label,
                                         QuarantineRecord)
from components.common.config import ClipCounts, WakelineConfig
from components.data_prep import phrases
from components.synthesis import espeak, neural_tts, perturb, piper_tts
from components.data_prep.ingest import Clip, Quarantined, condition
from components.data_prep.synth_cache import SynthCache, key as cache_key

ProgressFn = Callable[..., Iterator]


KLATT_VARIANTS = frozenset({"klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6"})
BREATHY_VARIANTS = frozenset({"whisper", "whisperf", "croak"})
SOUND_ALIKES_PER_WORD = 40  # the closest real words and names per wake phrase
ENGINES = ("piper", "espeak", "kokoro", "hibari")  # a label's clips are planned in this order
NEURAL_ENGINES = ("piper", "kokoro", "hibari")  # the voices closest to people


def family_of(voice: str) -> str:
    """A voice's family: engine plus voice group. espeak-ng's Klatt variants are another synthesiser than its
    formant voices, so they are their own family (a natural hold-out); other languages are one family."""
    engine, _, name = voice.partition(":")
    if engine == "piper":
        parts = name.split("-")
        return f"piper:{parts[1] if len(parts) > 2 else name}"
    if engine == "kokoro":
        return "kokoro:blend" if name.startswith("blend-") else voice
    if engine == "hibari":
        return voice
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
    engine: str  # one of ENGINES
    label: Label
    text: str
    voice: str
    params: tuple[tuple[str, float | str], ...]
    index: int
    speaker: perturb.Speaker | None = None  # speaker perturbation applied after synthesis
    group: str = ""  # the family, when the voice alone does not tell it (training languages)

    @property
    def family(self) -> str:
        return self.group or family_of(self.voice)

    @property
    def recipe(self) -> str:
        """What the synthesised audio depends on (the perturbation is applied afterwards, not cached)."""
        return f"{self.voice}|{self.text}|" + ",".join(f"{k}={v}" for k, v in self.params)

    @property
    def origin(self) -> str:
        settings = ",".join(f"{k}={v}" for k, v in self.params + (self.speaker.as_params() if self.speaker else ()))
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


def _espeak_params(e, rng: np.random.Generator) -> tuple:
    return (("rate_wpm", int(rng.uniform(*e.rate_wpm_range))), ("pitch", int(rng.uniform(*e.pitch_range))),
            ("seed", int(rng.integers(2 ** 31))))


def _engine_params(engine: str, tts, rng: np.random.Generator) -> tuple:
    """One clip's prosody for `engine`, drawn from its configured ranges (the draw order is part of the plan)."""
    if engine == "piper":
        p = tts.piper
        return (("length_scale", round(float(rng.uniform(*p.length_scale_range)), 3)),
                ("noise_scale", round(float(rng.uniform(*p.noise_scale_range)), 3)),
                ("noise_w_scale", round(float(rng.uniform(*p.noise_w_scale_range)), 3)))
    if engine == "espeak":
        return _espeak_params(tts.espeak, rng)
    cfg = tts.kokoro if engine == "kokoro" else tts.hibari
    params = (("speed", round(float(rng.uniform(*cfg.speed_range)), 3)),
              ("accent", cfg.accents[int(rng.integers(len(cfg.accents)))].value))
    return params + ((("seed", int(rng.integers(2 ** 31))),) if engine == "hibari" else ())


def _engine_of(count: ClipCounts, i: int) -> str:
    bounds = np.cumsum([count.piper_clips, count.espeak_clips, count.kokoro_clips, count.hibari_clips])
    return ENGINES[int(np.searchsorted(bounds, i, side="right"))]


def _speaker(config: WakelineConfig, stream: int, i: int) -> perturb.Speaker | None:
    return perturb.draw_speaker(config.data_prep.perturbation, _rng(config.seed, 40, stream, i))


def plan(config: WakelineConfig, texts: dict[Label, list[str]]) -> list[Job]:
    """Every synthesis job, fully determined by the config: texts, voices, prosody and target speakers."""
    dp = config.data_prep
    e, k = dp.tts.espeak, dp.tts.kokoro
    voices = [f"{lang}+{var}" for lang in e.languages for var in e.variants]
    voices = [voices[i] for i in _rng(config.seed, 1).permutation(len(voices))]
    kokoro_voices = neural_tts.kokoro_voices(k.blends)
    counts: dict[Label, ClipCounts] = {Label.POSITIVE: dp.positives, Label.ADVERSARIAL_NEGATIVE: dp.adversarial,
                                       Label.NEGATIVE: dp.speech}
    jobs: list[Job] = []
    for stream, (label, count) in enumerate(counts.items(), start=10):
        rng = _rng(config.seed, stream)
        pool = texts[label]
        if not pool:
            continue
        n = count.total
        if label is Label.POSITIVE:
            chosen = phrases.rendition_texts(pool, n, rng)
        else:
            chosen = [pool[i] for i in rng.permutation(max(n, len(pool)))[:n] % len(pool)]
        for i, text in enumerate(chosen):
            engine = _engine_of(count, i)
            params = _engine_params(engine, dp.tts, rng)
            voice = {"piper": piper_tts.VOICE_ID, "espeak": f"espeak:{voices[(i + stream) % len(voices)]}",
                     "kokoro": f"kokoro:{kokoro_voices[(i + stream) % len(kokoro_voices)]}",
                     "hibari": f"hibari:{neural_tts.HIBARI_VOICE}"}[engine]
            jobs.append(Job(engine, label, text, voice, params, i, _speaker(config, stream, i)))
    for stream, langs, clips, base, group in (
            (20, dp.conditions.non_english.languages, dp.conditions.non_english.espeak_clips, 100_000, ""),
            (21, dp.other_languages.languages, dp.other_languages.espeak_clips, 200_000, OTHER_LANGUAGE_FAMILY)):
        rng = _rng(config.seed, stream)
        for i in range(clips):
            lang = langs[i % len(langs)]
            pool = phrases.NON_ENGLISH_SENTENCES[lang]
            params = _espeak_params(e, rng)
            variant = e.variants[int(rng.integers(len(e.variants)))]
            jobs.append(Job("espeak", Label.NEGATIVE, pool[int(rng.integers(len(pool)))], f"espeak:{lang}+{variant}",
                            params, base + i, _speaker(config, stream, i), group))
    return jobs


def greeting_jobs(config: WakelineConfig, voice_split: dict, avoid_texts: set[str]) -> list[Job]:
    """Training-only greetings (`data_prep.greetings`), said by voices the split put in training, never one
    of `avoid_texts` (the texts only test speech says). Planned after the split, so the evaluation audio is the
    same with or without them."""
    count = config.data_prep.greetings
    texts = phrases.greeting_sentences(count.total, config.seed) if count.total else []
    return _by_training_voices(config, voice_split, avoid_texts, "greetings", texts, 22, 300_000)


def sound_alike_jobs(config: WakelineConfig, voice_split: dict, avoid_texts: set[str]) -> list[Job]:
    """Training-only sentences that greet or name real words and names sounding like the wake word less its first
    word (`data_prep.sound_alikes`: "Hey Marvin, ..." for "hey jarvis"), planned like greetings."""
    count = config.data_prep.sound_alikes
    if not count.total:
        return []
    texts = phrases.sound_alike_sentences(sound_alike_vocabulary(config.phrases), count.total, config.seed)
    return _by_training_voices(config, voice_split, avoid_texts, "sound_alikes", texts, 23, 400_000)


def validation_speech_jobs(config: WakelineConfig, voice_split: dict, avoid_texts: set[str]) -> list[Job]:
    """Validation-only general speech (`data_prep.validation_speech`): the voices the split put in training
    (the single-voice neural families among them, whose voices are closest to people) saying generated sentences
    that are neither general speech nor one of `avoid_texts` (every other planned clip's), each re-spoken by a
    drawn speaker. Validation, which picks the checkpoint, the student
    and the cutoff, then hears more than espeak-ng; training and test audio stay as they are."""
    count = config.data_prep.validation_speech
    if not count.total:
        return []
    n_said = config.data_prep.generated_sentences
    said = set(phrases.general_speech(config.phrases, n_said, config.seed)) | avoid_texts
    texts = phrases.generated_sentences(n_said + 2 * count.total, config.seed)
    return _by_training_voices(config, voice_split, said, "validation_speech", texts, 24, 500_000)


def sound_alike_vocabulary(wake_phrases: list[str]) -> list[str]:
    """The real words and first names closest in sound to each wake phrase less its first word when it has
    several ("jarvis" for "hey jarvis" and "hey jar vis", "nabu" for "okay nabu"), closest first."""
    targets = sorted({" ".join(p.lower().split()[1:] or p.lower().split()) for p in wake_phrases})
    vocabulary = {**neural_tts.english_lexicon(),
                  **{n.lower(): neural_tts.phonemes(n) for n in phrases.SOUND_ALIKE_NAMES}}
    return phrases.sound_alike_words(targets, vocabulary, neural_tts.phonemes, SOUND_ALIKES_PER_WORD)


def _by_training_voices(config: WakelineConfig, voice_split: dict, avoid_texts: set[str], key: str,
                        texts: list[str], stream: int, base: int) -> list[Job]:
    """`data_prep.<key>` negatives saying `texts` (less `avoid_texts` and any with a wake-word phrase), each by a
    voice of its engine that the split put in training."""
    from components.common.artifacts import Split

    count = getattr(config.data_prep, key)
    if not count.total:
        return []
    lowered = [p.lower() for p in config.phrases]
    texts = [t for t in texts if t not in avoid_texts and not any(p in t.lower() for p in lowered)]
    english = (NON_ENGLISH_FAMILY, OTHER_LANGUAGE_FAMILY)
    by_engine = {engine: sorted(v for v, s in voice_split.items() if s is Split.TRAIN and v.startswith(f"{engine}:")
                                and family_of(v) not in english)
                 for engine in ENGINES}
    missing = [en for en in ENGINES if getattr(count, f"{en}_clips") and not by_engine[en]]
    if missing or not texts:
        raise ValueError(f"data_prep.{key}: the split put no voice of {missing} in training (a single-voice "
                         f"engine's voice may go whole to validation or test); set data_prep.{key}."
                         f"{missing[0] if missing else 'piper'}_clips=0" if missing
                         else f"data_prep.{key}: every sentence says the wake word")
    rng = _rng(config.seed, stream)
    jobs = []
    for i in range(count.total):
        engine = _engine_of(count, i)
        params = _engine_params(engine, config.data_prep.tts, rng)
        pool = by_engine[engine]
        jobs.append(Job(engine, Label.NEGATIVE, texts[i % len(texts)], pool[int(rng.integers(len(pool)))], params,
                        base + i, _speaker(config, stream, i)))
    return jobs


def hold_out_texts(jobs: list[Job], voice_split: dict, heldout: set[str], seed: int) -> list[Job]:
    """General speech says held-out texts only in the test split and other texts only elsewhere: each English
    negative job whose text is on the wrong side draws a replacement from its side (seeded, in job order)."""
    from components.common.artifacts import Split

    if not heldout:
        return jobs
    english = {j.text for j in jobs if j.label is Label.NEGATIVE
               and j.family not in (NON_ENGLISH_FAMILY, OTHER_LANGUAGE_FAMILY)}
    pools = {True: sorted(english & heldout) or sorted(heldout), False: sorted(english - heldout)}
    rng = _rng(seed, 30)
    out = []
    for j in jobs:
        if j.label is Label.NEGATIVE and j.family not in (NON_ENGLISH_FAMILY, OTHER_LANGUAGE_FAMILY):
            side = voice_split.get(j.voice) is Split.TEST
            if (j.text in heldout) != side and pools[side]:
                j = dataclasses.replace(j, text=pools[side][int(rng.integers(len(pools[side])))])
        out.append(j)
    return out


def _synthesise(jobs: list[Job], config: WakelineConfig, workers: int, progress: ProgressFn,
                cache: SynthCache) -> list[tuple[np.ndarray, int]]:
    """Raw audio for every job, in job order: from the cache where the recipe was synthesised before."""
    out: list[tuple[np.ndarray, int] | None] = [None] * len(jobs)
    for engine in ("espeak", "kokoro", "hibari"):
        todo = []
        for i, j in enumerate(jobs):
            if j.engine == engine:
                k = cache_key(engine, j.recipe)
                out[i] = cache.get(k)
                if out[i] is None:
                    todo.append((i, j, k))
        if engine == "espeak":
            it = espeak.synthesize_many((espeak.EspeakJob(j.text, j.voice.removeprefix("espeak:"),
                                                          **{n: int(v) for n, v in j.params}) for _, j, _ in todo),
                                        workers)
        else:
            it = neural_tts.synthesize_many((neural_tts.NeuralJob(engine, j.text, j.voice.partition(":")[2],
                                                                  **dict(j.params)) for _, j, _ in todo), workers)
        for (i, _, k), result in zip(todo, progress(it, total=len(todo), desc=engine, unit="clip")):
            cache.put(k, *result)
            out[i] = result
    # piper samples its noise inside onnxruntime from one seeded stream per session, so a clip depends on the
    # clips before it: piper is synthesised (and cached) in one block per label, each from a fresh session.
    for label in Label:
        block = [(i, j) for i, j in enumerate(jobs) if j.engine == "piper" and j.label is label]
        if not block:
            continue
        k = cache_key("piper", f"seed={config.seed}|" + "\n".join(j.recipe for _, j in block))
        hit = cache.get_block(k, len(block))
        if hit is None:
            it = piper_tts.synthesize_many((piper_tts.PiperJob(j.text, **dict(j.params)) for _, j in block),
                                           seed=config.seed)
            hit = list(progress(it, total=len(block), desc=f"piper {label.value}", unit="clip"))
            cache.put_block(k, hit)
        for (i, _), result in zip(block, hit):
            out[i] = result
    return out


def _perturb_one(item: tuple[np.ndarray, int, perturb.Speaker | None]) -> np.ndarray:
    """Raw int16 audio at its rate -> float32 at 16 kHz, spoken by the target speaker (if any)."""
    from components.common import audio

    samples, sr, speaker = item
    x = audio.resample(samples.astype(np.float32) / 32768.0, sr) if len(samples) else np.zeros(0, np.float32)
    return perturb.apply(x, SAMPLE_RATE_HZ, speaker) if speaker is not None and len(x) else x


def _perturb_chunk(items: list) -> list[np.ndarray]:
    return [_perturb_one(it) for it in items]


PERTURB_CHUNK = 16
PERTURB_TIMEOUT_S = 300.0  # a chunk of 16 clips takes about 1 s


def _perturb_all(jobs: list[Job], raw: list[tuple[np.ndarray, int]], workers: int,
                 progress: ProgressFn) -> list[np.ndarray]:
    items = [(samples, sr, j.speaker) for j, (samples, sr) in zip(jobs, raw)]
    if not any(j.speaker for j in jobs):
        return [_perturb_one(it) for it in items]
    chunks = [items[i:i + PERTURB_CHUNK] for i in range(0, len(items), PERTURB_CHUNK)]
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        return list(progress(_watched(pool.imap(_perturb_chunk, chunks), jobs), total=len(items),
                             desc="speaker perturbation", unit="clip"))


def _watched(results, jobs: list[Job]) -> Iterator[np.ndarray]:
    """Results in order; a chunk that never comes back (a resynthesis stuck in Praat) fails the stage with the
    chunk's first clip named instead of hanging it."""
    for start in range(0, len(jobs), PERTURB_CHUNK):
        try:
            yield from results.next(timeout=PERTURB_TIMEOUT_S)
        except mp.TimeoutError:
            raise RuntimeError(f"speaker perturbation: no result for {jobs[start].origin!r} or the "
                               f"{PERTURB_CHUNK - 1} clips after it in {PERTURB_TIMEOUT_S:.0f} s; set "
                               f"data_prep.perturbation.method=none to train without it, and report the clip") from None


def cache_for(config: WakelineConfig) -> SynthCache:
    from components.data_prep.synth_cache import default_dir

    dp = config.data_prep
    if not dp.synthesis_cache:
        return SynthCache(None)
    return SynthCache(Path(dp.cache_dir).expanduser() if dp.cache_dir else default_dir())


def run_jobs(jobs: list[Job], config: WakelineConfig, workers: int, progress: ProgressFn,
             cache: SynthCache | None = None) -> tuple[list[Clip], list[QuarantineRecord]]:
    """Synthesise (or fetch), perturb and condition every job; failures are quarantined like bad user files.
    Every step keeps job order and draws nothing at run time, so the clips are the same whatever the worker
    count or the cache's state."""
    dp = config.data_prep
    raw = _synthesise(jobs, config, workers, progress, cache or SynthCache(None))
    voiced = _perturb_all(jobs, raw, workers, progress)
    clips, rejected = [], []
    for job, x in zip(jobs, voiced):
        try:
            out = condition(x[:, None], SAMPLE_RATE_HZ, dp.quality, trim=True,
                            min_duration_s=dp.quality.min_clip_duration_s)
        except Quarantined as q:
            rejected.append(QuarantineRecord(job.origin, q.reason, q.detail, kind=job.label.value))
            continue
        clips.append(Clip(out, job.label, job.voice, job.engine, job.origin, job.text, job.family))
    return clips, rejected
