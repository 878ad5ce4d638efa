"""The artifact store: one interface over `file:///path` and `gs://bucket/prefix`.

Callers name objects by a relative key (`runs/<run_id>/model.keras`); the store maps it
onto a local folder or a Cloud Storage prefix. Both backends are plain byte stores with
the same semantics: a write replaces the whole object atomically (a local write goes to
a temporary file first, then `os.replace`), a read of a missing key raises
`ArtifactNotFound`, `list` returns keys relative to the store's root.

Uploads to Cloud Storage are retried on transient errors (`google.api_core` retry with
exponential backoff). Writes here overwrite whole objects with the same content on a
retry, so retrying an unconditional upload is safe.

Light dependencies only: google-cloud-storage is imported lazily, and never TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.storage import Client

log = logging.getLogger(__name__)

UPLOAD_DEADLINE_S = 300.0


class StorageError(RuntimeError):
    """An artifact-store URI or operation is invalid."""


class ArtifactNotFound(StorageError, FileNotFoundError):
    """The requested object does not exist."""


def _clean_key(key: str) -> str:
    """Normalise a relative key and refuse anything that escapes the store's root."""
    if not key or key.startswith("/"):
        raise StorageError(f"artifact key must be a non-empty relative path, got {key!r}")
    parts = PurePosixPath(key).parts
    if any(p in ("..", ".") for p in parts) or "\\" in key:
        raise StorageError(f"artifact key may not contain '.', '..' or backslashes: {key!r}")
    return "/".join(parts)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


class _Backend(Protocol):
    def write(self, key: str, data: bytes, content_type: str) -> None: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


