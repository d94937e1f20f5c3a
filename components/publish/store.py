"""The published-model store: one content-addressed folder per model, browsable by a person.

    <store>/<wake-word-slug>/
        versions.jsonl                one line per model ever published here, oldest first
        latest.json                   the line of the model published most recently
        <sha256 of the .tflite[:16]>/
            <name>.tflite             what ESPHome flashes ...
            <name>.json               ... and its v2 manifest, side by side as ESPHome expects
            verification/report.html  the verification report
            verification/blessing.json
            judge/                    the cascade's server-side judge (a teacher's Model directory) ...
            cascade.json              ... and the cascade evaluation: its operating point, the grid, the reduction
            lineage.json              the whole chain back to the raw inputs (`wakeline lineage <this folder>`)
            published.json            written last: the sha256 of every file above; its presence means complete

`<store>` is a local directory or `s3://bucket/prefix` (minio client, credentials from the AWS_* environment
variables, see components.common.storage). The folder name is the model's own hash, so publishing the same
model again changes nothing: its files are not rewritten, and no second index line is added.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from components.common.errors import InputError
from components.common.artifacts import PublishedLayout, sha256_file
from components.common.names import slug
from components.common.jsonio import dumps

COMPLETE, VERSIONS, LATEST, LINEAGE = (PublishedLayout.COMPLETE, PublishedLayout.VERSIONS, PublishedLayout.LATEST,
                                       PublishedLayout.LINEAGE)  # the layout, declared in the catalog
DIGEST_CHARS = 16


class PublishError(InputError):
    pass


def word_folder(wake_word: str) -> str:
    """`Hey Jarvis!` -> `hey-jarvis`: the wake word's folder in the store (components.common.names.slug)."""
    return slug(wake_word, "-")


def version_key(wake_word: str, tflite_sha256: str) -> str:
    return f"{word_folder(wake_word)}/{tflite_sha256[:DIGEST_CHARS]}"


class Store(Protocol):
    uri: str  # what people and records see: a directory path or s3://bucket/prefix

    def location(self, key: str) -> str: ...

    def read_text(self, key: str) -> str | None: ...

    def write_text(self, key: str, text: str) -> None: ...

    def put_folder(self, key: str, local: Path) -> None:
        """Make `key/` hold the files of `local` (all of them; `COMPLETE` last)."""

    def download(self, key: str, dst: Path) -> Path:
        """Copy the folder `key/` into `dst`; returns `dst`."""


def _files(local: Path) -> list[Path]:
    """Every file under `local`, the completion marker last."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    return sorted(files, key=lambda p: p.name == COMPLETE)


@dataclass
class LocalStore:
    root: Path

    @property
    def uri(self) -> str:
        return str(self.root)

    def location(self, key: str) -> str:
        return str(self.root / key)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise PublishError(f"{key!r} leaves the store {self.root}")
        return path

    def read_text(self, key: str) -> str | None:
        path = self._path(key)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, key: str, text: str) -> None:
        """Atomic: a reader sees the old text or the new, never half of it."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def put_folder(self, key: str, local: Path) -> None:
        """Copied beside the target, then renamed into place: the folder appears complete or not at all."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for f in _files(local):
                dst = staging / f.relative_to(local)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
            if (target / COMPLETE).is_file():  # published meanwhile by someone else: the same content
                return
            if target.exists():  # an incomplete earlier attempt (no COMPLETE marker): replace it
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)

    def download(self, key: str, dst: Path) -> Path:
        src = self._path(key)
        if not src.is_dir():
            raise PublishError(f"{self.location(key)} does not exist")
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return dst


class S3Store:
    def __init__(self, uri: str, client: Any = None) -> None:
        from components.common.storage import s3_client, split_s3

        self.bucket, prefix = split_s3(uri)
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        parts = PurePosixPath(key).parts
        if ".." in parts or key.startswith("/"):
            raise PublishError(f"{key!r} leaves the store {self.uri}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, what: str, fn):
        import urllib3
        from minio.error import S3Error

        try:
            return fn()
        except S3Error as e:
            raise PublishError(f"{what}: {e.code}: {e.message}") from None
        except urllib3.exceptions.HTTPError as e:
            raise PublishError(f"{what}: cannot reach the S3 endpoint: {e}") from None

    def check_bucket(self) -> None:
        if not self._call(f"s3://{self.bucket}", lambda: self.client.bucket_exists(self.bucket)):
            raise PublishError(f"publish.store {self.uri}: bucket {self.bucket!r} does not exist (create it, or "
                               f"point publish.store at one that does)")

    def read_text(self, key: str) -> str | None:
        from minio.error import S3Error

        def get() -> str | None:
            try:
                response = self.client.get_object(self.bucket, self._key(key))
            except S3Error as e:
                if e.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return response.read().decode("utf-8")
            finally:
                response.close()
                response.release_conn()

        return self._call(self.location(key), get)

    def write_text(self, key: str, text: str) -> None:
        import io

        data = text.encode("utf-8")
        self._call(self.location(key), lambda: self.client.put_object(
            self.bucket, self._key(key), io.BytesIO(data), len(data), content_type=_content_type(key)))

    def put_folder(self, key: str, local: Path) -> None:
        for f in _files(local):
            name = f"{key}/{f.relative_to(local).as_posix()}"
            self._call(self.location(name), lambda name=name, f=f: self.client.fput_object(
                self.bucket, self._key(name), str(f), content_type=_content_type(name)))

    def download(self, key: str, dst: Path) -> Path:
        prefix = self._key(key).rstrip("/") + "/"
        objects = self._call(self.location(key), lambda: [
            o for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True) if not o.is_dir])
        if not objects:
            raise PublishError(f"{self.location(key)} does not exist")
        for obj in objects:
            rel = PurePosixPath(obj.object_name[len(prefix):])
            if ".." in rel.parts:
                raise PublishError(f"refusing object key {obj.object_name!r}")
            self._call(f"s3://{self.bucket}/{obj.object_name}",
                       lambda obj=obj, rel=rel: self.client.fget_object(self.bucket, obj.object_name, str(dst / rel)))
        return dst


def _content_type(key: str) -> str:
    return {".json": "application/json", ".jsonl": "application/x-ndjson", ".html": "text/html; charset=utf-8",
            ".tflite": "application/octet-stream"}.get(PurePosixPath(key).suffix, "application/octet-stream")


def open_store(uri: str, client: Any = None) -> Store:
    """A store for `uri`: `s3://bucket/prefix` or a directory (relative: to the current directory)."""
    from components.common.storage import is_s3

    if is_s3(uri):
        store = S3Store(uri, client)
        store.check_bucket()
        return store
    return LocalStore(Path(uri).expanduser().resolve())


def split_location(location: str) -> tuple[str, str]:
    """A published folder's location -> (store URI, key `<slug>/<digest>`): the last two path parts are the key."""
    location = location.rstrip("/")
    head, _, digest = location.rpartition("/")
    store, _, word = head.rpartition("/")
    if not (store and word and digest):
        raise PublishError(f"{location!r} is not a published model folder (<store>/<wake-word>/<digest>)")
    return store, f"{word}/{digest}"


