"""The streaming scan, as pure functions: which features each chunk of a long recording needs, which of a
scorer's outputs a chunk owns, peaks above a threshold with a minimum separation, and the top K per hour.

Geometry. A scorer emits one probability every `stride` feature frames; output `n` of a recording ends at
global frame `first_end + n * stride` (a window model of F frames: `first_end = F - 1`, windows starting at
0, stride, 2 stride, ... as `stream_windows` cuts them; a streaming model: `first_end = stride - 1`).

Chunks. A recording is scanned in chunks of `chunk_frames` (a multiple of the stride). Chunk k *owns* the outputs
that end inside its frames `[k C, (k+1) C)`. Its features come from a fresh device frontend started `warmup_frames`
before the chunk. The frontend's state is its fixed-point noise estimate, which converges: after the 3 s warm-up
about 99 % of a chunk's frames equal those of a frontend that ran since the start of the file (the rest differ in
the chunk's first seconds; with 5-8 s all of them, measured on noise, music and speech), and a recording's start
is as arbitrary a starting point for the device. Outputs that end in the warm-up are computed but owned by the
previous chunk, so every output has exactly one value and a chunk is a pure function of (file, chunk index,
geometry): an interrupted and resumed scan equals an uninterrupted one exactly.

Peaks. An output is a hit when its score is above the threshold and it is the highest output within
`min_separation_s` on both sides (ties go to the earlier one). The rule is local, so it is decided exactly across
chunk boundaries from each chunk's candidates and its first and last `radius` scores (`merge_file`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from components.common.frontend import FEATURE_STEP_MS, FEATURE_WINDOW_MS, n_frames
from components.runtime.scorers import Geometry  # where a scorer's outputs fall: the scorer's own fact

SR = 16_000
HOP = SR * FEATURE_STEP_MS // 1000  # samples per feature frame (160)
WINDOW = SR * FEATURE_WINDOW_MS // 1000  # samples under one frame (480)
WARMUP_S = 3.0  # frontend warm-up before each chunk (part of the session key: it shapes the features)
HIST_BINS = 50  # score histogram over [0, 1]


@dataclass(frozen=True)
class ScanParams:
    threshold: float
    min_separation_s: float
    chunk_s: float
    warmup_s: float = WARMUP_S

    def chunk_frames(self, g: Geometry) -> int:
        return max(1, round(self.chunk_s * 1000 / FEATURE_STEP_MS / g.stride)) * g.stride

    def warmup_frames(self, g: Geometry) -> int:
        need = max(self.warmup_s * 1000 / FEATURE_STEP_MS, g.context)
        return math.ceil(need / g.stride) * g.stride

    def radius(self, g: Geometry) -> int:
        """Outputs strictly closer than the minimum separation: `n` competes with `n - r .. n + r`."""
        sep_frames = self.min_separation_s * 1000 / FEATURE_STEP_MS
        return max(0, math.ceil(sep_frames / g.stride) - 1)

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "min_separation_s": self.min_separation_s, "chunk_s": self.chunk_s,
                "warmup_s": self.warmup_s}


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk of one recording: the audio to featurise and the outputs it owns."""

    chunk: int
    frame_start: int  # global frame of the first feature computed (warm-up included)
    frame_stop: int  # one past the last feature frame
    first_output: int  # global index of the first owned output
    owned: int  # number of owned outputs

    @property
    def sample_start(self) -> int:
        return self.frame_start * HOP

    @property
    def sample_stop(self) -> int:
        return self.frame_stop * HOP + (WINDOW - HOP) if self.frame_stop > self.frame_start else self.sample_start


