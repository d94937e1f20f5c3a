"""The embedding teacher inside distillation: fitted on stored speech embeddings, asked per training clip,
mixed into the soft targets with its weight, and refused clearly when the store has no embeddings."""
import numpy as np
import pytest

from components.common.artifacts import FeatureSetWriter, FeatureStoreLayout, Label, Split
from components.common.config import Distillation, EmbeddingTeacher
from components.distillation import embedding_teacher
from components.distillation.stage import logit, soft_targets


def _store(root, *, with_embeddings=True, epochs=2, n=200, seed=0) -> FeatureStoreLayout:
    """Positives' embeddings are shifted along one direction: a head can learn that, and only that."""
    rng = np.random.default_rng(seed)
    layout = FeatureStoreLayout(root)
    direction = rng.normal(size=(16, 96))
    for split, k in [*((Split.TRAIN, e) for e in range(epochs)), (Split.VALIDATION, 0)]:
        w = FeatureSetWriter(layout.set_dir(split, k))
        for i in range(n):
            label = Label.POSITIVE if i % 4 == 0 else (Label.NEGATIVE if i % 2 else Label.ADVERSARIAL_NEGATIVE)
            emb = rng.normal(size=(16, 96)) + (1.5 * direction if label is Label.POSITIVE else 0.0)
            w.add(np.zeros((5, 40)), label, 1.0, {"item": i}, emb if with_embeddings else None)
        w.close()
    return layout


@pytest.mark.slow
def test_fit_learns_the_embeddings_and_scores_every_training_clip(tmp_path):
    store = _store(tmp_path / "s")
    cfg = EmbeddingTeacher(weight=1.0, hidden_units=16, epochs=20, embedded_epochs=2)
    fitted = embedding_teacher.fit(store, cfg, seed=3)
    assert [len(p) for p in fitted.train_probabilities] == [200, 200]
    first_only = embedding_teacher.fit(store, cfg.model_copy(update={"embedded_epochs": 1}), seed=3)
    assert len(first_only.train_probabilities) == 1  # later epochs take the same item's epoch-0 score
    np.testing.assert_array_equal(first_only.probabilities(1, np.arange(5)), first_only.probabilities(0, np.arange(5)))
    train = store.open(Split.TRAIN, 1)
    p = fitted.probabilities(1, np.arange(200))
    assert p[train.positives].min() > 0.5 > p[~train.positives].max()
    val = fitted.report["validation"]
    assert val["frr"] == 0.0 and val["positives"] == 50
    assert val["accepted"] == {"negative": 0.0, "adversarial_negative": 0.0}
    again = embedding_teacher.fit(store, cfg, seed=3)  # seeded: the same head
    np.testing.assert_array_equal(again.train_probabilities[0], fitted.train_probabilities[0])
    path = fitted.save(tmp_path)
    from components.training.embedding_head import EmbeddingHead

    emb = np.asarray(train.embeddings(), np.float32)
    np.testing.assert_allclose(EmbeddingHead.load(path).predict_proba(emb), fitted.head.predict_proba(emb), rtol=1e-6)


def test_training_clips_are_scored_out_of_fold():
    """A clip's score comes from a head that never saw its item: a positive whose embedding looks like the
    negatives (a label the other clips contradict) scores low, while the full head, which saw it, may fit it."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        store = _store(Path(d) / "s", epochs=1, n=400)
        fs = store.open(Split.TRAIN, 0)
        # relabel: item 0 is a positive whose embedding is a negative's
        emb = np.asarray(fs.embeddings(), np.float32).copy()
        emb[0] = emb[1]
        w = FeatureSetWriter(Path(d) / "t" / "train" / "epoch-000")
        for i in range(len(fs)):
            w.add(np.zeros((5, 40)), fs.label(i), 1.0, {"item": i}, emb[i])
        w.close()
        fitted = embedding_teacher.fit(FeatureStoreLayout(Path(d) / "t"), EmbeddingTeacher(weight=1.0, epochs=20), 0)
        assert fitted.probabilities(0, np.array([0]))[0] < 0.5
        oof = fitted.report["out_of_fold"]
        assert 0 < oof["frr"] < 0.05 and oof["negatives_accepted"] < 0.05


def test_a_store_without_embeddings_is_refused_naming_the_key(tmp_path):
    store = _store(tmp_path / "s", with_embeddings=False)
    with pytest.raises(embedding_teacher.NoEmbeddings, match=r"distillation.embedding_teacher.weight"):
        embedding_teacher.fit(store, EmbeddingTeacher(weight=1.0), seed=0)


def test_the_embedding_teacher_joins_the_logit_mean_with_its_weight():
    p_a, p_b, p_e = np.array([0.9, 0.2]), np.array([0.5, 0.2]), np.array([0.1, 0.95])
    cfg = Distillation(teacher_weights=(1.0, 1.0), temperature=1.0, embedding_teacher=EmbeddingTeacher(weight=2.0))
    q, _ = soft_targets(p_a, p_b, cfg, p_e)
    np.testing.assert_allclose(logit(q), (logit(p_a) + logit(p_b) + 2 * logit(p_e)) / 4, rtol=1e-4)
    q_without, _ = soft_targets(p_a, p_b, cfg)  # not given: the two teachers alone
    np.testing.assert_allclose(logit(q_without), (logit(p_a) + logit(p_b)) / 2, rtol=1e-4)
