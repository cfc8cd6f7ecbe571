"""The error model: every failure a caller can see has a type, a stable code and a message."""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping


class ErrorType(str, Enum):
    VALIDATION = "validation_error"
    MODEL = "model_error"
    INFERENCE = "inference_error"
    S3_UPLOAD = "s3_upload_error"
    SYSTEM = "system_error"
    TIMEOUT = "timeout_error"


class ErrorCode(str, Enum):
    # validation_error: the request itself is wrong; nothing was computed
    INVALID_TRANSCRIPT = "INVALID_TRANSCRIPT"
    INVALID_SCENE_PROMPT = "INVALID_SCENE_PROMPT"
    INVALID_TEMPERATURE = "INVALID_TEMPERATURE"
    INVALID_TOP_K = "INVALID_TOP_K"
    INVALID_TOP_P = "INVALID_TOP_P"
    INVALID_MAX_NEW_TOKENS = "INVALID_MAX_NEW_TOKENS"
    INVALID_SEED = "INVALID_SEED"
    INVALID_RAS = "INVALID_RAS"
    INVALID_CHUNKING = "INVALID_CHUNKING"
    INVALID_VOICE_NAME = "INVALID_VOICE_NAME"
    INVALID_REFERENCE_AUDIO = "INVALID_REFERENCE_AUDIO"
    INVALID_S3_BUCKET = "INVALID_S3_BUCKET"
    INVALID_S3_KEY = "INVALID_S3_KEY"
    INVALID_OUTPUT_FORMAT = "INVALID_OUTPUT_FORMAT"
    INVALID_REQUEST_ID = "INVALID_REQUEST_ID"
    INVALID_INPUT = "INVALID_INPUT"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNKNOWN_VOICE = "UNKNOWN_VOICE"
    # model_error: the weights or the engine cannot be used
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
    MODEL_NOT_READY = "MODEL_NOT_READY"
    # inference_error: generation itself failed; the engine stays usable
    INFERENCE_FAILED = "INFERENCE_FAILED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NUMERICAL_ERROR = "NUMERICAL_ERROR"
    CANCELLED = "CANCELLED"
    # s3_upload_error
    S3_UPLOAD_FAILED = "S3_UPLOAD_FAILED"
    S3_ACCESS_DENIED = "S3_ACCESS_DENIED"
    S3_NO_SUCH_BUCKET = "S3_NO_SUCH_BUCKET"
    # timeout_error / system_error
    TIMEOUT = "TIMEOUT"
    QUEUE_FULL = "QUEUE_FULL"
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
        super().__init__(message)
        self.type = ErrorType(type)
        self.code = code.value if isinstance(code, ErrorCode) else str(code)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "message": self.message,
            "code": self.code,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"DomainError({self.type.value}, {self.code}, {self.message!r})"


def validation_error(code: ErrorCode, message: str, **details: Any) -> DomainError:
    return DomainError(ErrorType.VALIDATION, code, message, details)
