"""Lineage: the chain from a published model back through every artifact to the raw inputs.

Every artifact's metadata already carries its own file hashes (`file_sha256`, `manifest_sha256`), the hashes of
what it was made from (`input_sha256`), the config hash and the code version (components.common.artifacts
`Lineage`). A chain is those artifacts as nodes, each linked to its parents by matching an input hash to another
artifact's digest, and, under the dataset, what data_prep read: your recordings, the generated audio, the config.

Three ways in, one chain out:
- `chain_from_artifacts`: artifacts in hand (the publish stage's inputs, a kfp.local run directory's outputs);
  parents found by hash.
- `chain_from_kfp`: a KFP run (API `run_details.task_details`) and its artifacts as MLMD returns them; parents
  are the artifacts each task consumed.
- `Chain.from_dict`: a `lineage.json` the publish stage wrote next to the model.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from components.common.artifacts import (CASCADE_FILE, ArtifactError, DatasetLayout, FeatureStoreLayout, Kind,
                                         ModelLayout, find, read_blessing, sha256_file)
from components.common.stages import BY_NAME, TASKS, Fan, role_by_output

SCHEMA = "wakeline.lineage/1"
ORDER = ["published", "tflite_model", "blessing", "report", "cascade", "student", "teacher_a", "teacher_b", "features",
         "hard_negatives", "dataset", "config"]
# node id -> the stage that makes it; (task name, output name) -> node id, under the task's IR name (as kfp.local
# names its folders) and its display name (as KFP shows it, "teacher a"), both normalised by `task_key`: from the
# stage registry. Outputs a chain passes through without showing: each augmentation shard's features (gather
# joins them).
STAGE = {role: (BY_NAME[task.inputs["shards"][0]] if task.fan is Fan.GATHER else task).stage.value
         for task in TASKS for role in task.roles.values()}  # gathered features: augmentation's
ROLE_BY_OUTPUT = role_by_output()
TRANSPARENT = {(task.name, output) for task in TASKS if task.fan is Fan.PER_SHARD for output in task.outputs}
MAX_LISTED_FILES = 100
# what publish copies into the folder (and the judge, a teacher, which the published node names by its hash)
PUBLISHED_FROM = ("tflite_model", "blessing", "report", "cascade")


def task_key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


@dataclass
class Node:
    id: str
    stage: str
    artifact: str
    uri: str = ""
    main_file: str = ""  # the file `sha256` is the hash of
    sha256: str = ""
    files: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # what its stage recorded it was made from
    parents: list[str] = field(default_factory=list)  # the nodes those inputs are
    unresolved: dict[str, str] = field(default_factory=dict)  # inputs recorded but not among the nodes
    config_sha256: str = ""
    code_version: str = ""
    mlflow_run_id: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def digests(self) -> set[str]:
        found = {self.sha256, *self.files.values()}
        if self.id == "config":
            found.add(self.config_sha256)
        return {d for d in found if d}


@dataclass
class Chain:
    root: str
    nodes: dict[str, Node]
    raw_inputs: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where this chain was read from (not stored)

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.nodes.values(), key=lambda n: (ORDER.index(n.id) if n.id in ORDER else len(ORDER), n.id))
        return {"schema": SCHEMA, "root": self.root, "run": self.run, "raw_inputs": self.raw_inputs,
                "nodes": [asdict(n) for n in ordered]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "") -> "Chain":
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"{source or 'lineage'}: not a wakeline lineage document (schema {doc.get('schema')!r}, "
                             f"expected {SCHEMA!r})")
        nodes = {n["id"]: Node(**n) for n in doc["nodes"]}
        return cls(doc["root"], nodes, dict(doc.get("raw_inputs", {})), dict(doc.get("run", {})), source)

    def ancestors(self, node_id: str | None = None) -> list[str]:
        """Every node the root (or `node_id`) was made from, nearest first, each once."""
        seen: list[str] = []
        queue = list(self.nodes[node_id or self.root].parents)
        while queue:
            nid = queue.pop(0)
            if nid not in seen and nid in self.nodes:
                seen.append(nid)
                queue.extend(self.nodes[nid].parents)
        return seen


# --------------------------------------------------------------------------------------------------
# nodes from artifacts


def _sha_if_file(path: Path | None) -> str:
    return sha256_file(path) if path is not None and path.is_file() else ""


def _esphome_model_name(path: Path | None) -> str:
    """The .tflite's name in a quantization output (empty when the files are not at hand or not one model)."""
    if path is None or not path.is_dir():
        return ""
    try:
        return find(path, Kind.ESPHOME_MODEL).main.name
    except ArtifactError:
        return ""


