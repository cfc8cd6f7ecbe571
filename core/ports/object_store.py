from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    url: str  # fetchable by the caller (presigned for S3)
    uri: str  # canonical, e.g. s3://bucket/key or file:///path
    size: int
    etag: str | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """Where finished audio and its event record go. Failures raise DomainError
    (s3_upload_error); a failed put leaves no object behind."""

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
        """Without `overwrite`, an existing object at `key` is left as it is and the put
        raises DomainError OBJECT_EXISTS (atomically where the store can do it)."""
        ...

    def get(self, bucket: str, key: str) -> bytes: ...

    def exists(self, bucket: str, key: str) -> bool: ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def url_for(self, bucket: str, key: str) -> str: ...
