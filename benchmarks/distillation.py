"""Distillation benchmark: does the student learn more from the two teachers than from the labels alone?

On the `smoke` preset (data_prep, mining, augmentation and both teachers as the pipeline runs them) the
student is trained twice with the same steps, seed and batches: distilled (the preset's soft_target_weight)
and without teachers (soft_target_weight 0).

  distilled_minus_baseline_val_frr   distilled student's validation FRR at the FA/h target minus the baseline's
                                     (negative: distillation helps; a difference, since both can be 0)
  distilled_minus_baseline_test_frr  the same on the test split, each at its own validation cutoff
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.common import log, result

PRESET = os.environ.get("WAKELINE_BENCH_DISTILLATION_PRESET", "smoke")


def _test_frr(model_dir: Path, store, config) -> dict[str, float]:
    import keras

    from components.common.artifacts import ModelLayout, Split
    from components.common.metrics import evaluate
    from components.training.scoring import model_scorer, split_scores

    spec = config.distillation.student
    layout = ModelLayout(model_dir)
    model = keras.models.load_model(layout.model)
    cutoff = layout.read_validation()["cutoff"]
    scores = split_scores(model_scorer(model, spec), store, Split.TEST)
    point = min(evaluate(scores), key=lambda p: abs(p.cutoff - cutoff))
    return {"test_frr": point.frr, "test_fa_per_hour": point.fa_per_hour, "cutoff": cutoff}


def run() -> list[dict]:
    from components.augmentation.stage import run as augment
    from components.background_mining.stage import run as mine
    from components.common.artifacts import FeatureStoreLayout
    from components.common.config import load_config
    from components.data_prep.stage import run as prepare
    from components.distillation.stage import run as distil
    from components.teacher_training.stage import run as train_teacher

    with tempfile.TemporaryDirectory(prefix="wakeline-bench-distil-") as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        config = load_config(PRESET, overrides=[f"training.checkpoint_root={root / 'ck'}",
                                                f"mining.session_root={root / 'mining'}"])
        log(f"[bench] distillation: {PRESET} data, mining, features, two teachers")
        prepare(root / "dataset", config, show_progress=False)
        mine(root / "dataset", root / "hard_negatives", config, show_progress=False)
        augment(root / "dataset", root / "features", config, show_progress=False,
                hard_negatives_dir=root / "hard_negatives")
        teachers = [root / f"teacher_{i}" for i in (0, 1)]
        for i, path in enumerate(teachers):
            train_teacher(root / "features", path, config, i, show_progress=False)
        store = FeatureStoreLayout(root / "features")
        side = {}
        for name, weight in (("distilled", config.distillation.soft_target_weight), ("baseline", 0.0)):
            cfg = config.model_copy(update={"distillation": config.distillation.model_copy(
                update={"soft_target_weight": weight})})
            log(f"[bench] distillation: student {name} (soft_target_weight {weight})")
            _, metrics = distil(teachers, root / "features", root / name, cfg, show_progress=False)
            side[name] = {"val_frr": metrics["val_frr"], "val_fa_per_hour": metrics["val_fa_per_hour"],
                          **_test_frr(root / name, store, cfg)}
        teacher_val = {k: v for k, v in metrics.items() if k.startswith("teacher_")}  # the same in both runs
        d, b = side["distilled"], side["baseline"]
        context = dict(preset=PRESET, distilled=d, baseline=b, teachers=teacher_val,
                       steps=config.training.total_steps, seed=config.seed,
                       soft_target_weight=config.distillation.soft_target_weight,
                       temperature=config.distillation.temperature)
        return [result("distilled_minus_baseline_val_frr", d["val_frr"] - b["val_frr"], "FRR", **context),
                result("distilled_minus_baseline_test_frr", d["test_frr"] - b["test_frr"], "FRR", preset=PRESET)]
