"""The ESPHome contract checks against the official models (Apache-2.0 fixtures) and deliberately broken ones."""
import json
import shutil
from pathlib import Path

import flatbuffers
import pytest

from components.esphome_verification.contract import (flatbuffer_checks, manifest_checks, parse, verify_contract,
                                                      _schema)
from components.runtime.arena import minimum_arena, try_arena

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models"
WAKE_WORDS = ["okay_nabu", "hey_jarvis", "alexa", "hey_mycroft"]


def failed(checks):
    return {c.name for c in checks if not c.passed}


@pytest.mark.parametrize("name", WAKE_WORDS)
def test_official_v2_models_pass_every_check(name):
    checks, generation = verify_contract(FIXTURES / "v2" / f"{name}.tflite", FIXTURES / "v2" / f"{name}.json")
    assert generation == "v2" and failed(checks) == set(), [c for c in checks if not c.passed]
    names = {c.name for c in checks}
    assert {"op_whitelist", "input", "output", "state_variables", "init_subgraph", "tflm_loads",
            "manifest_keys"} <= names
    state = next(c for c in checks if c.name == "state_variables")
    assert state.found["variables"] == 6


def test_v1_model_is_recognised_as_v1_not_blessed():
    checks, generation = verify_contract(FIXTURES / "v1" / "okay_nabu.tflite", FIXTURES / "v1" / "okay_nabu.json")
    assert generation == "v1"
    assert "manifest_version" in failed(checks) and "manifest_keys" in failed(checks)


def test_vad_model_is_not_a_wake_word():
    checks, _ = verify_contract(FIXTURES / "v2" / "vad.tflite", FIXTURES / "v2" / "vad.json")
    bad = next(c for c in checks if c.name == "manifest_values")
    assert bad.found == ["not_vad"]


@pytest.mark.parametrize("change,check", [
    (lambda m: m.update(extra_key=1), "manifest_keys"),
    (lambda m: m.pop("trained_languages"), "manifest_keys"),
    (lambda m: m["micro"].pop("tensor_arena_size"), "manifest_keys"),
    (lambda m: m.update(version=3), "manifest_version"),
    (lambda m: m["micro"].update(probability_cutoff="0.97"), "manifest_values"),
    (lambda m: m["micro"].update(minimum_esphome_version="2024.7"), "manifest_values"),
    (lambda m: m["micro"].update(feature_step_size=20), "manifest_values"),
    (lambda m: m.update(model="missing.tflite"), "model_file"),
])
def test_manifest_corruptions_fail_the_named_check(tmp_path, change, check):
    manifest = json.loads((FIXTURES / "v2" / "okay_nabu.json").read_text())
    change(manifest)
    shutil.copy(FIXTURES / "v2" / "okay_nabu.tflite", tmp_path / "okay_nabu.tflite")
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    checks, _ = manifest_checks(tmp_path / "m.json")
    assert check in failed(checks)