def _facts(node_id: str, md: Mapping[str, Any]) -> dict[str, Any]:
    """A few things a person wants to see on each line."""
    pick = lambda *keys: {k: md[k] for k in keys if k in md}  # noqa: E731
    if node_id == "config":
        return pick("preset", "wake_word")
    if node_id == "dataset":
        return pick("wake_word", "clips", "quarantined")
    if node_id == "hard_negatives":
        facts = pick("hard_negatives", "hours_scanned", "threshold")
        if isinstance(md.get("scorer"), Mapping):
            facts["scorer"] = md["scorer"].get("kind")
        return facts
    if node_id == "features":
        epochs = sorted({k.split("/")[1] for k in md.get("sets", {}) if k.startswith("train/epoch-")})
        return {**pick("shards", "frames_per_clip", "array_backend"), **({"epochs": len(epochs)} if epochs else {})}
    if node_id in ("teacher_a", "teacher_b", "student"):
        facts = pick("name", "architecture", "parameters", "steps")
        val = md.get("validation")
        if isinstance(val, Mapping):
            facts.update({f"val_{k}": val[k] for k in ("frr", "fa_per_hour") if k in val})
        return facts
    if node_id == "tflite_model":
        return pick("file_size_bytes", "tensor_arena_size", "probability_cutoff")
    if node_id == "blessing":
        facts = pick("blessed")
        b = md.get("behaviour")
        if isinstance(b, Mapping):
            facts.update({k: b[k] for k in ("frr", "fa_per_hour") if k in b})
        if md.get("reasons"):
            facts["reasons"] = list(md["reasons"])
        return facts
    if node_id == "cascade":
        return pick("judge", "cascade_sentry_cutoff", "cascade_judge_cutoff", "cascade_frr", "cascade_fa_per_hour",
                    "fa_per_hour_reduction", "reduction_kind")
    if node_id == "published":
        return pick("location", "registered_model", "model_version", "registry_status")
    return {}


def node_from_artifact(node_id: str, metadata: Mapping[str, Any], path: Path | None = None,
                       uri: str = "") -> Node:
    """One known artifact as a node. `path` (when the files are at hand) lets hashes the metadata does not
    carry be computed: the feature store's metadata.json, the config file, the blessing and report files."""
    md = dict(metadata)
    path = Path(path) if path is not None else None
    files = {str(k): str(v) for k, v in dict(md.get("file_sha256") or {}).items()}
    node = Node(node_id, STAGE.get(node_id, node_id), node_id, uri or (str(path) if path else ""), files=files,
                inputs={str(k): str(v) for k, v in dict(md.get("input_sha256") or {}).items()},
                config_sha256=str(md.get("config_sha256", "")), code_version=str(md.get("code_version", "")),
                mlflow_run_id=str(md.get("mlflow_run_id", "") or ""), facts=_facts(node_id, md))
    if node_id in ("dataset", "hard_negatives"):
        node.main_file = DatasetLayout.manifest_name
        node.sha256 = str(md.get("manifest_sha256") or files.get(node.main_file, ""))
    elif node_id == "features":
        node.main_file = FeatureStoreLayout.METADATA
        node.sha256 = str(md.get("metadata_sha256", "")) or _sha_if_file(path / node.main_file if path else None)
    elif node_id in ("teacher_a", "teacher_b", "student"):
        node.main_file, node.sha256 = ModelLayout.MODEL, files.get(ModelLayout.MODEL, "")
    elif node_id == "tflite_model":
        node.main_file = str(md.get("tflite", "")) or _esphome_model_name(path)
        node.sha256 = files.get(node.main_file, "") or _sha_if_file(path / node.main_file if path else None)
    elif node_id in ("config", "blessing", "report"):
        node.main_file = path.name if path else ""
        node.sha256 = _sha_if_file(path)
        if node_id == "blessing" and "blessed" not in md and node.sha256:  # the verdict file is the metadata
            try:
                node.facts = _facts(node_id, read_blessing(path))
            except ArtifactError:
                pass
    elif node_id == "cascade":
        node.main_file = CASCADE_FILE
        node.sha256 = files.get(node.main_file, "") or _sha_if_file(path)
    elif node_id == "published":
        node.main_file = str(md.get("tflite", ""))
        node.sha256 = str(md.get("sha256", ""))
        node.files = {str(k): str(v) for k, v in dict(md.get("files") or {}).items()}
        node.inputs = {str(k): str(v) for k, v in dict(md.get("inputs") or {}).items()}
        node.uri = str(md.get("location", node.uri))
    return node


