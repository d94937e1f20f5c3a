"""Every ordinary mistake gets one or two lines naming the thing and what to do, no traceback, exit 2; the gate
failing is exit 1; anything unexpected is one line plus a log file with the traceback, exit 3."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import cli
from pipeline.cli import EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, main
from tests.factories import write

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models" / "v2"


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("WAKELINE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)  # a default --output (runs/verify/...) lands here, not in the repository


def _model(folder: Path, name: str = "okay_nabu") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".tflite", ".json"):
        shutil.copy(FIXTURES / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def _fails(capsys, argv: list[str], code: int, *expected: str) -> str:
    """Run the CLI; the exit code, every expected phrase in stderr, no traceback, at most two lines."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and 1 <= len(err.strip().splitlines()) <= 2, err
    for phrase in expected:
        assert phrase in err, err
    return err


# --- verify: the model -------------------------------------------------------------------------------------


def test_verify_a_missing_path(tmp_path, capsys):
    _fails(capsys, ["verify", str(tmp_path / "nope.json")], EXIT_INPUT, "nope.json: no such file or folder")


def test_verify_takes_the_tflite_itself(tmp_path, capsys):
    model = _model(tmp_path / "m") / "okay_nabu.tflite"
    assert main(["verify", str(model), "--contract-only", "--output", str(tmp_path / "out")]) == EXIT_OK
    assert "contract OK" in capsys.readouterr().out


def test_verify_a_tflite_without_its_manifest(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(FIXTURES / "okay_nabu.tflite", folder / "okay_nabu.tflite")
    _fails(capsys, ["verify", str(folder / "okay_nabu.tflite")], EXIT_INPUT, "no manifest beside it",
           "okay_nabu.json")
    _fails(capsys, ["verify", str(folder)], EXIT_INPUT, "okay_nabu.tflite without a manifest")


def test_verify_a_file_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    _fails(capsys, ["verify", str(tmp_path / "notes.txt")], EXIT_INPUT, "not a model",
           "manifest .json, its .tflite, or the folder")
    (tmp_path / "broken.json").write_text("{not json")
    _fails(capsys, ["verify", str(tmp_path / "broken.json")], EXIT_INPUT, "not a readable JSON manifest")
    (tmp_path / "other.json").write_text(json.dumps({"float_stream_vs_keras_max_abs": 0.0}))
    _fails(capsys, ["verify", str(tmp_path / "other.json")], EXIT_INPUT, "not a micro_wake_word manifest")


def test_verify_a_manifest_whose_model_is_missing(tmp_path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(FIXTURES / "okay_nabu.json", folder / "okay_nabu.json")
    _fails(capsys, ["verify", str(folder)], EXIT_INPUT, "its model file okay_nabu.tflite is missing")


def test_verify_an_empty_folder_and_a_keras_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(capsys, ["verify", str(tmp_path / "empty")], EXIT_INPUT, "no micro_wake_word model in this folder")
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "model.keras").write_bytes(b"")
    _fails(capsys, ["verify", str(tmp_path / "teacher")], EXIT_INPUT, "a Keras model folder",
           "give a .tflite with its .json manifest")


def test_verify_output_that_is_a_file(tmp_path, capsys):
    model = _model(tmp_path / "m")
    (tmp_path / "out").write_text("")
    _fails(capsys, ["verify", str(model), "--output", str(tmp_path / "out")], EXIT_INPUT, "a file, not a folder")


# --- verify: what it measures on -------------------------------------------------------------------------


def test_verify_bad_features(tmp_path, capsys):
    model = _model(tmp_path / "m")
    _fails(capsys, ["verify", str(model), "--features", str(tmp_path / "gone")], EXIT_INPUT,
           "--features", "no such folder")
    (tmp_path / "not-features").mkdir()
    _fails(capsys, ["verify", str(model), "--features", str(tmp_path / "not-features")], EXIT_INPUT,
           "not a feature store", "runs/<run-id>/outputs/features")


def test_verify_bad_audio_folders(tmp_path, capsys):
    model = _model(tmp_path / "m")
    _fails(capsys, ["verify", str(model), "--audio", str(tmp_path / "gone")], EXIT_INPUT, "--audio", "no such folder")
    (tmp_path / "a.wav").write_bytes(b"")
    _fails(capsys, ["verify", str(model), "--audio", str(tmp_path / "a.wav")], EXIT_INPUT, "not a folder")
    audio = tmp_path / "audio"
    write(audio / "positive" / "0.wav", np.zeros(16_000, np.float32), subtype="PCM_16")
    (audio / "kitchen.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    _fails(capsys, ["verify", str(model), "--audio", str(audio)], EXIT_INPUT, "kitchen.wav: not readable audio",
           "convert it")
    _fails(capsys, ["verify", str(model), "--audio", str(audio), "--features", str(tmp_path)], EXIT_INPUT,
           "not both")
    _fails(capsys, ["verify", str(model), "--audio", str(audio), "--contract-only"], EXIT_INPUT,
           "--contract-only measures nothing")


def test_verify_an_empty_audio_folder_fails_the_gate_with_reasons(tmp_path, capsys):
    model = _model(tmp_path / "m")
    (tmp_path / "audio").mkdir()
    assert main(["verify", str(model), "--audio", str(tmp_path / "audio"), "--output", str(tmp_path / "o")]) \
        == EXIT_GATE
    out = capsys.readouterr().out
    assert "NOT BLESSED" in out and "FRR not measured on 0 positives" in out and "nan" not in out.lower()
    assert "no wav/flac/ogg files, so nothing was measured" in out
    assert "no test positives were measured" in out and "no test ambient audio was measured" in out


# --- config and run ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["config", "--config", "missing.yaml"], "missing.yaml: no such config file"),
    (["config", "--config", "."], "a folder, not a config file"),
    (["config", "--set", "novalue"], "expected key.path=value"),
    (["config", "--set", "data_prep.bogus=1"], "data_prep.bogus"),
    (["config", "--preset", "nope"], "unknown preset 'nope'"),
    (["config", "--wake-word", "hey/jarvis"], "letters, spaces and simple punctuation"),
    (["compile", "--config", "missing.yaml"], "no such config file"),
    (["run", "--config", "missing.yaml"], "no such config file"),
    (["run", "--preset", "nope"], "unknown preset"),
    (["run", "--set", "training.total_steps=many"], "training.total_steps"),
])
def test_config_mistakes(argv, expected, capsys):
    capsys.readouterr()
    assert main(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in err, err


def test_config_file_that_is_not_text(tmp_path, capsys):
    (tmp_path / "c.yaml").write_bytes(b"\xff\xfe\x00bad")
    assert main(["config", "--config", str(tmp_path / "c.yaml")]) == EXIT_INPUT
    assert "not a text file" in capsys.readouterr().err


def test_run_into_an_existing_run_directory_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    from kfp import local

    def never(*_a, **_k):
        raise AssertionError("the pipeline must not start")

    monkeypatch.setattr(local, "init", never)
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "summary.json").write_text("{}")
    _fails(capsys, ["run", "--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--run-id", "taken"],
           EXIT_INPUT, "already exists; choose another --run-id")


