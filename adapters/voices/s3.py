"""Voice prompts under an S3 prefix (`HIGGS_VOICES_S3_URI=s3://bucket/prefix`), shared by every
worker of an endpoint: `<prefix>/<name>.wav|.flac|.ogg` and `<prefix>/<name>.txt`. A voice
exists once its transcript does; both objects are written with `If-None-Match: *`, so two
workers adding one name never both succeed."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.voices.clips import SUFFIXES, inspect_clip
from core.domain.errors import DomainError, ErrorCode, ErrorType, unknown_voice, voice_exists
from core.domain.voice import VoiceInfo, VoicePrompt

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_AUDIO = tuple(dict.fromkeys(SUFFIXES.values()))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"expected s3://BUCKET/PREFIX, not {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


class S3VoiceLibrary:
    def __init__(self, client: Any, bucket: str, prefix: str = "voices") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def _key(self, name: str, suffix: str) -> str:
        return f"{self.prefix}/{name}{suffix}" if self.prefix else f"{name}{suffix}"

    def _keys(self, start: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + start):
                keys += [item["Key"][len(base):] for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.bucket) from exc
        return [key for key in keys if "/" not in key]

    def _complete(self, keys: list[str]) -> dict[str, str]:
        """name -> its audio suffix, for the names that have a transcript and a clip."""
        present = set(keys)
        voices = {}
        for key in keys:
            name, dot, suffix = key.rpartition(".")
            if dot and "." + suffix in _AUDIO and _NAME.fullmatch(name) and f"{name}.txt" in present:
                voices.setdefault(name, "." + suffix)
        return voices

    def list(self) -> list[VoiceInfo]:
        voices = self._complete(self._keys())
        return [VoiceInfo(name, self._read(self._key(name, ".txt")).decode("utf-8").strip())
                for name in sorted(voices)]

    def get(self, name: str) -> VoicePrompt:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise unknown_voice(str(name), [])
        suffix = self._complete(self._keys(name + ".")).get(name)
        if suffix is None:
            raise unknown_voice(name, [v.name for v in self.list()])
        transcript = self._read(self._key(name, ".txt")).decode("utf-8").strip()
        return VoicePrompt(name, transcript, self._read(self._key(name, suffix)))

    def add(self, voice: VoicePrompt) -> VoiceInfo:
        suffix, seconds = inspect_clip(voice.audio)
        if self._keys(voice.name + "."):
            raise voice_exists(voice.name)
        self._put(self._key(voice.name, suffix), voice.audio, voice.name)
        self._put(self._key(voice.name, ".txt"), (voice.transcript.strip() + "\n").encode("utf-8"), voice.name)
        return VoiceInfo(voice.name, voice.transcript.strip(), seconds)

    def delete(self, name: str) -> None:
        keys = self._keys(name + ".") if isinstance(name, str) and _NAME.fullmatch(name) else []
        if name not in self._complete(keys):
            raise unknown_voice(str(name), [v.name for v in self.list()])
        ordered = sorted(keys, key=lambda k: not k.endswith(".txt"))  # the transcript first
        try:
            for key in ordered:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key, ""))
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.bucket) from exc

    def _read(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc, self.bucket) from exc

    def _put(self, key: str, body: bytes, name: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise voice_exists(name) from None
            raise _storage_error(exc, self.bucket) from exc
        except BotoCoreError as exc:
            raise _storage_error(exc, self.bucket) from exc


def _storage_error(exc: BaseException, bucket: str) -> DomainError:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
    return DomainError(ErrorType.STORAGE, ErrorCode.S3_UPLOAD_FAILED,
                       f"the voice library in bucket {bucket} could not be read or written ({code})",
                       {"bucket": bucket, "s3_code": code})
