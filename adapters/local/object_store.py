from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from core.domain.errors import DomainError, ErrorCode, ErrorType, object_exists
from core.ports.object_store import StoredObject


class LocalObjectStore:
    """The embedded default store: `<root>/<bucket>/<key>` on the local disk, `file://` URLs.

    Writes go to a temporary file that is renamed into place (or, without overwrite, hard-linked
    into place, which fails atomically when the key exists), so a failed put leaves nothing
    behind. Metadata and content type live next to the object in `<key>.meta`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if self.root / bucket not in path.parents:
            raise DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_S3_KEY, "key escapes its bucket",
                              {"field": "s3_key", "constraint": "inside_bucket", "actual": key})
        return path

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> StoredObject:
        path = self._path(bucket, key)
        meta = json.dumps({"content_type": content_type, "metadata": dict(metadata or {})}).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write(path, data, overwrite)
            self._write(path.with_name(path.name + ".meta"), meta, overwrite=True)
        except FileExistsError:
            raise object_exists(bucket, key) from None
        except OSError as exc:
            raise DomainError(
                ErrorType.STORAGE,
                ErrorCode.S3_UPLOAD_FAILED,
                f"could not write {bucket}/{key}: {exc.strerror or type(exc).__name__}",
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

    @staticmethod
    def _write(target: Path, payload: bytes, overwrite: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # FileExistsError when the key is taken
        finally:
            Path(tmp).unlink(missing_ok=True)

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

    def validate_bucket_access(self, bucket: str) -> None:
        """A bucket here is a folder, made on the first put: any name the store accepts will do."""

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        path = self._path(bucket, key)
        return json.loads(path.with_name(path.name + ".meta").read_text())["metadata"]