# --------------------------------------------------------------------------------------------------
# publishing


@dataclass(frozen=True)
class Published:
    key: str  # <slug>/<digest>
    location: str  # where the folder is: a path or s3:// URI
    files: dict[str, str]  # relative path -> sha256
    already_published: bool  # True: the same model was there before; nothing was written


def stage_folder(folder: Path, files: dict[str, Path], lineage: dict[str, Any], record: dict[str, Any]) -> dict[str, str]:
    """Lay out a version folder locally: `files` (relative name -> source), `lineage.json`, and last
    `published.json` = `record` + the sha256 of every file. Returns the file hashes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        dst = folder / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    (folder / LINEAGE).write_text(dumps(lineage, indent=2, sort_keys=True, default=str) + "\n")
    hashes = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    (folder / COMPLETE).write_text(dumps({**record, "files": hashes}, indent=2, sort_keys=True) + "\n")
    return hashes


def publish_folder(store: Store, key: str, folder: Path, tflite_sha256: str) -> Published:
    """Put a staged version folder at `key` unless that model is already there (complete)."""
    existing = store.read_text(f"{key}/{COMPLETE}")
    if existing is not None:
        found = json.loads(existing)
        if found.get("sha256") != tflite_sha256:
            raise PublishError(f"{store.location(key)} holds a different model (sha256 {found.get('sha256')}, "
                               f"this one {tflite_sha256}): a {DIGEST_CHARS}-hex-digit prefix collision")
        return Published(key, store.location(key), dict(found.get("files", {})), True)
    store.put_folder(key, folder)
    complete = json.loads((folder / COMPLETE).read_text())
    return Published(key, store.location(key), dict(complete["files"]), False)


def read_versions(store: Store, word_slug: str) -> list[dict[str, Any]]:
    text = store.read_text(f"{word_slug}/{VERSIONS}") or ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def update_index(store: Store, word_slug: str, entry: dict[str, Any]) -> bool:
    """Add `entry` (one model, keyed by its `sha256`) to `versions.jsonl` unless it is listed, and point
    `latest.json` at it. Returns True when a line was added. (Read-modify-write: publishes of one wake word
    are expected one at a time, as one pipeline's runs are.)"""
    versions = read_versions(store, word_slug)
    added = not any(v.get("sha256") == entry["sha256"] for v in versions)
    if added:
        versions.append(entry)
        store.write_text(f"{word_slug}/{VERSIONS}",
                         "".join(dumps(v, sort_keys=True) + "\n" for v in versions))
    listed = next(v for v in versions if v.get("sha256") == entry["sha256"])
    store.write_text(f"{word_slug}/{LATEST}", dumps(listed, indent=2, sort_keys=True) + "\n")
    return added