def link(nodes: Mapping[str, Node]) -> None:
    """Set each node's parents from its recorded input hashes. The verification's outputs record none: they
    hang under what the verification stage reads, the run's one quantized model and the feature store (its
    test split); the dataset hangs under the config."""
    verified = {nid: nodes[nid].sha256 for nid in ("tflite_model", "features") if nid in nodes and nodes[nid].sha256}
    for nid in ("blessing", "report"):
        if nid in nodes and not nodes[nid].inputs and "tflite_model" in verified:
            nodes[nid].inputs = dict(verified)
    config = nodes.get("config")
    if "dataset" in nodes and config is not None and config.config_sha256:
        nodes["dataset"].inputs.setdefault("config", config.config_sha256)
    owners: dict[str, list[str]] = {}
    for n in nodes.values():
        if n.id == "published":  # the end of every chain, never what something was made from
            continue
        for d in n.digests():
            owners.setdefault(d, []).append(n.id)
    for n in nodes.values():
        n.parents, n.unresolved = [], {}
        for name, sha in sorted(n.inputs.items()):
            found = [o for o in owners.get(sha, []) if o != n.id]
            if found:
                if found[0] not in n.parents:
                    n.parents.append(found[0])
            else:
                n.unresolved[name] = sha


def chain_from_artifacts(artifacts: Mapping[str, tuple[Mapping[str, Any], Path | None, str]],
                         run: Mapping[str, Any] | None = None, raw_inputs: Mapping[str, Any] | None = None,
                         root: str | None = None) -> Chain:
    """`artifacts`: node id -> (metadata, local path or None, uri). Unknown ids are kept as they are."""
    nodes = {nid: node_from_artifact(nid, md, path, uri) for nid, (md, path, uri) in artifacts.items()}
    link(nodes)
    return Chain(root or _default_root(nodes), nodes, dict(raw_inputs or {}), dict(run or {}))


def _default_root(nodes: Mapping[str, Node]) -> str:
    for nid in ("published", "tflite_model", "student"):
        if nid in nodes:
            return nid
    if not nodes:
        raise ValueError("no artifacts to build a lineage from")
    children = {p for n in nodes.values() for p in n.parents}
    return next(n for n in nodes if n not in children)


# --------------------------------------------------------------------------------------------------
# raw inputs: what data_prep read