def plan_chunks(n_samples: int, g: Geometry, params: ScanParams) -> list[ChunkPlan]:
    """Every chunk of a recording of `n_samples` (at least one, possibly owning nothing)."""
    total = n_frames(n_samples)
    cf, wf = params.chunk_frames(g), params.warmup_frames(g)
    n_out = g.outputs(total)
    plans = []
    for k in range(max(1, -(-total // cf))):
        lo, hi = k * cf, min(total, (k + 1) * cf)
        first = min(n_out, g.first_output_ending_at_or_after(lo))
        stop = min(n_out, g.first_output_ending_at_or_after(hi))
        plans.append(ChunkPlan(k, max(0, lo - wf), hi, first, stop - first))
    return plans


def owned_scores(probs: np.ndarray, plan: ChunkPlan, g: Geometry) -> np.ndarray:
    """The owned part of a scorer's outputs on the chunk's features (which start at `plan.frame_start`)."""
    local_first = plan.first_output - plan.frame_start // g.stride  # frame_start is a multiple of the stride
    out = np.asarray(probs, dtype=np.float32).reshape(-1)[local_first:local_first + plan.owned]
    if len(out) != plan.owned:
        raise ValueError(f"chunk {plan.chunk}: scorer gave {len(probs)} outputs, expected the {plan.owned} owned "
                         f"ones from local output {local_first}")
    return out


@dataclass
class ChunkResult:
    """What the session stores per chunk: enough to decide every peak exactly, and the score histogram."""

    chunk: int
    first: int  # global index of the first owned output
    count: int  # owned outputs
    candidates: list[tuple[int, float]]  # (global output index, score): above threshold, peak within the chunk
    head: list[float]  # scores of the first min(radius, count) outputs
    tail: list[float]  # scores of the last min(radius, count) outputs
    histogram: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "first": self.first, "count": self.count,
                "candidates": [[int(n), float(p)] for n, p in self.candidates],
                "head": [float(p) for p in self.head], "tail": [float(p) for p in self.tail],
                "histogram": [int(c) for c in self.histogram]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ChunkResult":
        return cls(int(d["chunk"]), int(d["first"]), int(d["count"]), [(int(n), float(p)) for n, p in d["candidates"]],
                   [float(p) for p in d["head"]], [float(p) for p in d["tail"]], [int(c) for c in d["histogram"]])


def _neighbour_max(p: np.ndarray, idx: np.ndarray, r: int, side: int) -> np.ndarray:
    """max of p over (idx - r .. idx - 1) for side=-1, (idx + 1 .. idx + r) for side=+1; -inf where empty."""
    if r == 0 or idx.size == 0:
        return np.full(idx.size, -np.inf)
    padded = np.concatenate([np.full(r, -np.inf, p.dtype), p, np.full(r, -np.inf, p.dtype)])
    offsets = np.arange(1, r + 1) * side
    return padded[idx[:, None] + r + offsets[None, :]].max(axis=1)


def chunk_result(scores: np.ndarray, plan: ChunkPlan, params: ScanParams, g: Geometry) -> ChunkResult:
    p = np.asarray(scores, dtype=np.float32)
    r = params.radius(g)
    idx = np.flatnonzero(p > np.float32(params.threshold))
    keep = (p[idx] > _neighbour_max(p, idx, r, -1)) & (p[idx] >= _neighbour_max(p, idx, r, +1))
    cands = [(plan.first_output + int(i), float(p[i])) for i in idx[keep]]
    m = min(r, len(p))
    hist = np.histogram(np.clip(p, 0.0, 1.0), bins=HIST_BINS, range=(0.0, 1.0))[0] if len(p) else np.zeros(HIST_BINS)
    return ChunkResult(plan.chunk, plan.first_output, plan.owned, cands, p[:m].tolist(),
                       p[len(p) - m:].tolist() if m else [], hist.astype(int).tolist())


def merge_file(chunks: Iterable[ChunkResult], radius: int) -> list[tuple[int, float]]:
    """The recording's peaks: each chunk's candidates checked against the neighbouring chunks' edge scores.
    Exact: any output within `radius` of a candidate in another chunk is in that chunk's head or tail."""
    chunks = sorted(chunks, key=lambda c: c.chunk)
    edge: dict[int, float] = {}
    for c in chunks:
        edge.update({c.first + i: p for i, p in enumerate(c.head)})
        edge.update({c.first + c.count - len(c.tail) + i: p for i, p in enumerate(c.tail)})
    peaks = []
    for c in chunks:
        lo, hi = c.first, c.first + c.count  # this chunk's own outputs were already compared in chunk_result
        for n, p in c.candidates:
            left = [edge[m] for m in range(n - radius, lo) if m in edge]
            right = [edge[m] for m in range(hi, n + radius + 1) if m in edge]
            if all(q < p for q in left) and all(q <= p for q in right):
                peaks.append((n, p))
    return peaks


@dataclass(frozen=True)
class Hit:
    """A peak in one recording: its global output index, where it ends and its score."""

    file: str  # the recording's manifest path (relative to the dataset)
    sha256: str
    output: int
    end_frame: int
    score: float

    @property
    def end_sample(self) -> int:
        return self.end_frame * HOP + WINDOW

    @property
    def end_s(self) -> float:
        return self.end_sample / SR

    def clip_span(self, clip_samples: int) -> tuple[int, int]:
        """`clip_samples` of audio ending where the window ends (shorter at the start of a recording)."""
        return max(0, self.end_sample - clip_samples), self.end_sample


def top_k(hits: Sequence[Hit], hours: float, per_hour: float) -> tuple[list[Hit], int]:
    """The `ceil(per_hour * hours)` best hits over everything scanned (ties: file, then time)."""
    k = math.ceil(per_hour * hours - 1e-9) if hours > 0 else 0
    ranked = sorted(hits, key=lambda h: (-h.score, h.file, h.output))
    return ranked[:k], k


def merge_histograms(histograms: Iterable[Sequence[int]]) -> np.ndarray:
    total = np.zeros(HIST_BINS, np.int64)
    for h in histograms:
        if len(h):
            total += np.asarray(h, np.int64)
    return total