# --- the last resort ---------------------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_and_a_log_file(tmp_path, capsys, monkeypatch):
    def broken(_args):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(cli, "cmd_presets", broken)
    err = _fails(capsys, ["presets"], EXIT_INTERNAL, "internal error (RuntimeError: something nobody expected)",
                 "Please report it")
    assert len(err.strip().splitlines()) == 1
    logs = list((tmp_path / "logs").glob("wakeline-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert text.startswith("wakeline presets") and "Traceback" in text and "something nobody expected" in text


def test_ctrl_c_is_its_own_exit_code(capsys, monkeypatch):
    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_presets", interrupted)
    _fails(capsys, ["presets"], EXIT_INTERRUPTED, "wakeline: interrupted")


def test_the_exit_codes_are_in_the_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for line in ("0    success", "1    the gate failed", "2    usage or input error", "3    internal error"):
        assert line in out
    assert len({EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED}) == 5


def test_a_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        main(["verify"])
    assert done.value.code == EXIT_INPUT and "the following arguments are required: model" in capsys.readouterr().err


def test_a_path_the_system_refuses_is_an_input_error_naming_it(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    _fails(capsys, ["compile", "--preset", "smoke", "--output", str(tmp_path / "file" / "ir.yaml")], EXIT_INPUT,
           str(tmp_path / "file"), "check the path and its permissions")


def test_an_os_error_without_a_path_is_internal(capsys, monkeypatch):
    def broken(_args):
        raise ConnectionResetError("peer went away")

    monkeypatch.setattr(cli, "cmd_presets", broken)
    _fails(capsys, ["presets"], EXIT_INTERNAL, "internal error (ConnectionResetError: peer went away)")


def test_an_interrupted_run_names_its_partial_run_folder(tmp_path, capsys, monkeypatch):
    import pipeline.local

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.local, "run_local", interrupted)
    _fails(capsys, ["run", "--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--run-id", "r1"],
           EXIT_INTERRUPTED, f"{tmp_path / 'runs' / 'r1'} holds a partial run")


@pytest.mark.parametrize("kind, expected", [
    ("nan", "holds NaN or infinite samples"),
    ("truncated", "truncated (its WAV header declares more audio than the file holds)"),
    ("text", "not readable audio"),
    ("empty", "not readable audio"),
])
def test_verify_refuses_audio_it_cannot_measure(tmp_path, capsys, kind, expected):
    import soundfile as sf

    model = _model(tmp_path / "m")
    audio = tmp_path / "audio"
    write(audio / "positive" / "0.wav", np.full(16_000, 0.1, np.float32), subtype="PCM_16")
    bad = audio / "bad.wav"
    if kind == "nan":
        sf.write(str(bad), np.where(np.arange(16_000) % 100 == 0, np.nan, 0.1).astype(np.float32), 16_000,
                 subtype="FLOAT")
    elif kind == "truncated":
        write(bad, np.full(16_000, 0.1, np.float32), subtype="PCM_16")
        bad.write_bytes(bad.read_bytes()[:8_000])
    elif kind == "text":
        bad.write_text("not audio")
    else:
        bad.write_bytes(b"")
    _fails(capsys, ["verify", str(model), "--audio", str(audio)], EXIT_INPUT, "bad.wav", expected)


@pytest.mark.parametrize("subtype, rate, channels", [("PCM_U8", 16_000, 1), ("PCM_24", 16_000, 1),
                                                     ("PCM_16", 44_100, 2), ("FLOAT", 48_000, 1)])
def test_verify_takes_any_rate_depth_and_channels(tmp_path, capsys, subtype, rate, channels):
    model = _model(tmp_path / "m")
    audio = tmp_path / "audio"
    noise = np.random.default_rng(0).normal(0, 0.02, (rate * 3, channels)).astype(np.float32)
    write(audio / "positive" / "0.wav", noise[: rate], sr=rate, subtype=subtype)
    write(audio / "room.wav", noise, sr=rate, subtype=subtype)
    assert main(["verify", str(model), "--audio", str(audio), "--max-frr", "1", "--target-fa-per-hour", "100",
                 "--output", str(tmp_path / "o")]) == EXIT_OK, capsys.readouterr()
    assert "BLESSED" in capsys.readouterr().out


def test_a_failed_stage_names_its_log(tmp_path, capsys, monkeypatch):
    """kfp.local's FAILURE becomes one line naming the stage and its log under the run folder, exit 3."""
    import pipeline.local

    log = tmp_path / "runs" / "r1" / "logs" / "distillation.log"

    def failing(*_a, **_k):
        raise pipeline.local.StageFailed(tmp_path / "runs" / "r1", "distillation", log)

    monkeypatch.setattr(pipeline.local, "run_local", failing)
    _fails(capsys, ["run", "--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--run-id", "r1"],
           EXIT_INTERNAL, f"wakeline run: stage distillation failed; what it printed, the error included, is in {log}")


def test_run_refuses_mixed_precision_this_cpu_cannot_train_before_any_stage(tmp_path, capsys, monkeypatch):
    """On a CPU with native float16 and no GPU, training.mixed_precision: on fails at once, not in training."""
    from kfp import local

    from components.common import cpus

    def never(*_a, **_k):
        raise AssertionError("the pipeline must not start")

    monkeypatch.setattr(local, "init", never)
    monkeypatch.setattr(cpus, "native_float16_flags", lambda *_a: {"amx_fp16"})
    _fails(capsys, ["run", "--preset", "smoke", "--runs-dir", str(tmp_path / "runs"), "--set",
                    "training.mixed_precision=on", "--set", "training.device=cpu"], EXIT_INPUT, "invalid config")
    assert not (tmp_path / "runs").exists()
