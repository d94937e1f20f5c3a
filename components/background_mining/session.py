"""Persistent mining sessions: interrupted or repeated runs continue, new audio is scanned incrementally.

    <session_root>/<key>/session.json        the scorer's identity and the scan parameters the key hashes
    <session_root>/<key>/files/<sha256>.jsonl one line per finished chunk of that recording (ChunkResult)
    <session_root>/<key>/state.json          per recording: chunks done of total, peaks so far (for people)

The key hashes the scorer identity (model weights' sha256, or the probe's inputs) and every parameter that changes
a chunk's result, so a session is only ever continued by scans that would write the same lines. A recording is
known by the sha256 of its samples, wherever it lives. Lines are appended and flushed one by one; a line cut off
by a kill is dropped (and removed) when the log is read back, so the chunk is scanned again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from components.background_mining.scan import ChunkResult, Geometry, ScanParams
from components.runtime.scorers import identity_hash
from components.common.jsonio import dumps

SCAN_VERSION = "scan-v1"  # bump when a chunk's result would change for the same inputs


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class Session:
    def __init__(self, root: Path, scorer_identity: str, params: ScanParams, geometry: Geometry) -> None:
        self.doc = {"version": SCAN_VERSION, "scorer": scorer_identity, "params": params.as_dict(),
                    "geometry": {"stride": geometry.stride, "first_end": geometry.first_end,
                                 "context": geometry.context}}
        self.key = identity_hash(self.doc)[:16]
        self.dir = Path(root).resolve() / self.key
        self.files_dir = self.dir / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "session.json"
        self.created = not meta.is_file()
        if self.created:
            _atomic_write(meta, dumps({**self.doc, "key": self.key, "created": time.time()}, indent=2))
        self._handles: dict[str, Any] = {}

    def log_path(self, sha256: str) -> Path:
        return self.files_dir / f"{sha256}.jsonl"

    def load(self, sha256: str) -> dict[int, ChunkResult]:
        """Finished chunks of one recording. A torn last line (a kill mid-write) is dropped and cut off."""
        path = self.log_path(sha256)
        if not path.is_file():
            return {}
        data = path.read_bytes()
        done: dict[int, ChunkResult] = {}
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                result = ChunkResult.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                break
            done.setdefault(result.chunk, result)
            good += len(line)
        if good != len(data):
            with open(path, "r+b") as f:
                f.truncate(good)
        return done

    def record(self, sha256: str, result: ChunkResult) -> None:
        f = self._handles.get(sha256)
        if f is None:
            f = self._handles[sha256] = open(self.log_path(sha256), "a", encoding="utf-8")
        f.write(dumps(result.to_json(), separators=(",", ":"), on_non_finite="raise") + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()

    def write_state(self, files: dict[str, dict[str, Any]]) -> None:
        _atomic_write(self.dir / "state.json", dumps({"key": self.key, "updated": time.time(), "files": files},
                                                          indent=2, sort_keys=True))

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
