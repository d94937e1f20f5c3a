"""The ESPHome micro_wake_word contract (reference §3, §5, §9) as named checks with the value found.

Reads the flatbuffer with the schema bindings shipped in the tflite-micro wheel (no TensorFlow import), and the
manifest as ESPHome's v2 schema does. Each check is a `Check(name, passed, found, expected)`; a model is
blessed only if every check passes.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components.common.artifacts import EsphomeManifest

ESPHOME_OPS = frozenset({
    "CALL_ONCE", "VAR_HANDLE", "RESHAPE", "READ_VARIABLE", "STRIDED_SLICE", "CONCATENATION", "ASSIGN_VARIABLE",
    "CONV_2D", "MUL", "ADD", "MEAN", "FULLY_CONNECTED", "LOGISTIC", "QUANTIZE", "DEPTHWISE_CONV_2D",
    "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "PACK", "SPLIT_V"})
INPUT_SCALE = 26 / 255
OUTPUT_SCALE = 1 / 256
MAX_STATE_VARIABLES = 20
MAX_MODEL_BYTES = 512 * 1024
V2_KEYS = {"type", "wake_word", "author", "website", "model", "trained_languages", "version", "micro"}
V2_REQUIRED = V2_KEYS - {"website"}
V2_MICRO_KEYS = {"probability_cutoff", "feature_step_size", "sliding_window_size", "tensor_arena_size",
                 "minimum_esphome_version"}
V1_MICRO_KEYS = {"probability_cutoff", "sliding_window_average_size", "minimum_esphome_version"}
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    found: Any
    expected: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


@dataclass
class ParsedModel:
    raw: bytes
    model: Any  # schema ModelT

    def op_names(self, subgraph: int) -> list[str]:
        schema = _schema()
        names = _names(schema.BuiltinOperator)
        codes = self.model.operatorCodes
        out = []
        for op in self.model.subgraphs[subgraph].operators:
            code = codes[op.opcodeIndex]
            out.append(names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"UNKNOWN_{code.builtinCode}"))
        return out


def parse(path: Path) -> ParsedModel:
    schema = _schema()
    raw = Path(path).read_bytes()
    if raw[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer (identifier {raw[4:8]!r}, expected b'TFL3')")
    try:
        return ParsedModel(raw, schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0)))
    except (struct.error, IndexError, TypeError, ValueError) as e:  # offsets past the end: a cut-off copy
        raise ValueError(f"{path}: truncated or corrupt TFLite flatbuffer ({len(raw):,} bytes, its tables point "
                         f"past the end: {e}); copy the model again") from None


def _quant(tensor) -> tuple[float | None, int | None]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    return float(q.scale[0]), int(q.zeroPoint[0])


def flatbuffer_checks(path: Path) -> list[Check]:
    """Every structural check on the .tflite; a file that does not even parse gives one failed check."""
    try:
        pm = parse(path)
    except Exception as e:  # noqa: BLE001 - reported as a failed check, never a crash
        return [Check("flatbuffer", False, f"{type(e).__name__}: {e}", "a TFLite flatbuffer (TFL3)")]
    schema = _schema()
    types = _names(schema.TensorType)
    m = pm.model
    checks = [Check("flatbuffer", True, "TFL3", "a TFLite flatbuffer (TFL3)"),
              Check("schema_version", m.version == 3, m.version, "3"),
              Check("file_size", len(pm.raw) <= MAX_MODEL_BYTES, len(pm.raw), f"<= {MAX_MODEL_BYTES} bytes"),
              Check("subgraph_count", len(m.subgraphs) == 2, len(m.subgraphs), "exactly 2 (main + CALL_ONCE init)")]
    if not m.subgraphs:
        return checks
    main_ops = pm.op_names(0)
    first = m.subgraphs[0].operators[0] if m.subgraphs[0].operators else None
    init_index = getattr(first.builtinOptions, "initSubgraphIndex", None) if first else None
    init_ops = set(pm.op_names(1)) if len(m.subgraphs) > 1 else set()
    checks.append(Check("init_subgraph", bool(main_ops) and main_ops[0] == "CALL_ONCE" and init_index == 1
                        and init_ops <= {"VAR_HANDLE", "ASSIGN_VARIABLE"},
                        {"main_op0": main_ops[0] if main_ops else None, "init_subgraph_index": init_index,
                         "init_ops": sorted(init_ops)},
                        "main op 0 CALL_ONCE(init_subgraph_index=1); init has only VAR_HANDLE/ASSIGN_VARIABLE"))
    all_ops = {name for i in range(len(m.subgraphs)) for name in pm.op_names(i)}
    outside = sorted(all_ops - ESPHOME_OPS)
    checks.append(Check("op_whitelist", not outside, outside or sorted(all_ops),
                        "only the 20 ops ESPHome registers, in every subgraph"))

    sg = m.subgraphs[0]
    inputs, outputs = list(sg.inputs), list(sg.outputs)
    if len(inputs) == 1:
        t = sg.tensors[inputs[0]]
        scale, zp = _quant(t)
        shape = [int(d) for d in t.shape]
        ok = (len(shape) == 3 and shape[0] == 1 and shape[1] >= 1 and shape[2] == 40 and types[t.type] == "INT8"
              and scale is not None and abs(scale / INPUT_SCALE - 1) < 0.005 and zp == -128)
        checks.append(Check("input", ok, {"shape": shape, "dtype": types[t.type], "scale": scale, "zero_point": zp},
                            "one input [1,S,40] int8, scale 26/255 (±0.5%), zero point -128"))
    else:
        checks.append(Check("input", False, {"count": len(inputs)}, "exactly one input"))
    if len(outputs) == 1:
        t = sg.tensors[outputs[0]]
        scale, zp = _quant(t)
        shape = [int(d) for d in t.shape]
        tail = main_ops[-3:]
        ok = (shape == [1, 1] and types[t.type] == "UINT8" and scale is not None
              and abs(scale - OUTPUT_SCALE) < 1e-9 and zp == 0 and tail == ["FULLY_CONNECTED", "LOGISTIC", "QUANTIZE"])
        checks.append(Check("output", ok, {"shape": shape, "dtype": types[t.type], "scale": scale, "zero_point": zp,
                                           "last_ops": tail},
                            "one output [1,1] uint8, scale 1/256, zero point 0, after FULLY_CONNECTED→LOGISTIC→QUANTIZE"))
    else:
        checks.append(Check("output", False, {"count": len(outputs)}, "exactly one output"))

    names = set()
    for op, name in zip(sg.operators, main_ops):
        if name == "VAR_HANDLE":
            shared = getattr(op.builtinOptions, "sharedName", None)
            names.add(shared.decode() if isinstance(shared, bytes) else shared)
    reads, assigns = main_ops.count("READ_VARIABLE"), main_ops.count("ASSIGN_VARIABLE")
    checks.append(Check("state_variables", 0 < len(names) <= MAX_STATE_VARIABLES and reads == assigns == len(names),
                        {"variables": len(names), "reads": reads, "assigns": assigns},
                        f"1..{MAX_STATE_VARIABLES} resource variables, each read and assigned once in main"))
    bad = sorted({types[t.type] for t in sg.tensors} - {"INT8", "INT32", "UINT8", "RESOURCE"})
    checks.append(Check("tensor_dtypes", not bad, bad or "int8/int32/uint8/resource",
                        "no float tensors (variable quantization on, no DEQUANTIZE)"))
    return checks


def manifest_checks(manifest_path: Path) -> tuple[list[Check], EsphomeManifest | None]:
    """ESPHome's v2 manifest schema, strictly: exactly its keys, with types and ranges, on the raw document
    (a v1 window key is not a v2 one); the parsed manifest comes back for the checks that follow."""
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [Check("manifest_json", False, f"{type(e).__name__}: {e}", "a readable JSON object")], None
    if not isinstance(manifest, dict):
        return [Check("manifest_json", False, type(manifest).__name__, "a JSON object")], None
    checks = [Check("manifest_json", True, "object", "a readable JSON object")]
    version = manifest.get("version")
    checks.append(Check("manifest_version", version == 2 and type(version) is int, version,
                        "2 (a v1 manifest is recognised as v1 and not blessed)"))
    keys = set(manifest)
    parsed = EsphomeManifest.from_doc(manifest, Path(manifest_path))
    micro = parsed.micro
    unknown, missing = sorted(keys - V2_KEYS), sorted(V2_REQUIRED - keys)
    micro_unknown, micro_missing = sorted(set(micro) - V2_MICRO_KEYS), sorted(V2_MICRO_KEYS - set(micro))
    checks.append(Check("manifest_keys", not (unknown or missing or micro_unknown or micro_missing),
                        {"unknown": unknown, "missing": missing, "micro_unknown": micro_unknown,
                         "micro_missing": micro_missing}, "exactly the v2 keys (website optional)"))
    model_file = Path(manifest_path).parent / str(manifest.get("model", ""))
    cutoff = parsed.probability_cutoff
    types_ok = {
        "type": manifest.get("type") == "micro",
        "wake_word": isinstance(manifest.get("wake_word"), str) and bool(manifest.get("wake_word", "").strip()),
        "author": isinstance(manifest.get("author"), str) and bool(manifest.get("author", "").strip()),
        "website": "website" not in manifest or bool(re.match(r"^[a-z]+://[^/]+", str(manifest["website"]))),
        "trained_languages": isinstance(manifest.get("trained_languages"), list)
        and all(isinstance(x, str) for x in manifest.get("trained_languages", [])),
        "probability_cutoff": isinstance(cutoff, float) and 0 < cutoff < 1,
        "sliding_window_size": type(micro.get("sliding_window_size")) is int and micro.get("sliding_window_size", 0) >= 1,
        "feature_step_size": micro.get("feature_step_size") == 10 and type(micro.get("feature_step_size")) is int,
        "tensor_arena_size": type(micro.get("tensor_arena_size")) is int and micro.get("tensor_arena_size", 0) > 0,
        "minimum_esphome_version": isinstance(micro.get("minimum_esphome_version"), str)
        and bool(VERSION_RE.match(micro.get("minimum_esphome_version", "")))
        and tuple(map(int, micro["minimum_esphome_version"].split("."))) >= (2024, 7, 0),
        "not_vad": str(manifest.get("wake_word", "")).strip().lower() != "vad",
    }
    failed = sorted(k for k, ok in types_ok.items() if not ok)
    checks.append(Check("manifest_values", not failed, failed or "all valid",
                        "type 'micro'; non-empty wake_word/author; cutoff float in (0,1); window int >= 1; "
                        "feature_step_size 10; arena int > 0; minimum_esphome_version YYYY.M.P >= 2024.7.0"))
    checks.append(Check("model_file", model_file.is_file() and model_file.suffix == ".tflite",
                        str(model_file.name), "the .tflite named by `model`, beside the manifest"))
    return checks, parsed


def manifest_generation(manifest: EsphomeManifest | None) -> str:
    """'v2', 'v1' (the Inception generation ESPHome converts) or 'unknown'."""
    return "unknown" if manifest is None or not manifest.raw else manifest.generation


def tflm_check(model_path: Path, manifest: EsphomeManifest | None) -> Check:
    """Loads and runs in TFLite-Micro with the manifest's arena (in a child process)."""
    from components.runtime.arena import try_arena

    arena = None if manifest is None else manifest.tensor_arena_size
    if not isinstance(arena, int) or isinstance(arena, bool) or arena <= 0:
        return Check("tflm_loads", False, {"tensor_arena_size": arena}, "loads and invokes with the manifest arena")
    result = try_arena(Path(model_path), arena)
    return Check("tflm_loads", bool(result.get("ok")), result, f"loads and invokes 3 times in {arena} bytes")


def verify_contract(model_path: Path, manifest_path: Path) -> tuple[list[Check], str]:
    """Every contract check for one model + manifest pair, and the manifest generation (v1/v2)."""
    m_checks, manifest = manifest_checks(manifest_path)
    checks = flatbuffer_checks(model_path) + m_checks
    if all(c.passed for c in checks if c.name in ("flatbuffer", "subgraph_count")):
        checks.append(tflm_check(model_path, manifest))
    return checks, manifest_generation(manifest)
