"""Mining scorers: the NumPy MixedNet equals the Keras model on every streaming window; Keras, TFLite and model
directories open as the right scorer with a content identity; previous-model URIs that cannot work say why."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.runtime.scorers import (KerasWindowScorer, ModelNotFound, NumpyMixedNet, TfliteScorer,
                                                 load_scorer, resolve_previous_model)
from components.common.artifacts import sha256_file
from components.training.batches import stream_windows
from components.common.config import Architecture, Mining, ModelSpec
from components.common.frontend import FLOAT_SCALE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models" / "v2"
SPECS = [Mining().probe,
         ModelSpec(name="three-blocks", input_frames=101, first_conv_filters=16, pointwise_filters=[24, 24, 24],
                   mixconv_kernels=[[5], [7, 9], [11]])]


def _model(spec: ModelSpec, seed: int = 1):
    import keras

    from components.training.models import build

    keras.utils.set_random_seed(seed)
    model = build(spec)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # BatchNorm statistics away from their initial values, so folding is tested
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([g * rng.uniform(0.5, 2, g.shape), b + rng.normal(0, 0.3, b.shape),
                               m + rng.normal(0, 0.3, m.shape), v * rng.uniform(0.5, 2, v.shape)])
    return model


def _features(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 800, (frames, 40)).astype(np.uint16)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_numpy_mixednet_equals_keras_on_every_streaming_window(spec):
    model = _model(spec)
    net = NumpyMixedNet.from_keras(model, spec, kind="probe", identity="t")
    assert net.geometry.stride == spec.stride and net.geometry.first_end == spec.input_frames - 1
    for frames in (spec.input_frames - 1, spec.input_frames, spec.input_frames + 2, 1234):
        raw = _features(frames, frames)
        windows = stream_windows(raw, spec.input_frames, spec.stride).astype(np.float32) * np.float32(FLOAT_SCALE)
        want = model(windows, training=False).numpy().reshape(-1) if len(windows) else np.zeros(0)
        got = net.score(raw)
        assert got.shape == want.shape == (net.geometry.outputs(frames),)
        np.testing.assert_allclose(got, want, atol=2e-6)


def _save_model_dir(path: Path, spec: ModelSpec, model) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.keras")
    (path / "model_spec.json").write_text(json.dumps({"spec": spec.model_dump(mode="json"),
                                                      "features": {"stride_frames": spec.stride}}))
    return path


def test_keras_models_open_as_the_fastest_scorer_that_fits(tmp_path):
    spec = SPECS[1]
    model = _model(spec)
    d = _save_model_dir(tmp_path / "mixednet", spec, model)
    scorer = load_scorer(d)
    assert isinstance(scorer, NumpyMixedNet) and scorer.kind == "keras"
    assert scorer.identity == f"keras:{sha256_file(d / 'model.keras')}"
    assert scorer.portable() is scorer  # runs in the scan's worker processes
    raw = _features(500)
    assert load_scorer(d / "model.keras").identity == scorer.identity  # the file beside its spec: the same
    (tmp_path / "bare").mkdir()
    shutil.copy(d / "model.keras", tmp_path / "bare" / "previous.keras")
    bare = load_scorer(tmp_path / "bare" / "previous.keras")  # no spec: window by window, length from the model
    assert isinstance(bare, KerasWindowScorer) and bare.identity == scorer.identity and bare.portable() is None
    np.testing.assert_allclose(bare.score(raw), scorer.score(raw), atol=2e-6)

    from components.training.models import build

    tcn = ModelSpec(name="tcn", architecture=Architecture.TCN, input_frames=100, tcn_channels=8, tcn_dilations=[1, 2])
    t = _save_model_dir(tmp_path / "tcn", tcn, build(tcn))
    tcn_scorer = load_scorer(t)
    assert isinstance(tcn_scorer, KerasWindowScorer) and tcn_scorer.geometry.first_end == 99
    assert tcn_scorer.score(raw).shape == (tcn_scorer.geometry.outputs(500),)


def test_an_esphome_tflite_opens_in_tflite_micro(tmp_path):
    from components.runtime.tflm import TflmStreamer

    d = tmp_path / "published"
    d.mkdir()
    for name in ("hey_jarvis.tflite", "hey_jarvis.json"):  # quantization's output folder: the pair
        shutil.copy(FIXTURES / name, d / name)
    scorer = load_scorer(d)
    assert isinstance(scorer, TfliteScorer) and scorer.portable() is scorer
    import pickle

    assert pickle.loads(pickle.dumps(scorer)).score(_features(100)).shape == (33,)  # opens its own interpreter
    assert scorer.identity == f"tflite:{sha256_file(FIXTURES / 'hey_jarvis.tflite')}"
    assert scorer.geometry.stride == 3 and scorer.geometry.first_end == 2
    raw = _features(300)
    want = TflmStreamer(FIXTURES / "hey_jarvis.tflite")(raw).astype(np.float32) / 256
    np.testing.assert_array_equal(scorer.score(raw), want)
    assert load_scorer(d / "hey_jarvis.tflite").identity == scorer.identity


def test_previous_model_errors_name_the_key(tmp_path):
    with pytest.raises(ModelNotFound, match=r"mining.previous_model: '/no/such/model' does not exist"):
        resolve_previous_model("/no/such/model", tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="no model.keras, .keras or .tflite file"):
        load_scorer(tmp_path / "empty")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("alexa.tflite", "hey_jarvis.tflite"):
        shutil.copy(FIXTURES / name, two / name)
    with pytest.raises(ModelNotFound, match=r"holds 2 models \(alexa.tflite, hey_jarvis.tflite\)"):
        load_scorer(two)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFound, match="neither a .tflite nor a .keras"):
        load_scorer(tmp_path / "notes.txt")