def test_unparseable_model_fails_without_crashing(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(bytes(range(256)) * 200)
    checks = flatbuffer_checks(junk)
    assert [c.name for c in checks] == ["flatbuffer"] and not checks[0].passed


def _repack(model, path):
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


def test_an_op_esphome_lacks_fails_the_whitelist_and_float_io_fails_io_checks(tmp_path):
    schema = _schema()
    model = parse(FIXTURES / "v2" / "okay_nabu.tflite").model
    logistic = next(c for c in model.operatorCodes if c.builtinCode == schema.BuiltinOperator.LOGISTIC)
    logistic.builtinCode = logistic.deprecatedBuiltinCode = schema.BuiltinOperator.TANH
    sg = model.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = schema.TensorType.FLOAT32
    _repack(model, tmp_path / "bad.tflite")
    bad = failed(flatbuffer_checks(tmp_path / "bad.tflite"))
    assert {"op_whitelist", "input", "output", "tensor_dtypes"} <= bad


def test_tflm_probe_and_minimum_arena():
    model = FIXTURES / "v2" / "okay_nabu.tflite"
    assert try_arena(model, 26080)["ok"] and not try_arena(model, 20000)["ok"]
    smallest = minimum_arena(model)
    assert 23_000 < smallest <= 26_080  # reference: 24,516 bytes on x86-64
    assert try_arena(model, smallest)["ok"] and not try_arena(model, smallest - 64)["ok"]


@pytest.mark.parametrize("name", WAKE_WORDS)
def test_wakeline_verify_contract_only_passes_the_official_models(name, tmp_path, capsys):
    from pipeline.cli import main

    assert main(["verify", str(FIXTURES / "v2" / f"{name}.json"), "--contract-only", "--output", str(tmp_path)]) == 0
    assert "v2 manifest: contract OK (behaviour not measured: not a blessing)" in capsys.readouterr().out
    report = (tmp_path / "report.html").read_text()
    assert "op_whitelist" in report
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["contract_passed"] is True and verdict["blessed"] is False


def test_wakeline_verify_without_audio_measures_nothing_so_does_not_bless(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["verify", str(FIXTURES / "v2" / "okay_nabu.json"), "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "v2 manifest: NOT BLESSED" in out and "behaviour not measured" in out


def test_wakeline_verify_gives_v1_a_clear_verdict(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["verify", str(FIXTURES / "v1" / "okay_nabu.json"), "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "v1 manifest: NOT BLESSED" in out and "manifest_version: found 1" in out


def test_truncated_model_fails_the_flatbuffer_check_with_a_message(tmp_path):
    from components.esphome_verification.stage import run

    data = (FIXTURES / "v2" / "okay_nabu.tflite").read_bytes()
    (tmp_path / "okay_nabu.tflite").write_bytes(data[:2000])
    shutil.copy(FIXTURES / "v2" / "okay_nabu.json", tmp_path / "okay_nabu.json")
    verdict = run(tmp_path / "okay_nabu.json", None, tmp_path / "out", target_fa_per_hour=0.5, max_frr=0.5)
    assert not verdict.blessed
    assert any(r.startswith("flatbuffer: found") for r in verdict.reasons), verdict.reasons


@pytest.fixture(scope="module")
def okay_nabu_audio(tmp_path_factory):
    """'okay nabu' spoken by piper (4 renditions) plus a minute of quiet noise: a device-path test set."""
    import numpy as np
    import soundfile as sf

    from components.common.audio import resample
    from components.synthesis.piper_tts import PiperJob, synthesize_many

    root = tmp_path_factory.mktemp("okay_nabu_audio")
    (root / "positive").mkdir()
    jobs = [PiperJob(t, ls, 0.667, 0.8) for t, ls in
            [("okay nabu", 1.0), ("okay nabu.", 0.9), ("okay, nabu!", 1.1), ("okay nabu", 1.2)]]
    for i, (pcm, sr) in enumerate(synthesize_many(jobs, seed=0)):
        x = resample(pcm.astype(np.float32) / 32768, sr)
        sf.write(str(root / "positive" / f"{i}.wav"), np.r_[np.zeros(16000), x, np.zeros(8000)].astype("float32"),
                 16000)
    noise = np.random.default_rng(0).standard_normal(16000 * 60) * 0.01
    sf.write(str(root / "ambient.wav"), noise.astype("float32"), 16000)
    return root


@pytest.mark.slow
def test_device_path_detects_okay_nabu_with_the_official_model(okay_nabu_audio, tmp_path):
    """End to end on real parts: piper audio -> pymicro-features -> ESPHome's integer mapping -> TFLite-Micro ->
    uint8 window vs int(0.97*255). The official okay_nabu fires on every rendition and never on noise."""
    from components.esphome_verification.stage import run

    verdict = run(FIXTURES / "v2" / "okay_nabu.json", None, tmp_path, target_fa_per_hour=0.5, max_frr=0.25,
                  audio_dir=okay_nabu_audio)
    assert verdict.behaviour["positives"] == 4 and verdict.behaviour["frr"] == 0.0
    assert verdict.behaviour["false_accepts"] == 0 and verdict.blessed


@pytest.mark.slow
def test_device_path_hey_jarvis_ignores_okay_nabu(okay_nabu_audio, tmp_path):
    from components.esphome_verification.stage import run

    verdict = run(FIXTURES / "v2" / "hey_jarvis.json", None, tmp_path, target_fa_per_hour=0.5, max_frr=0.25,
                  audio_dir=okay_nabu_audio)
    assert verdict.behaviour["frr"] == 1.0 and not verdict.blessed  # another wake word: never detected


@pytest.mark.slow
def test_device_budget_refuses_a_model_that_does_not_fit(okay_nabu_audio, tmp_path):
    """The official okay_nabu (60,264 B, arena 26,080) fits the default 64 KB / 32 KB budget, not a smaller one."""
    from components.common.config import DeviceBudget
    from components.esphome_verification.stage import run

    default = DeviceBudget()
    fits = run(FIXTURES / "v2" / "okay_nabu.json", None, tmp_path / "a", target_fa_per_hour=0.5, max_frr=0.25,
               audio_dir=okay_nabu_audio, max_tflite_bytes=default.max_tflite_bytes,
               max_arena_bytes=default.max_arena_bytes)
    assert fits.blessed, fits.reasons
    small = run(FIXTURES / "v2" / "okay_nabu.json", None, tmp_path / "b", target_fa_per_hour=0.5, max_frr=0.25,
                audio_dir=okay_nabu_audio, max_tflite_bytes=48_000, max_arena_bytes=24_000)
    assert not small.blessed
    assert small.reasons == ["model size 60,264 B exceeds device_budget.max_tflite_bytes 48,000 B",
                             "tensor_arena_size 26,080 B exceeds device_budget.max_arena_bytes 24,000 B"]


def test_find_takes_the_manifest_not_other_json_beside_it(tmp_path):
    """A quantization output holds parity.json and a published folder cascade.json and lineage.json: a wake
    word sorting after them ("zebra" > "parity") must still be found by its `micro` section, not by name."""
    from components.common.artifacts import Kind, ModelInputError, find, manifests_in

    doc = json.loads((FIXTURES / "v2" / "hey_jarvis.json").read_text())
    (tmp_path / "zebra.json").write_text(json.dumps({**doc, "model": "zebra.tflite"}))
    shutil.copy(FIXTURES / "v2" / "hey_jarvis.tflite", tmp_path / "zebra.tflite")
    for name in ("cascade.json", "lineage.json", "parity.json"):
        (tmp_path / name).write_text(json.dumps({"float_stream_vs_keras_max_abs": 0.0}))
    (tmp_path / "broken.json").write_text("{not json")
    assert manifests_in(tmp_path) == [tmp_path / "zebra.json"]
    assert find(tmp_path, Kind.ESPHOME_MODEL).pair == (tmp_path / "zebra.tflite", tmp_path / "zebra.json")
    (tmp_path / "zebra.json").unlink()
    with pytest.raises(ModelInputError, match="zebra.tflite without a manifest"):
        find(tmp_path, Kind.ESPHOME_MODEL)
