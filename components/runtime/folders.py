"""`wakeline evaluate`: a published model on the device runtime (TFLite-Micro) over a user's own recordings.

A positives folder is one voice *family* (named by the folder's label) in the channel condition "recorded"; an
ambient folder is one *condition* (named by its label). Every number comes from `components.common.evaluation`
(FRR per family, FA/h per condition with its measured hours and an exact Poisson 95 % upper bound), so it means
what it means in verification. The detector is the device's: the model's own stride, the manifest's sliding
window, ESPHome's integer feature mapping and refractory period, fresh state per file.

Audio is read in blocks (decoded, mixed to mono, resampled to 16 kHz, int16, the TFLite-Micro frontend), so a
recording of many hours is never held in memory as samples, only as features (about 29 MB per hour). A file that
cannot be used (unreadable, truncated, empty, too short, non-finite, digital silence) is skipped with its reason
and reported; a folder that does not exist, is not a folder, or has no usable audio is an `EvaluationInputError`:
nothing measured is never a pass.

Pure of kfp: no pipeline, no tracking, no files written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from components.common.errors import InputError
from components.common.artifacts import SAMPLE_RATE_HZ, ArtifactError, EsphomeManifest, Kind, find
from components.common.audio import AUDIO_EXTENSIONS, AudioReadError, to_int16, to_mono, wav_is_truncated
from components.common.evaluation import ALL, Breakdown, TaggedStream, breakdown, format_text
from components.common.frontend import FEATURE_CHANNELS, FEATURE_STEP_MS, FeatureStream, n_frames
from components.common.metrics import ESPHOME_DETECTOR, DetectorSettings, activations, clip_detected

RECORDED = "recorded"  # the channel condition of a user's own positives: recorded as they are
POSITIVE_PAD_S = 1.0
MIN_FRAMES = ESPHOME_DETECTOR.stride_frames  # a file must give at least one inference of a 3-frame model
BLOCK_SECONDS = 30  # decoded per read: bounded memory for recordings of any length


class EvaluationInputError(InputError, ValueError):
    """A folder, the model or an option that cannot be evaluated; the message names it and says why."""


@dataclass
class Folder:
    """One folder's usable audio as raw uint16 frontend features `[frames, 40]`, one array per file, in the
    order of `files` (sorted paths); `durations` are each file's own seconds (before any padding)."""

    label: str
    path: Path
    features: list[np.ndarray] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files that are not wav/flac/ogg
    pad_s: float = 0.0

    @property
    def seconds(self) -> float:
        return float(sum(self.durations))

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "path": str(self.path), "files_used": len(self.files),
                "audio_seconds": round(self.seconds, 3), "padding_s": self.pad_s,
                "skipped": [{"file": str(f), "reason": r} for f, r in self.skipped],
                "ignored_files": len(self.ignored)}


class _Frontend:
    """The TFLite-Micro frontend fed block by block: for the same samples it gives exactly what
    `components.common.frontend.features_uint16` gives for them in one piece (one frontend, 10 ms steps)."""

    def __init__(self) -> None:
        self._stream = FeatureStream()
        self._blocks: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        block = self._stream.feed(samples)
        if len(block):
            self._blocks.append(block)

    def features(self) -> np.ndarray:
        return (np.concatenate(self._blocks) if self._blocks
                else np.zeros((0, FEATURE_CHANNELS), np.uint16))


