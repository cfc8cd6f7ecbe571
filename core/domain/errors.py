"""The error model: every failure a caller can see has a type, a stable code and a message."""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any, Mapping

# What an error may echo of the caller's input: outputs must always serialise (JSON, gRPC
# metadata) and stay small, whatever the input was.
ECHO_CHARS = 64
MESSAGE_CHARS = 1000
ECHO_ITEMS = 32  # a list or mapping echoed in details (every `allowed` list of the service fits)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class ErrorType(str, Enum):
    VALIDATION = "validation_error"
    MODEL = "model_error"
    INFERENCE = "inference_error"
    # storing the audio or its record failed (any store); the wire value predates the stores
    # other than S3 and stays, for the clients that match on it
    STORAGE = "s3_upload_error"
    SYSTEM = "system_error"
    TIMEOUT = "timeout_error"
    AUTHENTICATION = "authentication_error"


class ErrorCode(str, Enum):
    # validation_error: the request itself is wrong; nothing was computed
    INVALID_TRANSCRIPT = "INVALID_TRANSCRIPT"
    INVALID_SCENE_PROMPT = "INVALID_SCENE_PROMPT"
    INVALID_TEMPERATURE = "INVALID_TEMPERATURE"
    INVALID_TOP_K = "INVALID_TOP_K"
    INVALID_TOP_P = "INVALID_TOP_P"
    INVALID_SPEED = "INVALID_SPEED"
    INVALID_MAX_NEW_TOKENS = "INVALID_MAX_NEW_TOKENS"
    INVALID_SEED = "INVALID_SEED"
    INVALID_RAS = "INVALID_RAS"
    INVALID_CHUNKING = "INVALID_CHUNKING"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"  # a chunk of the text cannot fit the KV cache or the step budget
    INVALID_VOICE_NAME = "INVALID_VOICE_NAME"
    INVALID_REFERENCE_AUDIO = "INVALID_REFERENCE_AUDIO"
    INVALID_S3_BUCKET = "INVALID_S3_BUCKET"
    INVALID_S3_KEY = "INVALID_S3_KEY"
    INVALID_OUTPUT_FORMAT = "INVALID_OUTPUT_FORMAT"
    INVALID_REQUEST_ID = "INVALID_REQUEST_ID"
    INVALID_VERIFICATION = "INVALID_VERIFICATION"  # verify, max_wer, max_attempts or timestamps
    ASR_NOT_CONFIGURED = "ASR_NOT_CONFIGURED"  # verification or word timings asked, no ASR model set
    INVALID_INPUT = "INVALID_INPUT"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNKNOWN_VOICE = "UNKNOWN_VOICE"
    OBJECT_EXISTS = "OBJECT_EXISTS"  # the output key holds an object and overwrite was not asked
    VOICE_EXISTS = "VOICE_EXISTS"  # a voice of that name is in the library
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no API key, or not one of the configured ones
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # a body that is not of the type the route takes
    NOT_FOUND = "NOT_FOUND"  # no such route
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # the route exists, not with this method
    # model_error: the weights or the engine cannot be used
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
    MODEL_NOT_READY = "MODEL_NOT_READY"
    # inference_error: generation itself failed; the engine stays usable
    INFERENCE_FAILED = "INFERENCE_FAILED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NUMERICAL_ERROR = "NUMERICAL_ERROR"
    CANCELLED = "CANCELLED"
    # s3_upload_error (ErrorType.STORAGE): the codes keep their names on the wire
    S3_UPLOAD_FAILED = "S3_UPLOAD_FAILED"
    S3_ACCESS_DENIED = "S3_ACCESS_DENIED"
    S3_NO_SUCH_BUCKET = "S3_NO_SUCH_BUCKET"
    # timeout_error / system_error
    TIMEOUT = "TIMEOUT"
    QUEUE_FULL = "QUEUE_FULL"
    SHUTTING_DOWN = "SHUTTING_DOWN"  # the worker was told to stop: it takes no new request
    INTERNAL_ERROR = "INTERNAL_ERROR"


class DomainError(Exception):
    """A failure with a stable code that any driving adapter can map onto its protocol."""

    def __init__(
        self,
        type: ErrorType,
        code: ErrorCode | str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        message = safe_text(str(message), MESSAGE_CHARS)
        super().__init__(message)
        self.type = ErrorType(type)
        self.code = code.value if isinstance(code, ErrorCode) else str(code)
        self.message = message
        self.details: dict[str, Any] = echo(dict(details or {}))

    def renamed(self, names: Mapping[str, str]) -> "DomainError":
        """The same error with its field named as this face names it (the domain's names are
        RunPod's: an HTTP upload's `transcript` is its `ref_audio_transcript`)."""
        field = self.details.get("field")
        if not isinstance(field, str) or field not in names:
            return self
        return DomainError(self.type, self.code, self.message, {**self.details, "field": names[field]})

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "message": self.message,
            "code": self.code,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"DomainError({self.type.value}, {self.code}, {self.message!r})"


def validation_error(
    code: ErrorCode, message: str, *, field: str, constraint: str, **actual: Any
) -> DomainError:
    """A refused request. `details` in the design's shape: the `field`, the `constraint` it
    broke (`max_length=10000`, `type=string`, `range=[1,8192]`, ...) and what was found
    (`actual`, `actual_length`, `actual_type`, ... or the `allowed` values)."""
    return DomainError(ErrorType.VALIDATION, code, message, {"field": field, "constraint": constraint, **actual})


def voice_exists(name: str) -> DomainError:
    return DomainError(ErrorType.VALIDATION, ErrorCode.VOICE_EXISTS,
                       f"a voice named {safe_text(name)!r} exists; delete it first or choose another name",
                       {"field": "name", "constraint": "unique", "voice": name})


def unknown_voice(name: str, available: list[str]) -> DomainError:
    return DomainError(ErrorType.VALIDATION, ErrorCode.UNKNOWN_VOICE, f"unknown voice {safe_text(name)!r}",
                       {"field": "voice", "constraint": "in_library", "voice": name, "available": available[:100]})


def object_exists(bucket: str, key: str) -> DomainError:
    """The output key already holds an object (found at the write: work was done)."""
    return DomainError(ErrorType.STORAGE, ErrorCode.OBJECT_EXISTS,
                       f"s3://{bucket}/{key} already exists; choose another s3_key or set overwrite",
                       {"bucket": bucket, "key": key})


def safe_text(text: str, limit: int = ECHO_CHARS) -> str:
    """Valid Unicode (lone surrogates escaped), at most `limit` characters (the rest counted)."""
    text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def echo(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, bounded copy of what an error repeats back: strings escaped and cut,
    non-finite numbers as text, containers cut to a few items, other objects by type."""
    if value is None or isinstance(value, bool) or isinstance(value, int) and abs(value) < 2**63:
        return value
    if isinstance(value, int):
        return safe_text(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if depth >= 3:
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {safe_text(str(k)): echo(v, depth + 1) for k, v in items[:ECHO_ITEMS]}
        if len(items) > ECHO_ITEMS:
            out["..."] = f"{len(items) - ECHO_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [echo(v, depth + 1) for v in items[:ECHO_ITEMS]]
        if len(items) > ECHO_ITEMS:
            out_list.append(f"... {len(items) - ECHO_ITEMS} more")
        return out_list
    return f"<{type(value).__name__}>"
