"""Loading a config: a preset (`configs/presets/<name>.yaml`) with an optional user file and `--set key.path=value`
overrides merged on top, validated into a WakelineConfig; the config artifact the stages read; error messages
that name every offending key path and what is allowed there.
"""
from __future__ import annotations

import enum
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from components.common.config.base import ConfigError, _bare
from components.common.config.run import WakelineConfig
from pydantic import BaseModel, ValidationError

PRESETS_DIR = Path(__file__).resolve().parents[3] / "configs" / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset: unknown preset {name!r}; allowed: {', '.join(preset_names())}")
    return _load_yaml(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_error(e: yaml.YAMLError) -> str:
    """One line: what is wrong and where (PyYAML's own message spans several lines with a source excerpt)."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + str(getattr(e, "problem", None) or e).splitlines()[0]


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (give a YAML file of overrides, or drop --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file (give a YAML file)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (give a YAML file, UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_error(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def merge_layer(raw: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """Merge one layer (user file, --set, run form) onto the config so far. A layer that names a new
    wake word without its own variants drops the variants it inherited: they spell the old word."""
    if "wake_word" in layer and "wake_word_variants" not in layer and layer["wake_word"] != raw.get("wake_word"):
        layer = {**layer, "wake_word_variants": []}
    return deep_merge(raw, layer)


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one `key.path=value`; the value is parsed as YAML (`3`, `0.5`, `[a, b]`, `true`)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    parts = key.strip().split(".")
    node: Any = {}
    try:
        node = yaml.safe_load(value)
    except yaml.YAMLError:
        node = value
    for part in reversed(parts):
        node = {part: node}
    return merge_layer(raw, node)


def validate(raw: dict[str, Any]) -> WakelineConfig:
    try:
        return WakelineConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def load_config(preset: str, config_file: Path | None = None, overrides: list[str] = (),
                wake_word: str | None = None) -> WakelineConfig:
    raw = load_preset(preset)
    if config_file is not None:
        raw = merge_layer(raw, _load_yaml(Path(config_file)))
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    if wake_word is not None:  # an empty --wake-word (an unset shell variable) is refused, not ignored
        raw = merge_layer(raw, {"wake_word": wake_word})
    return validate(raw)


def resolve_pipeline_config(config_json: str, preset: str, wake_word: str) -> WakelineConfig:
    """What the pipeline's first task does with the run form: the preset, the (possibly partial) JSON
    config on top, then the wake word if one was typed in."""
    overlay: dict[str, Any] = {}
    if config_json.strip():
        try:
            overlay = json.loads(config_json)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config_json: not valid JSON ({e})") from None
        if not isinstance(overlay, dict):
            raise ConfigError("config_json: must be a JSON object")
    raw = merge_layer(load_preset(preset), overlay)
    if wake_word.strip():
        raw = merge_layer(raw, {"wake_word": wake_word.strip()})
    return validate(raw)


def parse_config(config_json: str) -> WakelineConfig:
    """A stage's view: the fully resolved config the first task produced."""
    try:
        return validate(json.loads(config_json))
    except json.JSONDecodeError as e:
        raise ConfigError(f"config_json: not valid JSON ({e})") from None


def write_config_artifact(config: WakelineConfig, path: Path, preset: str) -> dict[str, Any]:
    """The resolved config as the pipeline's first artifact; returns its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_json(), encoding="utf-8")
    return {"preset": preset, "wake_word": config.wake_word, "config_sha256": config.sha256()}


def read_config_artifact(path: Path) -> WakelineConfig:
    return parse_config(Path(path).read_text(encoding="utf-8"))


def format_errors(exc: ValidationError) -> str:
    lines = [f"{len(exc.errors())} config error(s):"]
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        path = ".".join(str(p) for p in loc) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(WakelineConfig, loc[:-1])
            lines.append(f"  {path}: unknown key; allowed here: {', '.join(allowed) or '(none)'}")
            continue
        expected = _annotation_at(WakelineConfig, loc)
        got = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        detail = f" (expected {expected})" if expected and err["type"] != "value_error" else ""
        got_txt = "" if err["type"] in ("missing", "value_error") else f"; got {got!r}"
        lines.append(f"  {path}: {msg}{detail}{got_txt}")
    return "\n".join(lines)


def _step(annotation: Any, part: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _step(typing.get_args(annotation)[0], part)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            if a is not type(None):
                return _step(a, part)
    if isinstance(part, int) and origin in (list, tuple):
        args = typing.get_args(annotation)
        return args[0] if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        f = annotation.model_fields.get(part)
        return f.annotation if f else None
    return None


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    ann: Any = model
    for part in loc:
        ann = _step(ann, part)
    while typing.get_origin(ann) is Annotated:
        ann = typing.get_args(ann)[0]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return list(ann.model_fields)
    return []


def _annotation_at(model: type[BaseModel], loc: list[Any]) -> str:
    ann: Any = model
    for part in loc:
        ann = _step(ann, part)
        if ann is None:
            return ""
    ann = _bare(ann)
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping with keys " + ", ".join(ann.model_fields)
    return _type_name(ann)


def _type_name(ann: Any) -> str:
    """list[int], not list[Annotated[int, FieldInfo(...)]]."""
    ann = _bare(ann)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
