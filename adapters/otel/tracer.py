from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from core.domain.errors import DomainError


class _OtelSpan:
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def record_error(self, error: BaseException) -> None:
        attributes = {}
        if isinstance(error, DomainError):
            attributes = {"error.type": error.type.value, "error.code": error.code}
        self._span.record_exception(error, attributes=attributes)
        self._span.set_status(Status(StatusCode.ERROR, str(error)))

    def trace_id(self) -> str | None:
        context = self._span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None


class OtelTracer:
    """The core's Tracer port on OpenTelemetry: spans join whatever trace is current
    (a driving adapter makes the caller's trace current before calling the use case)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("higgs_tts", tracer_provider=tracer_provider)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[_OtelSpan]:
        clean = {k: v for k, v in (attributes or {}).items() if v is not None}
        # exceptions are recorded by the use case as DomainErrors; GeneratorExit is no error
        with self._tracer.start_as_current_span(
            name, attributes=clean, record_exception=False, set_status_on_exception=False
        ) as span:
            yield _OtelSpan(span)
