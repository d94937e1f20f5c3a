"""The embedding teacher: the only teacher that has heard real speech.

A small head (`components.common.embedding_head`) on openWakeWord's frozen speech embeddings, fitted on the
embeddings augmentation stored for the augmented training clips of the first `embedded_epochs` epochs
(positives vs everything else, classes balanced), checked on the validation clips' embeddings, then asked once
for a probability per training clip. A clip of a later epoch takes the score of the same item (same index:
every epoch holds the same items in the same order) in the last embedded epoch. The student never sees
embeddings: it learns the head's judgement through the soft targets.

The head judges a clip's last ~2 s, while the student's window of a negative is drawn anywhere in the clip:
for negatives the head's score is the clip's, not the window's (positives and hard negatives keep the end).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.artifacts import LABEL_CODES, FeatureSet, FeatureStoreLayout, Label, Split
from components.common.config import EmbeddingTeacher as EmbeddingTeacherConfig
from components.common.embedding_head import EmbeddingHead, HeadConfig

HEAD_FILE = "embedding_teacher.npz"
CUTOFF = 0.5  # the validation figures are reported at this probability


class NoEmbeddings(ValueError):
    """The feature store was written without speech embeddings."""


@dataclass
class FittedEmbeddingTeacher:
    head: EmbeddingHead
    train_probabilities: list[np.ndarray]  # per training epoch set: P(wake word) per clip, float32
    report: dict[str, Any]

    def probabilities(self, epoch: int, clips: np.ndarray) -> np.ndarray:
        return self.train_probabilities[min(epoch, len(self.train_probabilities) - 1)][clips]

    def save(self, directory: Path) -> Path:
        path = Path(directory) / HEAD_FILE
        self.head.save(path)
        return path


def _with_embeddings(fs: FeatureSet) -> np.ndarray:
    if not fs.has_embeddings:
        raise NoEmbeddings(f"distillation.embedding_teacher.weight > 0, but {fs.root} holds no speech embeddings: "
                           "the feature store was augmented without the embedding teacher; rerun augmentation "
                           "with this config (or set distillation.embedding_teacher.weight=0)")
    return np.asarray(fs.embeddings(), np.float32)


def validation_report(head: EmbeddingHead, fs: FeatureSet) -> dict[str, Any]:
    """Clip-level figures on the validation clips at probability 0.5: FRR of positives, and per negative
    label the fraction accepted."""
    p = head.predict_proba(_with_embeddings(fs))
    report: dict[str, Any] = {"cutoff": CUTOFF, "clips": int(len(p))}
    for label in Label:
        mask = fs.labels == LABEL_CODES[label]
        if not mask.any():
            continue
        if label is Label.POSITIVE:
            report["frr"] = float(np.mean(p[mask] < CUTOFF))
            report["positives"] = int(mask.sum())
        else:
            report.setdefault("accepted", {})[label.value] = float(np.mean(p[mask] >= CUTOFF))
    return report


def fit(store: FeatureStoreLayout, cfg: EmbeddingTeacherConfig, seed: int) -> FittedEmbeddingTeacher:
    """Fit the head on every training epoch's clips; score them; report validation figures."""
    all_sets = [store.open(Split.TRAIN, k) for k in store.epochs(Split.TRAIN)]
    if not all_sets:
        raise ValueError(f"{store.root}: no training epochs in the feature store")
    sets = all_sets[:cfg.embedded_epochs]
    if any(len(fs) != len(all_sets[0]) for fs in all_sets):
        raise ValueError(f"{store.root}: training epochs hold different numbers of clips "
                         f"({[len(fs) for fs in all_sets]}); the embedding teacher needs the same items in each")
    x = [_with_embeddings(fs) for fs in sets]
    y = np.concatenate([fs.positives for fs in sets]).astype(np.float64)
    head = EmbeddingHead(HeadConfig(hidden=cfg.hidden_units, epochs=cfg.epochs, l2=cfg.l2, seed=seed))
    head.fit(np.concatenate(x), y)
    probs = [head.predict_proba(e).astype(np.float32) for e in x]
    report: dict[str, Any] = {"train_clips": int(len(y)), "train_positives": int(y.sum()),
                              "hidden_units": cfg.hidden_units, "epochs": cfg.epochs, "weight": cfg.weight}
    if store.epochs(Split.VALIDATION):
        report["validation"] = validation_report(head, store.open(Split.VALIDATION, store.epochs(Split.VALIDATION)[0]))
    return FittedEmbeddingTeacher(head, probs, report)
