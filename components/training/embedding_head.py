"""A small wake-word head over frozen speech embeddings (`components.training.speech_embedding`).

Input: `[n, 16, 96]` (16 embeddings = the last ~2 s of audio) or already flattened `[n, 1536]`. Model:
standardise -> one ReLU hidden layer (or none: logistic regression) -> sigmoid, trained with Adam on a
class-balanced, L2-regularised binary cross-entropy. Plain NumPy in float64 so it is seeded, deterministic
and dependency-free; saved as `.npz` of arrays plus a JSON config string (no pickle).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from components.common import atomic


@dataclass(frozen=True)
class HeadConfig:
    hidden: int = 64  # 0: logistic regression
    epochs: int = 30
    batch: int = 256
    lr: float = 1e-3
    l2: float = 1e-4
    balance: bool = True  # weight classes so positives and negatives count equally
    seed: int = 0


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z


class EmbeddingHead:
    """fit / predict_proba / save / load. Parameters live in `self.params` (name -> array)."""

    def __init__(self, config: HeadConfig = HeadConfig()):
        self.config = config
        self.params: dict[str, np.ndarray] = {}

    # --- model ---------------------------------------------------------------------------------------
    def _init(self, dim: int, rng: np.random.Generator) -> None:
        h = self.config.hidden
        if h:
            self.params["w1"] = rng.normal(0.0, np.sqrt(2.0 / dim), (dim, h))
            self.params["b1"] = np.zeros(h)
            self.params["w2"] = rng.normal(0.0, np.sqrt(1.0 / h), (h, 1))
        else:
            self.params["w2"] = np.zeros((dim, 1))
        self.params["b2"] = np.zeros(1)

    def _forward(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits `[n]` and the hidden activations (None without a hidden layer)."""
        p = self.params
        hid = np.maximum(z @ p["w1"] + p["b1"], 0.0) if self.config.hidden else None
        out = (hid if hid is not None else z) @ p["w2"] + p["b2"]
        return out[:, 0], hid

    def _grads(self, z: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the weighted mean cross-entropy plus L2 on the weights."""
        p, l2 = self.params, self.config.l2
        logits, hid = self._forward(z)
        d = ((_sigmoid(logits) - y) * w / w.sum())[:, None]  # dLoss/dlogit
        g = {"b2": d.sum(0)}
        top = hid if hid is not None else z
        g["w2"] = top.T @ d + l2 * p["w2"]
        if hid is not None:
            dh = (d @ p["w2"].T) * (hid > 0)
            g["w1"] = z.T @ dh + l2 * p["w1"]
            g["b1"] = dh.sum(0)
        return g

    # --- API -----------------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "EmbeddingHead":
        """Train from scratch on features `x` and 0/1 labels `y` (same result for the same inputs and seed)."""
        c = self.config
        x, y = _flat(x), np.asarray(y, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if c.balance:
            pos = y > 0.5
            w = w * np.where(pos, 0.5 / max(w[pos].sum(), 1e-12), 0.5 / max(w[~pos].sum(), 1e-12)) * len(y)
        self.params = {"mean": x.mean(0), "std": x.std(0) + 1e-6}
        z = (x - self.params["mean"]) / self.params["std"]
        rng = np.random.default_rng(c.seed)
        self._init(z.shape[1], rng)
        names = [k for k in self.params if k not in ("mean", "std")]
        m = {k: np.zeros_like(self.params[k]) for k in names}
        v = {k: np.zeros_like(self.params[k]) for k in names}
        step = 0
        for _ in range(c.epochs):
            order = rng.permutation(len(z))
            for i in range(0, len(z), c.batch):
                idx = order[i:i + c.batch]
                g = self._grads(z[idx], y[idx], w[idx])
                step += 1
                for k in names:  # Adam
                    m[k] = 0.9 * m[k] + 0.1 * g[k]
                    v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
                    mh, vh = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
                    self.params[k] -= c.lr * mh / (np.sqrt(vh) + 1e-8)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits `[n]`."""
        if not self.params:
            raise RuntimeError("the head is not fitted")
        z = (_flat(x) - self.params["mean"]) / self.params["std"]
        return self._forward(z)[0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Wake-word probability `[n]` (float64)."""
        return _sigmoid(self.decision_function(x))

    def save(self, path: Path | str) -> None:
        path = Path(path)  # np.savez adds .npz to a name without it: write the name it will have
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        with atomic.replaced(path) as tmp:
            np.savez(tmp, config=np.array(json.dumps(asdict(self.config))), **self.params)

    @classmethod
    def load(cls, path: Path | str) -> "EmbeddingHead":
        with np.load(path, allow_pickle=False) as f:
            head = cls(HeadConfig(**json.loads(str(f["config"]))))
            head.params = {k: f[k] for k in f.files if k != "config"}
        return head
