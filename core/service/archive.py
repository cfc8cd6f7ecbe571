"""Storing finished audio: where it goes (the request's target or the default bucket), refusing
a taken key before any work, and the audio then its event record, neither without the other."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable, Mapping

from core.domain.audio import EncodedAudio
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import AudioStored
from core.domain.records import (
    SpeechSummary,
    StoredObject,
    captions_key,
    default_key,
    event_record,
    object_metadata,
    record_key,
)
from core.domain.request import SpeechRequest
from core.ports.object_store import ObjectStore
from core.ports.tracer import NoopTracer, Tracer

log = logging.getLogger(__name__)

Target = tuple[str, str]  # bucket, key


class AudioArchive:
    """Where finished audio goes: the request's target, else `default_bucket`, in `store`
    (without a store and a default bucket, audio comes back in the response)."""

    def __init__(self, store: ObjectStore | None = None, default_bucket: str | None = None,
                 key_prefix: str = "higgs-tts", tracer: Tracer | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._store = store
        self._default_bucket = default_bucket
        self._key_prefix = key_prefix
        self._tracer = tracer or NoopTracer()
        self._clock = clock
        self._now = now

    def returns_inline(self, request: SpeechRequest) -> bool:
        """No output target and no default bucket: the audio comes back in the response."""
        return request.output is None and self._default_bucket is None

    def target(self, request: SpeechRequest) -> Target | None:
        """Where the request's audio goes, checked before any work; None: nowhere."""
        output = request.output
        bucket = (output.bucket if output else None) or self._default_bucket
        if output is None and bucket is None:
            return None
        if bucket is None:
            raise validation_error(
                ErrorCode.INVALID_S3_BUCKET,
                "s3_key was given but no s3_bucket, and no default bucket is configured",
                field="s3_bucket", constraint="required_with=s3_key",
            )
        self._require_store()
        key = output.key if output and output.key else None
        if key and output is not None and not output.overwrite:
            self._refuse_taken_key(bucket, key)
        return bucket, key or default_key(self._key_prefix, request.request_id, request.output_format.value,
                                          self._now())

    def store(self, request: SpeechRequest, target: Target, audio: EncodedAudio, summary: SpeechSummary,
              started_at: float, captions: str | None = None) -> tuple[AudioStored, SpeechSummary]:
        """The audio, its WebVTT captions when there are any, then its event record, whose timings
        are the real ones up to the record (upload: the audio's; total: from the start to the
        record's write)."""
        bucket, key = target
        overwrite = bool(request.output and request.output.overwrite)
        with self._tracer.span("speech.store", {"s3.bucket": bucket, "s3.key": key}):
            upload_started = self._clock()
            stored = self._put(bucket, key, audio.data, audio.content_type, object_metadata(request, summary),
                               overwrite)
            now = self._clock()
            summary = replace(summary, timings=replace(summary.timings, upload=now - upload_started,
                                                       total=now - started_at))
            ckey = None
            if captions is not None:
                ckey = captions_key(key)
                self._put_beside(stored, ckey, captions.encode("utf-8"), "text/vtt", request.request_id, overwrite)
            record = event_record(request, summary, stored, audio, self._now(), ckey)
            rkey = self._put_record(stored, record, request.request_id, overwrite, ckey)
        return AudioStored(request.request_id, stored.url, stored.uri, bucket, key, stored.size, stored.etag,
                           rkey, ckey), summary

    def _put_record(self, stored: StoredObject, record: dict[str, object], request_id: str, overwrite: bool,
                    captions: str | None = None) -> str:
        """The event record is what consumers subscribe to: audio without it is half-stored, so a
        failed record takes the audio away again."""
        rkey = record_key(stored.key)
        data = json.dumps(record, sort_keys=True).encode("utf-8")
        self._put_beside(stored, rkey, data, "application/json", request_id, overwrite,
                         () if captions is None else (captions,))
        return rkey

    def _put_beside(self, stored: StoredObject, key: str, data: bytes, content_type: str, request_id: str,
                    overwrite: bool, written: tuple[str, ...] = ()) -> None:
        """An object that belongs to the audio: when it cannot be written, the audio (and what
        was `written` beside it) goes too."""
        try:
            self._put(stored.bucket, key, data, content_type, {"request-id": request_id}, overwrite)
        except DomainError:
            for other in (stored.key, *written):
                try:
                    self._require_store().delete(stored.bucket, other)
                except Exception:  # the caller needs the first error; say what was left behind
                    log.exception("could not remove %s/%s after %s failed", stored.bucket, other, key)
            raise

    def _refuse_taken_key(self, bucket: str, key: str) -> None:
        """A caller-chosen key that already holds audio (or its record) is refused unless
        overwrite was asked for. The write itself is conditional too."""
        store = self._require_store()
        try:
            taken = store.exists(bucket, key) or store.exists(bucket, record_key(key))
        except DomainError:
            raise
        except Exception:  # the store is unreachable or forbids HEAD: the write will tell
            log.warning("could not check whether %s/%s exists", bucket, key, exc_info=True)
            return
        if taken:
            raise validation_error(
                ErrorCode.OBJECT_EXISTS,
                f"s3://{bucket}/{key} already exists; choose another s3_key or set overwrite",
                field="s3_key", constraint="absent_unless_overwrite", actual=key,
            )

    def _require_store(self) -> ObjectStore:
        if self._store is None:
            raise DomainError(ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED,
                              "an output target was requested but no object store is configured")
        return self._store

    def _put(self, bucket: str, key: str, data: bytes, content_type: str, metadata: Mapping[str, str],
             overwrite: bool) -> StoredObject:
        try:
            return self._require_store().put(bucket, key, data, content_type, metadata, overwrite=overwrite)
        except DomainError:
            raise
        except Exception as exc:
            log.exception("could not store %s in %s", key, bucket)
            raise DomainError(ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED,
                              f"could not store {key} in {bucket} ({type(exc).__name__})",
                              {"bucket": bucket, "key": key}) from exc
