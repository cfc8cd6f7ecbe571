from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.ports.object_store import StoredObject


class LocalObjectStore:
    """The embedded default store: `<root>/<bucket>/<key>` on the local disk, `file://` URLs.

    Writes go to a temporary file that is renamed into place, so a failed put leaves nothing
    behind. Metadata and content type live next to the object in `<key>.meta`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if self.root / bucket not in path.parents:
            raise DomainError(
                ErrorType.VALIDATION,
                ErrorCode.INVALID_S3_KEY,
                "key escapes its bucket",
                {"bucket": bucket, "key": key},
            )
        return path

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        path = self._path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for target, payload in (
                (path.with_name(path.name + ".meta"),
                 json.dumps({"content_type": content_type, "metadata": dict(metadata or {})}).encode()),
                (path, data),
            ):
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(payload)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except OSError as exc:
            raise DomainError(
                ErrorType.S3_UPLOAD,
                ErrorCode.S3_UPLOAD_FAILED,
                f"could not write {path}: {exc.strerror or exc}",
                {"bucket": bucket, "key": key},
            ) from exc
        return StoredObject(
            bucket=bucket,
            key=key,
            url=path.as_uri(),
            uri=path.as_uri(),
            size=len(data),
            etag=hashlib.md5(data).hexdigest(),
        )

    def get(self, bucket: str, key: str) -> bytes:
        return self._path(bucket, key).read_bytes()

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".meta").unlink(missing_ok=True)

    def url_for(self, bucket: str, key: str) -> str:
        return self._path(bucket, key).as_uri()

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        path = self._path(bucket, key)
        return json.loads(path.with_name(path.name + ".meta").read_text())["metadata"]
