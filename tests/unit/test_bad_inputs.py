"""Bad input, counted (issue 19): each kind of bad input the README's "Bad input" table lists, run through the
CLI in-process: its exit code and a fragment of its message, and never a traceback. The kinds tested in
test_cli_errors.py are listed in the README too and not repeated here."""
from __future__ import annotations

import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from pipeline.cli import EXIT_GATE, EXIT_INPUT, EXIT_OK, main
from tests.factories import write

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "esphome-models"
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Bad:
    command: str  # the README table's first column
    kind: str  # its second: what was wrong
    argv: Callable[[Path], list[str]]  # builds the input under tmp_path, returns the CLI arguments
    code: int
    message: str  # a fragment of what the user is told


def _model(tmp: Path, edit=None, tflite=None, version="v2") -> Path:
    """The official okay_nabu model (tests/fixtures/esphome-models), its manifest or .tflite changed."""
    folder = tmp / "model"
    folder.mkdir()
    manifest = json.loads((MODELS / version / "okay_nabu.json").read_text())
    if edit:
        edit(manifest)
    (folder / "okay_nabu.json").write_text(json.dumps(manifest))
    data = (MODELS / version / "okay_nabu.tflite").read_bytes()
    (folder / "okay_nabu.tflite").write_bytes(tflite(data) if tflite else data)
    return folder


def _contract(edit=None, tflite=None, version="v2"):
    return lambda tmp: ["verify", str(_model(tmp, edit, tflite, version)), "--contract-only",
                        "--output", str(tmp / "out")]


def _micro(**changes):
    def edit(m):
        for key, value in changes.items():
            if value is _DROP:
                m["micro"].pop(key)
            else:
                m["micro"][key] = value
    return edit


_DROP = object()


def _audio(make_bad):
    """verify on the official model with a folder of one good positive clip and one bad file."""
    def argv(tmp: Path) -> list[str]:
        shutil.copytree(MODELS / "v2", tmp / "model", ignore=lambda _d, names: [n for n in names
                                                                                 if "okay_nabu" not in n])
        audio = tmp / "audio"
        write(audio / "positive" / "0.wav", np.full(16_000, 0.1, np.float32), subtype="PCM_16")
        make_bad(audio)
        return ["verify", str(tmp / "model"), "--audio", str(audio), "--output", str(tmp / "out")]
    return argv


def _ten_hour_wav(audio: Path) -> None:
    """A real 10-hour 16 kHz 16-bit WAV of silence, stored sparse (1.15 GB that take no disk blocks)."""
    data = 10 * 3600 * 16_000 * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16_000,
                                                                                32_000, 2, 16)
              + b"data" + struct.pack("<I", data))
    with open(audio / "night.wav", "wb") as f:
        f.write(header)
        f.truncate(len(header) + data)


def _header_only(audio: Path) -> None:
    write(audio / "blank.wav", np.zeros(0, np.float32), subtype="PCM_16")


def _config(*sets: str):
    return lambda tmp: ["config", *[a for s in sets for a in ("--set", s)]]


def _config_file(text: str):
    def argv(tmp: Path) -> list[str]:
        (tmp / "c.yaml").write_text(text)
        return ["config", "--config", str(tmp / "c.yaml")]
    return argv


