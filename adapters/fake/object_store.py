from __future__ import annotations

import hashlib
import threading
from typing import Mapping

from core.domain.errors import DomainError, ErrorCode, ErrorType, object_exists
from core.ports.object_store import StoredObject


class InMemoryObjectStore:
    """Objects in a dict. `fail_on` makes puts of matching keys fail, for failure-path tests."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str, dict[str, str]]] = {}
        self.fail_on = fail_on
        self._lock = threading.Lock()

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
        if self.fail_on is not None and key.endswith(self.fail_on):
            raise DomainError(
                ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED, f"injected failure for {key}"
            )
        with self._lock:
            if not overwrite and (bucket, key) in self.objects:
                raise object_exists(bucket, key)
            self.objects[(bucket, key)] = (bytes(data), content_type, dict(metadata or {}))
        return StoredObject(
            bucket=bucket,
            key=key,
            url=self.url_for(bucket, key),
            uri=f"memory://{bucket}/{key}",
            size=len(data),
            etag=hashlib.md5(data).hexdigest(),
        )

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)][0]
        except KeyError:
            raise KeyError(f"{bucket}/{key}") from None

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.objects

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self.objects.pop((bucket, key), None)

    def url_for(self, bucket: str, key: str) -> str:
        return f"memory://{bucket}/{key}"

    def validate_bucket_access(self, bucket: str) -> None:
        """Every bucket exists in memory."""

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return self.objects[(bucket, key)][2]

    def content_type(self, bucket: str, key: str) -> str:
        return self.objects[(bucket, key)][1]
