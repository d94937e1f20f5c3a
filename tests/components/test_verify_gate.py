"""Nothing measured never passes: the verification gate on audio folders with nothing in them, only positives,
only ambient audio, or zero hours, and the verdict it writes is strict JSON."""
from __future__ import annotations

import numpy as np
import pytest

from components.common.evaluation import Breakdown, FaCell, FrrCell, TaggedStream, breakdown
from components.common.jsonio import loads_strict
from components.esphome_verification.stage import NOT_MEASURED, gate_reasons, run
from tests.chain_factory import FIXTURES
from tests.factories import speechlike, write

MODEL = FIXTURES / "okay_nabu.json"
GENEROUS = {"target_fa_per_hour": 1000.0, "max_frr": 1.0}  # any measurement passes: only "nothing" fails


def _positives(root, n=2):
    for i in range(n):
        write(root / "positive" / f"{i}.wav", speechlike(1.5, seed=i), subtype="PCM_16")


def _ambient(root, seconds=20):
    noise = np.random.default_rng(0).normal(0, 0.02, seconds * 16_000).astype(np.float32)
    write(root / "kitchen.wav", noise, subtype="PCM_16")


def _verdict(out):
    return loads_strict((out / "verdict.json").read_text())  # raises on a bare NaN


def test_an_empty_audio_folder_is_not_blessed_and_says_why(tmp_path):
    (tmp_path / "audio").mkdir()
    verdict = run(MODEL, None, tmp_path / "out", audio_dir=tmp_path / "audio", **GENEROUS)
    assert not verdict.blessed and verdict.contract_passed
    assert "no test ambient audio was measured: FA/h unknown" in verdict.reasons
    assert "no test positives were measured: FRR unknown" in verdict.reasons
    doc = _verdict(tmp_path / "out")
    assert doc["blessed"] is False and doc["behaviour"]["frr"] is None and doc["behaviour"]["fa_per_hour"] is None
    assert "NOT BLESSED" in (tmp_path / "out" / "report.html").read_text()


def test_ambient_without_positives_is_not_blessed(tmp_path):
    _ambient(tmp_path / "audio")
    verdict = run(MODEL, None, tmp_path / "out", audio_dir=tmp_path / "audio", **GENEROUS)
    assert verdict.reasons == ["no test positives were measured: FRR unknown"]
    assert _verdict(tmp_path / "out")["behaviour"]["fa_per_hour"] == 0.0


def test_positives_without_ambient_are_not_blessed(tmp_path):
    _positives(tmp_path / "audio")
    verdict = run(MODEL, None, tmp_path / "out", audio_dir=tmp_path / "audio", **GENEROUS)
    assert verdict.reasons == ["no test ambient audio was measured: FA/h unknown"]
    assert _verdict(tmp_path / "out")["behaviour"]["positives"] == 2


def test_both_measured_goes_through_the_same_breakdown_gate_as_the_pipeline(tmp_path):
    _positives(tmp_path / "audio")
    _ambient(tmp_path / "audio")
    verdict = run(MODEL, None, tmp_path / "out", audio_dir=tmp_path / "audio", **GENEROUS)
    assert verdict.blessed, verdict.reasons
    table = _verdict(tmp_path / "out")["behaviour"]["breakdown"]
    assert {c["condition"] for c in table["fa"]} == {"ambient", "all"} and table["fa"][0]["hours"] > 0
    strict = run(MODEL, None, tmp_path / "strict", audio_dir=tmp_path / "audio", target_fa_per_hour=0.5,
                 max_frr=0.0)  # speech-like tones are not "okay nabu": every positive is missed
    assert not strict.blessed and any(r.startswith("FRR 100.0% over all 2 test positives") for r in strict.reasons)


def test_no_audio_at_all_is_not_a_blessing(tmp_path):
    verdict = run(MODEL, None, tmp_path / "out", **GENEROUS)
    assert not verdict.blessed and verdict.contract_passed and verdict.reasons == [NOT_MEASURED]
    assert _verdict(tmp_path / "out")["contract_passed"] is True


def test_a_condition_with_zero_hours_fails_the_gate():
    """An ambient recording too short for one inference: the condition exists but nothing was measured in it."""
    pos = [TaggedStream(np.full(50, 255, np.uint8), "clean", "piper:a")]
    amb = [TaggedStream(np.zeros(0, np.uint8), "music"), TaggedStream(np.zeros(120_000, np.uint8), "noise")]
    table = breakdown(pos, amb, 0.5, quantized=True)
    assert gate_reasons(table, 0.5, 0.3) == ["test condition 'music' has no audio measured (0 hours): FA/h unknown"]


