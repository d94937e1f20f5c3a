"""Where inputs come from: local paths or `s3://bucket/prefix` through the minio client.

S3 settings come from the standard AWS variables, read when a stage runs (never at import or compile time):
`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (e.g. `http://127.0.0.1:8333`; default AWS),
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping
from urllib.parse import urlparse


@dataclass(frozen=True)
class SourceFile:
    """One input file: its origin (what reports show), a local copy, and its path below the source root."""

    origin: str
    local_path: Path
    relative: PurePosixPath

    @property
    def group(self) -> str | None:
        """The first-level folder below the source root (a speaker id), if any."""
        return self.relative.parts[0] if len(self.relative.parts) > 1 else None


class StorageError(Exception):
    pass


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(env: Mapping[str, str] | None = None):
    """A minio client configured from the standard AWS environment variables."""
    from minio import Minio

    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "https://s3.amazonaws.com"
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    import urllib3

    # Bounded: a dead endpoint fails in seconds, not after minio's default 300 s x 5 retries.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=120),
                               retries=urllib3.Retry(total=3, backoff_factor=0.5,
                                                     status_forcelist=(500, 502, 503, 504)))
    return Minio(parsed.netloc, access_key=env.get("AWS_ACCESS_KEY_ID"), http_client=http,
                 secret_key=env.get("AWS_SECRET_ACCESS_KEY"), session_token=env.get("AWS_SESSION_TOKEN"),
                 secure=parsed.scheme == "https",
                 region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None)


def materialize(uri: str, cache_dir: Path, client=None) -> list[SourceFile]:
    """List every file under a source (sorted), downloading S3 objects into `cache_dir` first."""
    if is_s3(uri):
        return _materialize_s3(uri, cache_dir, client or s3_client())
    root = Path(uri).expanduser()
    if root.is_file():
        return [SourceFile(str(root), root, PurePosixPath(root.name))]
    if not root.is_dir():
        raise StorageError(f"source {uri!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [SourceFile(str(p), p, PurePosixPath(p.relative_to(root).as_posix())) for p in files]


def _materialize_s3(uri: str, cache_dir: Path, client) -> list[SourceFile]:
    import urllib3
    from minio.error import S3Error

    bucket, prefix = split_s3(uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    out = []
    try:
        objects = sorted((o for o in client.list_objects(bucket, prefix=prefix, recursive=True)
                          if not o.is_dir), key=lambda o: o.object_name)
        for obj in objects:
            rel = PurePosixPath(obj.object_name[len(prefix):])
            local = (cache_dir / bucket / obj.object_name).resolve()
            if ".." in rel.parts or not local.is_relative_to(cache_dir.resolve()):
                raise StorageError(f"{uri}: refusing object key {obj.object_name!r} (leaves the download folder)")
            if any(part.startswith(".") for part in rel.parts):
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            client.fget_object(bucket, obj.object_name, str(local))
            out.append(SourceFile(f"s3://{bucket}/{obj.object_name}", local, rel))
    except S3Error as e:
        raise StorageError(f"{uri}: {e.code}: {e.message}") from None
    except urllib3.exceptions.HTTPError as e:  # endpoint unreachable, connection reset, ...
        raise StorageError(f"{uri}: cannot reach the S3 endpoint: {e}") from None
    except ValueError as e:  # minio's own validation, e.g. an invalid bucket name
        raise StorageError(f"{uri}: {e}") from None
    return out
