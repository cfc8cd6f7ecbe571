"""Domain errors <-> gRPC status codes.

The status code says what kind of failure it is (and whether a retry can help); the stable
domain code travels in the trailing metadata, so a client can tell INVALID_TOP_P from
INVALID_S3_KEY without parsing prose."""

from __future__ import annotations

import json
from typing import NoReturn

import grpc

from core.domain.errors import DomainError, ErrorCode, ErrorType

ERROR_CODE_KEY = "error-code"
ERROR_TYPE_KEY = "error-type"
ERROR_DETAILS_KEY = "error-details"  # JSON, ASCII
_MAX_DETAILS_CHARS = 2048  # metadata is sent as HTTP/2 headers: keep well under their 8 KiB limit

_BY_CODE = {
    ErrorCode.UNKNOWN_VOICE.value: grpc.StatusCode.NOT_FOUND,
    ErrorCode.QUEUE_FULL.value: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.CANCELLED.value: grpc.StatusCode.CANCELLED,
    ErrorCode.TIMEOUT.value: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.S3_ACCESS_DENIED.value: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.S3_NO_SUCH_BUCKET.value: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.OBJECT_EXISTS.value: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.VOICE_EXISTS.value: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.SHUTTING_DOWN.value: grpc.StatusCode.UNAVAILABLE,  # retry on another replica
}
_BY_TYPE = {
    ErrorType.VALIDATION: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorType.MODEL: grpc.StatusCode.UNAVAILABLE,  # not loaded (yet), or cannot load: retry elsewhere
    ErrorType.INFERENCE: grpc.StatusCode.INTERNAL,
    ErrorType.STORAGE: grpc.StatusCode.UNAVAILABLE,
    ErrorType.TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorType.SYSTEM: grpc.StatusCode.INTERNAL,
    ErrorType.AUTHENTICATION: grpc.StatusCode.UNAUTHENTICATED,
}


def status_code(error: DomainError) -> grpc.StatusCode:
    return _BY_CODE.get(error.code) or _BY_TYPE[error.type]


def trailing_metadata(error: DomainError) -> tuple[tuple[str, str], ...]:
    metadata = [(ERROR_CODE_KEY, error.code), (ERROR_TYPE_KEY, error.type.value)]
    # the domain keeps details JSON-safe (non-finite numbers as text); ensure_ascii: header-safe
    details = json.dumps(error.details, default=str, sort_keys=True, allow_nan=False)
    if len(details) <= _MAX_DETAILS_CHARS:
        metadata.append((ERROR_DETAILS_KEY, details))
    return tuple(metadata)


def abort(context: grpc.ServicerContext, error: DomainError) -> NoReturn:
    context.set_trailing_metadata(trailing_metadata(error))
    context.abort(status_code(error), f"{error.code}: {error.message}")
    raise AssertionError("unreachable: abort raises")


def error_from_rpc(error: grpc.RpcError) -> DomainError:
    """A failed call as the client sees it: the server's domain error when it sent one, else
    one named after the status (a deadline, a refused connection)."""
    code = error.code()
    metadata = dict(error.trailing_metadata() or ())
    message = error.details() or code.name
    domain_code = metadata.get(ERROR_CODE_KEY)
    if domain_code is None and code is grpc.StatusCode.INTERNAL and "RST_STREAM" in message:
        # the transport under the call was cut (a replica killed mid-stream, behind a proxy):
        # nothing the server said; the call can be made again
        return DomainError(ErrorType.SYSTEM, "UNAVAILABLE", f"the connection was lost mid-call ({message}); retry",
                           {"grpc_status": code.name, "retryable": True})
    if domain_code is None:
        error_type = ErrorType.TIMEOUT if code is grpc.StatusCode.DEADLINE_EXCEEDED else ErrorType.SYSTEM
        name = {grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.TIMEOUT.value}.get(code, code.name)
        return DomainError(error_type, name, message, {"grpc_status": code.name})
    prefix = f"{domain_code}: "
    try:
        details = json.loads(metadata.get(ERROR_DETAILS_KEY, "{}"))
    except ValueError:
        details = {}
    try:
        error_type = ErrorType(metadata.get(ERROR_TYPE_KEY))
    except ValueError:
        error_type = ErrorType.SYSTEM
    return DomainError(
        error_type,
        domain_code,
        message[len(prefix):] if message.startswith(prefix) else message,
        {**details, "grpc_status": code.name},
    )