BAD_INPUTS = [
    # --- audio (verify --audio) --------------------------------------------------------------------------
    Bad("verify --audio", "10-hour recording", _audio(_ten_hour_wav), EXIT_INPUT, "10.0 h of audio"),
    Bad("verify --audio", "WAV header with no samples", _audio(_header_only), EXIT_INPUT, "no audio samples"),
    # --- models (verify) ---------------------------------------------------------------------------------
    Bad("verify", "truncated .tflite", _contract(tflite=lambda b: b[: len(b) // 2]), EXIT_GATE,
        "truncated or corrupt TFLite flatbuffer"),
    Bad("verify", ".tflite that is not a flatbuffer", _contract(tflite=lambda b: bytes(100)), EXIT_GATE,
        "not a TFLite flatbuffer"),
    Bad("verify", "manifest v1 (the official v1 okay_nabu)", _contract(version="v1"), EXIT_GATE,
        "FAIL  manifest_version  1"),
    Bad("verify", "manifest version 3", _contract(lambda m: m.update(version=3)), EXIT_GATE,
        "FAIL  manifest_version  3"),
    Bad("verify", "manifest without probability_cutoff", _contract(_micro(probability_cutoff=_DROP)), EXIT_GATE,
        "'micro_missing': ['probability_cutoff']"),
    Bad("verify", "probability_cutoff not a number", _contract(_micro(probability_cutoff="high")), EXIT_GATE,
        "FAIL  manifest_values   ['probability_cutoff']"),
    Bad("verify", "probability_cutoff above 1", _contract(_micro(probability_cutoff=1.5)), EXIT_GATE,
        "FAIL  manifest_values   ['probability_cutoff']"),
    Bad("verify", "manifest without tensor_arena_size", _contract(_micro(tensor_arena_size=_DROP)), EXIT_GATE,
        "'micro_missing': ['tensor_arena_size']"),
    Bad("verify", "arena too small (100 B)", _contract(_micro(tensor_arena_size=100)), EXIT_GATE,
        "Failed to allocate"),
    Bad("verify", "feature_step_size 20 (the model takes 10 ms)", _contract(_micro(feature_step_size=20)),
        EXIT_GATE, "FAIL  manifest_values   ['feature_step_size']"),
    Bad("verify", "manifest type not micro", _contract(lambda m: m.update(type="vad")), EXIT_GATE,
        "FAIL  manifest_values   ['type']"),
    Bad("verify", "manifest naming a model elsewhere", _contract(lambda m: m.update(model="../elsewhere.tflite")),
        EXIT_INPUT, "its model file ../elsewhere.tflite is missing"),
    Bad("verify", "manifest without a model key", _contract(lambda m: m.pop("model")), EXIT_INPUT,
        "names no model file"),
    Bad("verify", "manifest without a micro section", _contract(lambda m: m.pop("micro")), EXIT_INPUT,
        "without a manifest (.json with a `micro` section)"),
    # --- config (every command that takes --config/--set; `config` shown) ------------------------------
    Bad("config --set", "negative count", _config("training.batch_size=-1"), EXIT_INPUT,
        "training.batch_size: Input should be greater than or equal to 2"),
    Bad("config --set", "text for a number", _config("training.batch_size=abc"), EXIT_INPUT,
        "training.batch_size: Input should be a valid integer"),
    Bad("config --set", "fraction for a count", _config("training.batch_size=1.5"), EXIT_INPUT,
        "got a number with a fractional part"),
    Bad("config --set", "true/false for a number", _config("training.eval_every_steps=true"), EXIT_INPUT,
        "training.eval_every_steps: a number, not true"),
    Bad("config --set", "on/off unquoted for a toggle (YAML reads true/false)", _config("training.xla=off"),
        EXIT_OK, "xla: 'off'"),
    Bad("config --set", "NaN", _config("training.label_smoothing=nan"), EXIT_INPUT,
        "training.label_smoothing: Input should be a finite number"),
    Bad("config --set", "infinity", _config("target_false_accepts_per_hour=.inf"), EXIT_INPUT,
        "target_false_accepts_per_hour: Input should be a finite number"),
    Bad("config --set", "out of range", _config("training.label_smoothing=0.7"), EXIT_INPUT,
        "Input should be less than 0.5"),
    Bad("config --set", "zero where only positive makes sense", _config("training.learning_rates=[0, 0.1]"),
        EXIT_INPUT, "training.learning_rates.0: Input should be greater than 0"),
    Bad("config --set", "lists that must match in length", _config("training.steps=[10]"), EXIT_INPUT,
        "training.steps and training.learning_rates need one entry per phase"),
    Bad("config --set", "empty list", _config("training.steps=[]", "training.learning_rates=[]"), EXIT_INPUT,
        "List should have at least 1 item after validation, not 0 (expected list[int])"),
    Bad("config --set", "unknown choice", _config("training.xla=maybe"), EXIT_INPUT,
        "training.xla: Input should be 'on', 'off' or 'auto'"),
    Bad("config --set", "unknown device", _config("training.device=tpu"), EXIT_INPUT,
        "Input should be 'auto', 'gpu' or 'cpu'"),
    Bad("config --set", "unknown section", _config("bogus.x=1"), EXIT_INPUT, "bogus: unknown key; allowed here:"),
    Bad("config --set", "a value for a section", _config("training=5"), EXIT_INPUT,
        "training: Input should be a valid dictionary"),
    Bad("config --set", "empty value", _config("training.checkpoint_root="), EXIT_INPUT,
        "training.checkpoint_root: Input should be a valid string"),
    Bad("config --set", "fractions leaving no training data", _config("data_prep.splits.validation_fraction=0.4",
                                                                      "data_prep.splits.test_fraction=0.3"),
        EXIT_INPUT, "validation_fraction + test_fraction must be < 0.6"),
    Bad("config --config", "unknown key in the file", _config_file("training:\n  stepz: [10]\n"), EXIT_INPUT,
        "training.stepz: unknown key; allowed here: steps, learning_rates"),
    Bad("config --config", "YAML syntax error", _config_file("training:\n  steps: [1, 2\n"), EXIT_INPUT,
        "not valid YAML: line 3, column 1: expected ',' or ']'"),
    Bad("config --config", "a key given twice", _config_file("seed: 1\nseed: 2\n"), EXIT_INPUT,
        "not valid YAML: line 2, column 1: key 'seed' is given twice"),
    Bad("config --config", "a list, not a mapping", _config_file("- seed\n"), EXIT_INPUT,
        "the top level must be a mapping of keys, got list"),
    Bad("config --wake-word", "empty (an unset shell variable)", lambda tmp: ["config", "--wake-word", ""],
        EXIT_INPUT, "wake_word: String should have at least 2 characters"),
    Bad("config --wake-word", "no letter in it", lambda tmp: ["config", "--wake-word", "???"], EXIT_INPUT,
        "wake_word: '???' has no letter"),
    Bad("config --wake-word", "longer than 64 characters", lambda tmp: ["config", "--wake-word", "hey " * 20],
        EXIT_INPUT, "wake_word: String should have at most 64 characters"),
]


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("WAKELINE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[f"{b.command}: {b.kind}" for b in BAD_INPUTS])
def test_bad_input(bad, tmp_path, capsys):
    argv = bad.argv(tmp_path)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == bad.code, out + err
    assert bad.message in out + err, out + err
    assert "Traceback" not in out + err
    if code == EXIT_INPUT:
        assert err.strip() and not list((tmp_path / "logs").glob("*.log"))  # told, not an internal error


def test_the_readme_table_lists_every_kind_here():
    """The README's table and this one do not drift apart: every kind here is a row there."""
    text = README.read_text()
    table = text[text.index("### Bad input, counted"):]
    table = table[: table.index("\n## ")]
    rows = {tuple(c.strip().strip("`") for c in line.strip("|").split("|")[:2])
            for line in table.splitlines() if line.startswith("| `")}
    missing = [(b.command, b.kind) for b in BAD_INPUTS if (b.command, b.kind) not in rows]
    assert not missing, missing
    assert len(rows) >= 30 and len(re.findall(r"^\| `", table, re.M)) == len(rows)
