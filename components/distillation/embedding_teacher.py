"""The embedding teacher: the only teacher that has heard real speech.

A small head (`components.training.embedding_head`) on openWakeWord's frozen speech embeddings, fitted on the
embeddings augmentation stored for the augmented training clips of the first `embedded_epochs` epochs
(positives vs everything else, classes balanced), checked on the validation clips' embeddings. Each training
clip's probability comes from a head fitted on the other `folds` - 1 folds of items (out-of-fold): a head asked
about the clips it was fitted on only repeats their labels (measured: 100 % of train positives above 0.5 and
0 % of negatives), which would teach the student nothing the hard labels do not. A clip of a later epoch takes the score of the same item (same index:
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
from components.training.embedding_head import EmbeddingHead, HeadConfig

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
    """Score every embedded training clip out-of-fold, fit the saved head on all of them, report both."""
    all_sets = [store.open(Split.TRAIN, k) for k in store.epochs(Split.TRAIN)]
    if not all_sets:
        raise ValueError(f"{store.root}: no training epochs in the feature store")
    sets = all_sets[:cfg.embedded_epochs]
    if any(len(fs) != len(all_sets[0]) for fs in all_sets):
        raise ValueError(f"{store.root}: training epochs hold different numbers of clips "
                         f"({[len(fs) for fs in all_sets]}); the embedding teacher needs the same items in each")
    x = [_with_embeddings(fs) for fs in sets]
    y = [fs.positives.astype(np.float64) for fs in sets]

    def head_on(mask: np.ndarray, k: int) -> EmbeddingHead:
        h = EmbeddingHead(HeadConfig(hidden=cfg.hidden_units, epochs=cfg.epochs, l2=cfg.l2, seed=seed + k))
        return h.fit(np.concatenate([e[mask] for e in x]), np.concatenate([t[mask] for t in y]))

    fold = np.random.default_rng([seed, 11]).permutation(len(all_sets[0])) % cfg.folds  # per item, all epochs
    probs = [np.zeros(len(e), np.float32) for e in x]
    for k in range(cfg.folds):
        held = fold == k
        h = head_on(~held, k + 1)
        for e, p in zip(x, probs):
            p[held] = h.predict_proba(e[held])
    head = head_on(np.ones(len(fold), bool), 0)  # the saved head (and the validation figures) see every clip
    pos = np.concatenate(y) > 0.5
    oof = np.concatenate(probs)
    report: dict[str, Any] = {"train_clips": int(len(pos)), "train_positives": int(pos.sum()),
                              "hidden_units": cfg.hidden_units, "epochs": cfg.epochs, "weight": cfg.weight,
                              "folds": cfg.folds,
                              "out_of_fold": {"cutoff": CUTOFF, "frr": float(np.mean(oof[pos] < CUTOFF)),
                                              "negatives_accepted": float(np.mean(oof[~pos] >= CUTOFF))}}
    if store.epochs(Split.VALIDATION):
        report["validation"] = validation_report(head, store.open(Split.VALIDATION, store.epochs(Split.VALIDATION)[0]))
    return FittedEmbeddingTeacher(head, probs, report)