def _blocks_16k(path: Path) -> Iterator[np.ndarray]:
    """int16 mono 16 kHz blocks of one file. Raises AudioReadError for what cannot be decoded and ValueError
    (with the reason) for samples that are not finite."""
    import soundfile as sf
    import soxr

    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            if sr <= 0:
                raise AudioReadError(f"sample rate {sr}")
            stream = None if sr == SAMPLE_RATE_HZ else soxr.ResampleStream(sr, SAMPLE_RATE_HZ, 1, dtype="float32",
                                                                           quality="HQ")
            for block in f.blocks(blocksize=BLOCK_SECONDS * sr, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise ValueError("non-finite samples (NaN or infinity)")
                mono = to_mono(block).astype(np.float32, copy=False)
                yield to_int16(mono if stream is None else stream.resample_chunk(mono))
            if stream is not None:
                yield to_int16(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as e:
        raise AudioReadError(_reason(e)) from None


def _reason(e: Exception) -> str:
    """libsndfile's own words without the path (the report already names the file)."""
    return (getattr(e, "error_string", None) or str(e) or type(e).__name__).strip()


def _frames(path: Path) -> int:
    """Sample frames the header declares (an unreadable header fails here, before any decoding)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioReadError(_reason(e)) from None
    return int(info.frames)


def load_file(path: Path, *, pad_s: float = 0.0) -> tuple[np.ndarray, float]:
    """(raw uint16 features, seconds of audio) for one file, with `pad_s` of digital silence fed to the
    frontend before and after it. Raises `ValueError` whose message is why the file cannot be used."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        if path.suffix.lower() == ".wav" and wav_is_truncated(path):
            raise ValueError("truncated: its WAV header declares more audio than the file holds")
        frames = _frames(path)
    except AudioReadError as e:
        raise ValueError(f"unreadable: {e}") from None
    except OSError as e:
        raise ValueError(f"unreadable: {e.strerror or e}") from None
    if frames == 0:
        raise ValueError("empty: no audio samples")
    pad = np.zeros(int(round(pad_s * SAMPLE_RATE_HZ)), np.int16)
    frontend = _Frontend()
    frontend.feed(pad)
    samples, loud = 0, False
    try:
        for block in _blocks_16k(path):
            samples += len(block)
            loud = loud or bool(np.any(block))
            frontend.feed(block)
    except AudioReadError as e:
        raise ValueError(f"unreadable: {e}") from None
    except OSError as e:
        raise ValueError(f"unreadable: {e.strerror or e}") from None
    except MemoryError:
        raise ValueError("unreadable: out of memory while decoding") from None
    seconds = samples / SAMPLE_RATE_HZ  # what was decoded (a header may promise more)
    if samples == 0:
        raise ValueError("empty: no audio samples")
    if n_frames(samples) < MIN_FRAMES:
        raise ValueError(f"too short: {seconds:.3f} s gives no model input (needs at least "
                         f"{(MIN_FRAMES + 2) * FEATURE_STEP_MS / 1000:.2f} s)")
    if not loud:
        raise ValueError("silent: every sample is zero")
    frontend.feed(pad)
    return frontend.features(), seconds


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise EvaluationInputError(f"{path}: no such folder")
    if not path.is_dir():
        raise EvaluationInputError(f"{path}: not a folder")


def load_folder(path: Path, label: str | None = None, *, pad_s: float = 0.0) -> Folder:
    """Every wav/flac/ogg file under `path` (recursively, sorted) as features; other files are ignored and
    counted, unusable audio files are skipped with their reason.

    `pad_s`: seconds of digital silence before and after each file. Positives get `POSITIVE_PAD_S` (1.0 s):
    a device has been listening before a word is said and keeps listening after it, and a clip trimmed to the
    word would otherwise give the detector no lead-in and no time to reach its cutoff after the last syllable.

    Raises `EvaluationInputError` naming the folder when it does not exist, is not a folder, or has no usable
    audio (with why: no audio files, or every one skipped)."""
    path = Path(path)
    _check_folder(path)
    if not math.isfinite(pad_s) or pad_s < 0:
        raise EvaluationInputError(f"{path}: padding must be >= 0 seconds, got {pad_s}")
    folder = Folder(label or path.resolve().name or str(path), path, pad_s=pad_s)
    try:
        entries = sorted(p for p in path.rglob("*") if p.is_file())
    except OSError as e:
        raise EvaluationInputError(f"{path}: cannot list the folder: {e.strerror or e}") from None
    for file in entries:
        if file.suffix.lower() not in AUDIO_EXTENSIONS:
            folder.ignored.append(file)
            continue
        try:
            feats, seconds = load_file(file, pad_s=pad_s)
        except ValueError as e:
            folder.skipped.append((file, str(e)))
            continue
        folder.features.append(feats)
        folder.files.append(file)
        folder.durations.append(seconds)
    if not folder.files:
        raise EvaluationInputError(f"{path}: no usable audio ({_why_empty(folder)})")
    return folder


def _why_empty(folder: Folder) -> str:
    parts = []
    if folder.skipped:
        shown = "; ".join(f"{f.name}: {r}" for f, r in folder.skipped[:3])
        more = f"; and {len(folder.skipped) - 3} more" if len(folder.skipped) > 3 else ""
        parts.append(f"{len(folder.skipped)} audio file(s) skipped: {shown}{more}")
    else:
        parts.append(f"no {'/'.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)} files")
    if folder.ignored:
        kinds = sorted({f.suffix.lower() or f.name for f in folder.ignored})
        parts.append(f"{len(folder.ignored)} other file(s) ignored ({', '.join(kinds[:5])})")
    return "; ".join(parts)


def folder_labels(paths: Sequence[Path]) -> list[str]:
    """Each folder's name; where two share one (or one is called "all", the name of the totals), the shortest
    trailing part of their paths that tells them apart, e.g. `upstairs/kitchen` and `downstairs/kitchen`."""
    parts = [Path(p).resolve().parts for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = [str(PurePath(*ps[-d:])) if ps else str(p) for ps, d, p in zip(parts, depth, paths)]
        clash = [i for i, lab in enumerate(labels)
                 if (labels.count(lab) > 1 or lab == ALL) and depth[i] < len(parts[i])]
        if not clash:
            return labels
        for i in clash:
            depth[i] += 1


@dataclass
class Model:
    """A published model as the device would run it: the .tflite, its manifest, the cutoff and detector."""

    tflite: Path
    manifest: Path
    cutoff: float
    cutoff_source: str  # "manifest" or "--cutoff"
    arena: int | None
    settings: DetectorSettings
    esphome: EsphomeManifest | None = None  # the manifest, parsed


def load_model(path: Path, cutoff: float | None = None) -> Model:
    """The model from a manifest .json, a .tflite with its manifest beside it, or a folder holding one
    manifest (`find`'s `Kind.ESPHOME_MODEL`). Raises `EvaluationInputError` for anything missing or not usable
    on the device."""
    try:
        tflite, manifest_path = find(Path(path), Kind.ESPHOME_MODEL).pair
        manifest = EsphomeManifest.read(manifest_path)
    except ArtifactError as e:
        raise EvaluationInputError(str(e)) from None
    if cutoff is None:
        cutoff, source = manifest.probability_cutoff, "manifest"
        what = f"{manifest_path}: micro.probability_cutoff"
    else:
        source, what = "--cutoff", "--cutoff"
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not 0.0 <= float(cutoff) <= 1.0:
        raise EvaluationInputError(f"{what} must be a number from 0 to 1, got {cutoff!r}")
    step = FEATURE_STEP_MS if manifest.feature_step_size is None else manifest.feature_step_size
    if step != FEATURE_STEP_MS:
        raise EvaluationInputError(f"{manifest_path}: feature_step_size {step!r}: only {FEATURE_STEP_MS} ms "
                                   "features are supported")
    window = ESPHOME_DETECTOR.sliding_window if manifest.sliding_window_size is None else manifest.sliding_window_size
    if manifest.window is None and manifest.sliding_window_size is not None:
        raise EvaluationInputError(f"{manifest_path}: sliding_window_size must be a positive integer, got {window!r}")
    stride = _model_stride(tflite, manifest.arena)
    settings = DetectorSettings(sliding_window=window, stride_frames=stride, step_ms=FEATURE_STEP_MS,
                                refractory_slices=ESPHOME_DETECTOR.refractory_slices)
    return Model(tflite, manifest_path, float(cutoff), source, manifest.arena, settings, manifest)


def _model_stride(tflite: Path, arena: int | None) -> int:
    """Feature frames per inference, after checking the model loads in TFLite-Micro with ESPHome's tensors."""
    from components.runtime.tflm import TflmStreamer

    try:
        interp = TflmStreamer(tflite, arena).interp
    except Exception as e:  # noqa: BLE001 - a foreign file may fail in any way; say so instead of crashing
        raise EvaluationInputError(f"{tflite}: does not load in TFLite-Micro"
                                   f"{'' if arena is None else f' with the manifest arena of {arena:,} B'}: "
                                   f"{e}") from None
    inp, out = interp.get_input_details(0), interp.get_output_details(0)
    shape = [int(s) for s in inp["shape"]]
    if (np.dtype(inp["dtype"]) != np.int8 or len(shape) != 3 or shape[2] != FEATURE_CHANNELS
            or np.dtype(out["dtype"]) != np.uint8):
        raise EvaluationInputError(f"{tflite}: not a streaming micro_wake_word model (input {np.dtype(inp['dtype'])} "
                                   f"{shape}, output {np.dtype(out['dtype'])}; expected int8 [1, stride, 40] in, "
                                   "uint8 out)")
    return shape[1]


@dataclass
class FolderReport:
    """What `wakeline evaluate` found: the breakdown, the folders with their skipped files, and per file which
    positives were missed and where in which ambient file the model fired (seconds from the file's start)."""

    model: Model
    breakdown: Breakdown
    positives: list[Folder]
    ambient: list[Folder]
    missed: dict[str, list[Path]] = field(default_factory=dict)
    false_accepts: dict[str, list[tuple[Path, float]]] = field(default_factory=dict)

    @property
    def cutoff_source(self) -> str:
        return self.model.cutoff_source

    def as_dict(self) -> dict[str, Any]:
        s = self.model.settings
        return {
            "model": str(self.model.tflite), "manifest": str(self.model.manifest),
            "cutoff": self.model.cutoff, "cutoff_source": self.model.cutoff_source,
            "detector": {"sliding_window": s.sliding_window, "stride_frames": s.stride_frames,
                         "step_ms": s.step_ms, "refractory_slices": s.refractory_slices},
            "positives": [{**f.as_dict(), "family": f.label, "condition": RECORDED,
                           "missed": [str(p) for p in self.missed.get(f.label, [])]} for f in self.positives],
            "ambient": [{**f.as_dict(), "condition": f.label,
                         "false_accepts": [{"file": str(p), "seconds": round(t, 2)}
                                           for p, t in self.false_accepts.get(f.label, [])]}
                        for f in self.ambient],
            "breakdown": self.breakdown.as_dict(),
        }


def evaluate_folders(model_path: Path, positives: Sequence[Path], ambient: Sequence[Path],
                     cutoff: float | None = None, *, positive_pad_s: float = POSITIVE_PAD_S,
                     progress: Callable[[str], None] | None = None) -> FolderReport:
    """Run the model in TFLite-Micro over every file: FRR per positives folder, FA/h per ambient folder.

    Everything is checked before any audio is decoded (the model, the cutoff, each folder exists and is a
    folder, no folder given twice or inside another); then each folder is loaded (an unusable folder raises
    `EvaluationInputError`), then scored, one stream per file from fresh state."""
    note = progress or (lambda _msg: None)
    positives, ambient = [Path(p) for p in positives], [Path(p) for p in ambient]
    if not positives and not ambient:
        raise EvaluationInputError("nothing to evaluate: give at least one --positives DIR or --ambient DIR")
    model = load_model(Path(model_path), cutoff)
    flagged = [("--positives", p) for p in positives] + [("--ambient", p) for p in ambient]
    for flag, p in flagged:
        try:
            _check_folder(p)
        except EvaluationInputError as e:
            raise EvaluationInputError(f"{flag} {e}") from None
    _check_overlaps(flagged)

    from components.runtime.tflm import TflmStreamer

    tflm = TflmStreamer(model.tflite, model.arena)
    pos_folders, amb_folders = [], []
    pos_streams: list[TaggedStream] = []
    amb_streams: list[TaggedStream] = []
    report_missed: dict[str, list[Path]] = {}
    report_fa: dict[str, list[tuple[Path, float]]] = {}
    s = model.settings
    for flag, paths, pad in (("--positives", positives, positive_pad_s), ("--ambient", ambient, 0.0)):
        for path, label in zip(paths, folder_labels(paths)):
            note(f"reading {flag} {path} ({label})")
            try:
                folder = load_folder(path, label, pad_s=pad)
            except EvaluationInputError as e:
                raise EvaluationInputError(f"{flag} {e}") from None
            note(f"scoring {len(folder.files)} file(s), {folder.seconds / 60:.1f} min, in TFLite-Micro")
            for file, feats in zip(folder.files, folder.features):
                probs = tflm(feats)
                if flag == "--positives":
                    pos_streams.append(TaggedStream(probs, RECORDED, folder.label))
                    if not clip_detected(probs, model.cutoff, s, quantized=True):
                        report_missed.setdefault(folder.label, []).append(file)
                else:
                    amb_streams.append(TaggedStream(probs, folder.label))
                    for t in activations(probs, model.cutoff, s, quantized=True):
                        report_fa.setdefault(folder.label, []).append((file, _fired_at(int(t), s)))
            (pos_folders if flag == "--positives" else amb_folders).append(folder)
    result = breakdown(pos_streams, amb_streams, model.cutoff, quantized=True, settings=s)
    return FolderReport(model, result, pos_folders, amb_folders, report_missed, report_fa)


def _fired_at(inference: int, s: DetectorSettings) -> float:
    """Seconds from the start of the file to when inference `inference` has its audio: its last feature frame
    ends (frame k covers [10k, 10k + 30) ms)."""
    last_frame = (inference + 1) * s.stride_frames - 1
    return (last_frame * s.step_ms + 30) / 1000


def _check_overlaps(flagged: list[tuple[str, Path]]) -> None:
    """No folder twice, and none inside another: its files would count twice (or as both kinds)."""
    resolved = [(flag, p, p.resolve()) for flag, p in flagged]
    for i, (flag_a, a, ra) in enumerate(resolved):
        for flag_b, b, rb in resolved[i + 1:]:
            if ra == rb:
                what = "twice" if flag_a == flag_b else f"as both {flag_a} and {flag_b}"
                raise EvaluationInputError(f"{flag_b} {b}: the same folder is given {what}")
            for inner_flag, inner, outer_flag, outer, r_in, r_out in ((flag_b, b, flag_a, a, rb, ra),
                                                                      (flag_a, a, flag_b, b, ra, rb)):
                if r_in.is_relative_to(r_out):
                    raise EvaluationInputError(f"{inner_flag} {inner}: inside {outer_flag} {outer}; its files "
                                               "would count twice")


def _clock(seconds: float) -> str:
    m, sec = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{sec:05.2f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.2f} h"


def format_report(report: FolderReport, *, limit: int = 20) -> str:
    """The report for a terminal: the model and cutoff, each folder, the breakdown table, then per folder the
    missed positives, the false accepts and the skipped files (at most `limit` lines each)."""
    m, s = report.model, report.model.settings
    source = "the manifest" if m.cutoff_source == "manifest" else "--cutoff"
    lines = [f"model   {m.tflite}  (manifest {m.manifest.name})",
             f"cutoff  {m.cutoff:g} from {source}; detector: sliding window {s.sliding_window}, "
             f"{s.stride_frames} frame{'s' * (s.stride_frames != 1)} per inference, refractory "
             f"{s.refractory_slices} slices", ""]
    width = max(len(f.label) for f in report.positives + report.ambient)
    for kind, folders in (("positives", report.positives), ("ambient", report.ambient)):
        for f in folders:
            extra = [f"{len(f.skipped)} skipped"] if f.skipped else []
            extra += [f"{len(f.ignored)} other file(s) ignored"] if f.ignored else []
            pad = f", each padded with {f.pad_s:g} s of silence either side" if f.pad_s else ""
            lines.append(f"{kind:<10}{f.label:<{width}}  {len(f.files)} file(s), {_duration(f.seconds)}{pad}"
                         + (f"  ({', '.join(extra)})" if extra else "") + f"  {f.path}")
    lines += ["", format_text(report.breakdown)]

    def listing(title: str, rows: list[str]) -> None:
        if rows:
            lines.extend(["", title])
            lines.extend(f"  {r}" for r in rows[:limit])
            if len(rows) > limit:
                lines.append(f"  ... and {len(rows) - limit} more (--json lists them all)")

    listing("missed (positives not detected):",
            [f"{label}: {p}" for label, ps in report.missed.items() for p in ps])
    listing("false accepts (file, time from its start):",
            [f"{label}: {p} at {_clock(t)}" for label, fa in report.false_accepts.items() for p, t in fa])
    listing("skipped files:", [f"{f.label}: {p}: {why}" for f in report.positives + report.ambient
                               for p, why in f.skipped])
    return "\n".join(lines)
