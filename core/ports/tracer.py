from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ContextManager, Iterator, Mapping, Protocol, runtime_checkable


@runtime_checkable
class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...

    def record_error(self, error: BaseException) -> None: ...

    def trace_id(self) -> str | None:
        """32 hex digits, or None when tracing is off."""
        ...


@runtime_checkable
class Tracer(Protocol):
    """Spans for the use case's stages; the app backs it with OpenTelemetry."""

    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> ContextManager[Span]: ...


class _NoopSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_error(self, error: BaseException) -> None:
        pass

    def trace_id(self) -> str | None:
        return None


class NoopTracer:
    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        yield _NoopSpan()