@pytest.mark.parametrize("table, reason", [
    (Breakdown(0.5, [FrrCell("all", "all", 0, 0)], [FaCell("noise", 1.0, 0), FaCell("all", 1.0, 0)]),
     "no test positives were measured: FRR unknown"),
    (Breakdown(0.5, [FrrCell("all", "all", 4, 0)], []), "no test ambient audio was measured: FA/h unknown"),
    (Breakdown(float("nan"), [FrrCell("all", "all", 4, 0)], [FaCell("noise", 1.0, 0), FaCell("all", 1.0, 0)]),
     "the cutoff is not a number (nan)"),
    (Breakdown(0.5, [FrrCell("all", "all", 4, 0)], [FaCell("noise", 1.0, 0), FaCell("all", 1.0, 0)],
               heldout_families=("kokoro:x",)), "held-out family 'kokoro:x' has no test positives: its FRR is unknown"),
])
def test_every_kind_of_nothing_measured_is_named(table, reason):
    assert reason in gate_reasons(table, 0.5, 0.3)


# --- one gate: `wakeline verify` and the pipeline's verification stage ---------------------------------------


def _captured_gates(monkeypatch, tmp_path, preset: str, extra: list[str]) -> tuple[dict, dict]:
    """The keyword arguments `run` gets from the pipeline's stage and from `wakeline verify`, for one config."""
    import contextlib
    from types import SimpleNamespace

    from components.common import tracking
    from components.common.config import load_config
    from components.esphome_verification import stage
    from pipeline.cli import main

    seen: list[dict] = []

    def fake_run(model, features, out, audio_dir=None, **kwargs):
        seen.append(kwargs)
        raise SystemExit(0)  # nothing to measure here: the thresholds are what is compared

    @contextlib.contextmanager
    def no_tracking(*_a, **_k):
        yield SimpleNamespace(log_metrics=lambda *_: None, log_artifact=lambda *_: None)

    monkeypatch.setattr(stage, "run", fake_run)
    monkeypatch.setattr(tracking, "stage_run", no_tracking)
    config = load_config(preset, overrides=extra)
    with pytest.raises(SystemExit):
        stage.run_stage({"tflite_model": MODEL, "features": tmp_path},
                        {"blessing": tmp_path / "b", "report": tmp_path / "r"}, config)
    with pytest.raises(SystemExit):
        main(["verify", str(MODEL), "--preset", preset, *[a for o in extra for a in ("--set", o)],
              "--features", str(tmp_path)])
    return seen[0], seen[1]


@pytest.mark.parametrize("preset, extra", [("default", []), ("smoke", []),
                                           ("default", ["device_budget.max_arena_bytes=24000",
                                                        "verification_max_frr=0.1"])])
def test_verify_applies_exactly_the_pipelines_gate(monkeypatch, tmp_path, preset, extra):
    pipeline_gate, cli_gate = _captured_gates(monkeypatch, tmp_path, preset, extra)
    assert cli_gate == pipeline_gate
    assert cli_gate["max_tflite_bytes"] and cli_gate["max_arena_bytes"]  # the device budget is part of it
    if preset == "default" and not extra:
        assert (cli_gate["target_fa_per_hour"], cli_gate["max_frr"]) == (0.5, 0.3)  # not the old CLI's 0.5 FRR


def test_the_device_budget_refuses_in_verify_too(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["verify", str(MODEL), "--contract-only", "--set", "device_budget.max_arena_bytes=24000",
                 "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "contract FAILED" in out
    assert "tensor_arena_size 26,080 B exceeds device_budget.max_arena_bytes 24,000 B" in out


def test_verify_uses_the_configs_frr_limit(tmp_path, capsys):
    from pipeline.cli import main

    _positives(tmp_path / "audio")
    _ambient(tmp_path / "audio")
    assert main(["verify", str(MODEL), "--audio", str(tmp_path / "audio"), "--output", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out  # speech-like tones are not "okay nabu": FRR 100 % against the config's 30 %
    assert "FRR 100.0% over all 2 test positives exceeds the limit 30%" in out
    assert main(["verify", str(MODEL), "--audio", str(tmp_path / "audio"), "--output", str(tmp_path / "o"),
                 "--max-frr", "1.0"]) == 0
    assert main(["verify", str(MODEL), "--contract-only", "--max-frr", "2"]) == 2  # validated as the config is
    assert "verification_max_frr" in capsys.readouterr().err


def test_a_folder_with_several_models_is_refused_naming_them_unless_one_is_chosen(tmp_path, capsys):
    import shutil

    from pipeline.cli import main

    for name in ("hey_jarvis", "okay_nabu"):
        for suffix in (".tflite", ".json"):
            shutil.copy(FIXTURES / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    assert main(["verify", str(tmp_path), "--contract-only", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 models (hey_jarvis.json, okay_nabu.json)" in err and "choose one by its manifest" in err
    assert main(["verify", str(tmp_path / "okay_nabu.json"), "--contract-only", "--output", str(tmp_path / "o")]) == 0
    assert main(["verify", str(tmp_path / "hey_jarvis.tflite"), "--contract-only",
                 "--output", str(tmp_path / "o")]) == 0
