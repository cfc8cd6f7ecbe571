"""API keys on gRPC: every call but health checks carries `authorization: Bearer <key>` in its
metadata, compared in constant time with each configured key; others end UNAUTHENTICATED
with the domain code in the trailing metadata, before any work."""

from __future__ import annotations

from typing import Sequence

import grpc

from adapters.grpc.status import abort
from core.domain.api_keys import is_known_key
from core.domain.errors import DomainError, ErrorCode, ErrorType

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


class ApiKeyInterceptor(grpc.ServerInterceptor):
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        scheme, _, given = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() == "bearer" and given and is_known_key(given, self.keys):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    error = DomainError(ErrorType.AUTHENTICATION, ErrorCode.UNAUTHENTICATED,
                        "missing or unknown API key: send the metadata authorization: Bearer <key>")

    def refuse(request, context):
        abort(context, error)

    def refuse_stream(request, context):
        abort(context, error)
        yield  # pragma: no cover - never reached; makes this a generator for streaming methods

    options = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **options)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **options)
    return grpc.unary_unary_rpc_method_handler(refuse, **options)