@dataclass
class _LocalBackend:
    root: Path

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/")) if key else self.root

    def write(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ArtifactNotFound(f"no artifact at {self.uri(key)}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.is_dir():
            return []
        keys = [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


@dataclass
class _GCSBackend:
    bucket_name: str
    prefix: str
    client: Client
    upload_deadline_s: float = UPLOAD_DEADLINE_S
    _bucket: Any = field(default=None, init=False, repr=False)

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            self._bucket = self.client.bucket(self.bucket_name)
        return self._bucket

    def _name(self, key: str) -> str:
        return _join(self.prefix, key)

    def write(self, key: str, data: bytes, content_type: str) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        blob = self.bucket.blob(self._name(key))
        blob.upload_from_string(
            data,
            content_type=content_type,
            retry=DEFAULT_RETRY.with_deadline(self.upload_deadline_s),
        )

    def read(self, key: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self.bucket.blob(self._name(key)).download_as_bytes()
        except NotFound as exc:
            raise ArtifactNotFound(f"no artifact at {self.uri(key)}") from exc

    def exists(self, key: str) -> bool:
        return bool(self.bucket.blob(self._name(key)).exists())

    def list(self, prefix: str) -> list[str]:
        full = self._name(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        names = (b.name for b in self.client.list_blobs(self.bucket_name, prefix=full))
        return sorted(n[strip:] for n in names if not n.endswith("/"))

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(self._name(key)).delete()

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._name(key)}"


_CONTENT_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def _content_type(key: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


class ArtifactStore:
    """Read and write artifacts under one root URI (`file:///...` or `gs://bucket/prefix`).

    Build one with `open_store(uri)`; `store.child("runs/abc")` gives a store rooted
    below this one that shares the same client.
    """

    def __init__(self, uri: str, backend: _Backend) -> None:
        self.uri = uri.rstrip("/")
        self._backend = backend

    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    def child(self, prefix: str) -> ArtifactStore:
        """A store rooted at `prefix` below this one (same backend, same client)."""
        prefix = _clean_key(prefix.strip("/"))
        return ArtifactStore(f"{self.uri}/{prefix}", _Prefixed(self._backend, prefix))

    def key_uri(self, key: str) -> str:
        """The full URI of `key` (for logs and reports)."""
        return self._backend.uri(_clean_key(key))

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Write `data` as object `key` (replacing it whole); returns the object's URI."""
        key = _clean_key(key)
        self._backend.write(key, bytes(data), content_type or _content_type(key))
        log.debug("artifact written", extra={"uri": self._backend.uri(key), "bytes": len(data)})
        return self._backend.uri(key)

    def write_text(self, key: str, text: str, content_type: str | None = None) -> str:
        """Write `text` encoded as UTF-8."""
        return self.write_bytes(key, text.encode("utf-8"), content_type)

    def write_json(self, key: str, obj: Any) -> str:
        """Write `obj` as indented, key-sorted JSON (non-finite floats are refused)."""
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=str)
        return self.write_text(key, text + "\n", "application/json")

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; `ArtifactNotFound` when it does not exist."""
        return self._backend.read(_clean_key(key))

    def read_text(self, key: str) -> str:
        """The object decoded as UTF-8."""
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        """The object parsed as JSON; a `StorageError` names the object when it is not JSON."""
        text = self.read_text(key)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.key_uri(key)} is not valid JSON: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether object `key` exists."""
        return self._backend.exists(_clean_key(key))

    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to this store) of all objects under `prefix`, sorted."""
        prefix = _clean_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
        return self._backend.list(prefix)

    def delete(self, key: str) -> None:
        """Delete object `key` if it exists."""
        self._backend.delete(_clean_key(key))

    def upload_file(self, key: str, path: str | os.PathLike[str]) -> str:
        """Upload one local file as object `key`."""
        return self.write_bytes(key, Path(path).read_bytes())

    def upload_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[str]:
        """Upload every file below `local_dir` under `prefix`; returns the keys written."""
        written = []
        for key, path in _walk(Path(local_dir), prefix):
            self.upload_file(key, path)
            written.append(key)
        return written

    def download_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> list[Path]:
        """Copy every object under `prefix` into `local_dir`, keeping relative paths."""
        prefix = prefix.strip("/")
        out = []
        for key in self.list(prefix):
            rel = key[len(prefix) + 1 :] if prefix else key
            target = Path(local_dir).joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(key))
            out.append(target)
        if not out:
            raise ArtifactNotFound(f"no artifacts under {self.uri}/{prefix}")
        return out


def _walk(local_dir: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(local_dir).as_posix()
            yield (_join(prefix.strip("/"), rel), path)


@dataclass
class _Prefixed:
    inner: _Backend
    prefix: str

    def write(self, key: str, data: bytes, content_type: str) -> None:
        self.inner.write(_join(self.prefix, key), data, content_type)

    def read(self, key: str) -> bytes:
        return self.inner.read(_join(self.prefix, key))

    def exists(self, key: str) -> bool:
        return self.inner.exists(_join(self.prefix, key))

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1
        return [k[strip:] for k in self.inner.list(f"{self.prefix}/{prefix}")]

    def delete(self, key: str) -> None:
        self.inner.delete(_join(self.prefix, key))

    def uri(self, key: str) -> str:
        return self.inner.uri(_join(self.prefix, key))


def open_store(
    uri: str,
    *,
    client: Client | None = None,
    upload_deadline_s: float = UPLOAD_DEADLINE_S,
) -> ArtifactStore:
    """Open the artifact store at `uri`.

    `file:///abs/path` is a local folder (created on first write); `gs://bucket[/prefix]`
    is a Cloud Storage prefix reached through `client` (default: a
    `google.cloud.storage.Client()` with application-default credentials, made here once).
    """
    if not uri:
        raise StorageError("ARTIFACT_URI is empty: expected file:///path or gs://bucket/prefix")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StorageError(f"file URI must be file:///absolute/path, got {uri!r}")
        path = Path(unquote(parsed.path))
        if not path.is_absolute():
            raise StorageError(f"file URI must hold an absolute path, got {uri!r}")
        return ArtifactStore(uri, _LocalBackend(path))
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise StorageError(f"gs URI needs a bucket: gs://bucket/prefix, got {uri!r}")
        prefix = parsed.path.strip("/")
        if prefix:
            _clean_key(prefix)
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        backend = _GCSBackend(parsed.netloc, prefix, client, upload_deadline_s)
        return ArtifactStore(uri, backend)
    raise StorageError(f"unsupported artifact URI scheme in {uri!r}: use file:// or gs://")