def raw_inputs(config: Mapping[str, Any] | None, dataset_dir: Path | None,
               config_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config (hash, preset, wake word, where recordings come from) and, from the dataset manifest, the
    clips per generator and your recordings file by file (each with its sha256; the first
    MAX_LISTED_FILES listed, all counted)."""
    out: dict[str, Any] = {}
    cfg = dict(config or {})
    sources = dict(dict(cfg.get("data_prep") or {}).get("sources") or {})
    out["config"] = {"sha256": dict(config_metadata or {}).get("config_sha256", ""),
                     "preset": dict(config_metadata or {}).get("preset", ""),
                     "wake_word": cfg.get("wake_word", dict(config_metadata or {}).get("wake_word", "")),
                     "sources": {k: list(v) for k, v in sources.items() if v}}
    manifest = Path(dataset_dir) / "manifest.jsonl" if dataset_dir is not None else None
    if manifest is None or not manifest.is_file():
        return out
    generated: dict[str, Counter] = {}
    voices: dict[str, set] = {}
    recordings: list[dict[str, str]] = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("source") == "user":
                recordings.append({"origin": r.get("origin", ""), "sha256": r.get("sha256", ""),
                                   "label": r.get("label", "")})
                continue
            generated.setdefault(r.get("source", "?"), Counter())[r.get("label", "?")] += 1
            voices.setdefault(r.get("source", "?"), set()).add(r.get("voice", ""))
    out["manifest_sha256"] = sha256_file(manifest)
    out["generated"] = {src: {"clips": sum(c.values()), "by_label": dict(sorted(c.items())),
                              "voices": len(voices[src] - {""})} for src, c in sorted(generated.items())}
    by_root: Counter = Counter()
    roots = [(role, root) for role, items in sources.items() for root in items]
    for rec in recordings:
        origin = rec["origin"]
        match = next((f"{root} ({role})" for role, root in roots if origin.startswith(str(root).rstrip("/"))), "")
        by_root[match or origin.rsplit("/", 1)[0]] += 1
    recordings.sort(key=lambda r: r["origin"])
    out["recordings"] = {"files": len(recordings), "by_source": dict(sorted(by_root.items())),
                         "listed": recordings[:MAX_LISTED_FILES]}
    return out


# --------------------------------------------------------------------------------------------------
# KFP API + MLMD


def _value(v: Any) -> Any:
    """An MLMD Value (`{"string_value": ...}` / `{"stringValue": ...}` / struct / number) as plain JSON."""
    if not isinstance(v, Mapping):
        return v
    for key in ("string_value", "stringValue", "int_value", "intValue", "double_value", "doubleValue",
                "bool_value", "boolValue", "struct_value", "structValue"):
        if key in v:
            return v[key]
    return dict(v)


def mlmd_metadata(artifact: Mapping[str, Any]) -> dict[str, Any]:
    """An MLMD artifact's custom properties as the metadata dict its component wrote (KFP stores each metadata
    key as one custom property; `display_name` is KFP's own)."""
    props = artifact.get("custom_properties") or artifact.get("customProperties") or {}
    out = {k: _value(v) for k, v in props.items() if k != "display_name"}
    if isinstance(out.get("metadata"), Mapping) and len(out) == 1:  # older KFP: one struct under "metadata"
        out = dict(out["metadata"])
    return out


def chain_from_kfp(run: Mapping[str, Any], artifacts: Iterable[Mapping[str, Any]]) -> Chain:
    """The chain of a KFP run from the API's view of it: `run` as `GET /apis/v2beta1/runs/{id}` returns it
    (`run_details.task_details[]` with `display_name`, `inputs`/`outputs`: name -> `{artifact_ids: [...]}`),
    `artifacts` as MLMD returns them (`id`, `uri`, `custom_properties`). Parents are what each task consumed."""
    by_id = {str(a.get("id")): a for a in artifacts}
    tasks = list((run.get("run_details") or {}).get("task_details") or [])
    produced: dict[str, tuple[str, str]] = {}  # artifact id -> (task, output name)
    consumed: dict[str, list[str]] = {}  # task id -> artifact ids it read
    task_of: dict[str, str] = {}  # artifact id -> producing task id
    for t in tasks:
        tid = str(t.get("task_id") or t.get("display_name"))
        consumed[tid] = [str(i) for lst in (t.get("inputs") or {}).values() for i in lst.get("artifact_ids", [])]
        for name, lst in (t.get("outputs") or {}).items():
            key = (task_key(str(t.get("display_name", ""))), name)
            for aid in map(str, lst.get("artifact_ids", [])):
                # DAG tasks (root, loops, conditions) list their children's artifacts too: the executor wins
                if aid not in produced or key in ROLE_BY_OUTPUT or key in TRANSPARENT:
                    produced[aid], task_of[aid] = key, tid
    role = {aid: ROLE_BY_OUTPUT.get(key) for aid, key in produced.items()}

    def visible_parents(aid: str, seen: frozenset = frozenset()) -> list[str]:
        out: list[str] = []
        for parent in consumed.get(task_of.get(aid, ""), []):
            if parent in seen:
                continue
            if role.get(parent):
                out.append(parent)
            elif produced.get(parent) in TRANSPARENT:
                out.extend(visible_parents(parent, seen | {aid}))
        return out

    nodes: dict[str, Node] = {}
    aid_of: dict[str, str] = {}
    for aid, nid in role.items():
        if nid is None:
            continue
        art = by_id.get(aid, {})
        nodes[nid] = node_from_artifact(nid, mlmd_metadata(art), None, str(art.get("uri", "")))
        aid_of[nid] = aid
    for nid, node in nodes.items():
        parents = [role[p] for p in visible_parents(aid_of[nid])]
        if nid != "dataset":  # every stage reads the config; the chain shows it once, under the dataset
            parents = [p for p in parents if p != "config"]
        if nid == "cascade" and node.inputs:  # it reads both teachers; the judge is the one whose hash it recorded
            named = set(node.inputs.values())
            parents = [p for p in parents
                       if p not in ("teacher_a", "teacher_b") or (p in nodes and nodes[p].digests() & named)]
        if nid == "published":  # publish reads the whole chain to write lineage.json; it publishes these
            named = set(node.inputs.values())  # and the judge: the teacher whose hash it recorded
            parents = [p for p in parents if p in PUBLISHED_FROM or (p in nodes and nodes[p].digests() & named)]
        node.parents = list(dict.fromkeys(p for p in parents if p in nodes))
    config = nodes.get("config")
    cfg_md = mlmd_metadata(by_id.get(aid_of.get("config", ""), {})) if config else {}
    info = {"pipeline_run": str(run.get("display_name", "")), "pipeline_run_id": str(run.get("run_id", "")),
            "source": "kfp"}
    return Chain(_default_root(nodes), nodes, raw_inputs(None, None, cfg_md), info)


# --------------------------------------------------------------------------------------------------
# the terminal view


def _short(sha: str, n: int = 12) -> str:
    return f"{sha[:n]}…" if sha else "-"


def _fmt(v: Any) -> str:
    if isinstance(v, float):  # KFP hands numbers back as floats: 23640.0 is a byte count
        return str(int(v)) if v.is_integer() else f"{v:.4g}"
    if isinstance(v, list):
        return "; ".join(map(str, v))
    return str(v)


def _line(node: Node, config_sha: str) -> str:
    what = f"{node.main_file} {_short(node.sha256)}" if node.main_file else f"sha256 {_short(node.sha256)}"
    if node.id == "config":
        what = f"config_sha256 {_short(node.config_sha256)}"
    parts = [f"{node.id} ({node.stage})", what]
    if node.config_sha256 and node.id != "config":
        flag = " (differs from the run's config!)" if config_sha and node.config_sha256 != config_sha else ""
        parts.append(f"config {node.config_sha256[:8]}{flag}")
    if node.code_version:
        parts.append(f"code {node.code_version}")
    facts = ", ".join(f"{k} {_fmt(v)}" for k, v in node.facts.items() if k != "location" and v not in ("", None))
    if facts:
        parts.append(facts)
    return "  ".join(parts)


def render(chain: Chain) -> str:
    """The chain as a tree: the root first, each artifact under what it was made from (once in full; again
    as "see above"), the raw inputs under the dataset."""
    config = chain.nodes.get("config")
    config_sha = config.config_sha256 if config else str(chain.raw_inputs.get("config", {}).get("sha256", ""))
    root = chain.nodes[chain.root]
    head = [_line(root, config_sha)]
    if root.uri:
        head.append(f"  at {root.uri}")
    run = ", ".join(f"{k} {v}" for k, v in chain.run.items() if v)
    if run:
        head.append(f"  run: {run}")
    lines: list[str] = []
    shown: set[str] = {root.id}
    raw = _raw_lines(chain.raw_inputs, with_config="config" not in chain.nodes)

    def children(node: Node) -> list[tuple[str, Any]]:
        parents = sorted((p for p in node.parents if p in chain.nodes),
                         key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))
        kids: list[tuple[str, Any]] = [("node", p) for p in parents]
        kids += [("unresolved", (k, v)) for k, v in sorted(node.unresolved.items())]
        if node.id == "dataset" and raw:
            kids.append(("raw", None))
        return kids

    def walk(node: Node, prefix: str) -> None:
        kids = children(node)
        for i, (kind, item) in enumerate(kids):
            last = i == len(kids) - 1
            branch, extend = ("└── ", "    ") if last else ("├── ", "│   ")
            if kind == "node":
                child = chain.nodes[item]
                if child.id in shown:
                    lines.append(f"{prefix}{branch}{child.id} (see above)")
                    continue
                shown.add(child.id)
                lines.append(f"{prefix}{branch}{_line(child, config_sha)}")
                walk(child, prefix + extend)
            elif kind == "unresolved":
                name, sha = item
                lines.append(f"{prefix}{branch}{name} {_short(sha)} (not an artifact of this run)")
            else:
                lines.append(f"{prefix}{branch}raw inputs")
                for j, text in enumerate(raw):
                    lines.append(f"{prefix}{extend}{'└── ' if j == len(raw) - 1 else '├── '}{text}")

    walk(root, "")
    if "dataset" not in shown and raw:
        lines.append("raw inputs")
        lines += [f"  {t}" for t in raw]
    return "\n".join(head + lines)


def _raw_lines(raw: Mapping[str, Any], with_config: bool = True) -> list[str]:
    out = []
    cfg = raw.get("config") or {}
    if cfg and with_config:
        out.append(f"config {_short(str(cfg.get('sha256', '')), 8)} (preset {cfg.get('preset') or '?'}, "
                   f"wake word {cfg.get('wake_word')!r})")
    gen = raw.get("generated") or {}
    if gen:
        out.append("generated: " + ", ".join(
            f"{src} {g['clips']} clips" + (f" ({g['voices']} voice{'s' if g['voices'] > 1 else ''})"
                                           if g.get("voices") else "") for src, g in gen.items()))
    rec = raw.get("recordings") or {}
    if rec.get("files"):
        out.append(f"your recordings: {rec['files']} files: "
                   + ", ".join(f"{n} from {src}" for src, n in rec.get("by_source", {}).items()))
    elif cfg.get("sources"):
        out.append("your recordings: " + ", ".join(f"{role} {v}" for role, v in cfg["sources"].items()))
    if raw.get("manifest_sha256"):
        out.append(f"every clip with its sha256 and origin: the dataset manifest {_short(raw['manifest_sha256'])}")
    return out
