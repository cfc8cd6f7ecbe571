from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

from core.domain.records import StoredObject

__all__ = ["ObjectStore", "StoredObject"]


@runtime_checkable
class ObjectStore(Protocol):
    """Where finished audio, its event record and the result cache go. Failures raise
    DomainError (s3_upload_error); a failed put leaves no object behind. The core reads
    (`get`, `exists`) only for the result cache and to refuse a taken key."""

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

    def validate_bucket_access(self, bucket: str) -> None:
        """Before any work: raises DomainError when `bucket` is missing or these credentials
        cannot use it. A store without buckets of its own (a folder, memory) accepts any."""
