"""OpenTelemetry set-up: a tracer provider configured by the standard OTEL_* variables."""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from app.settings import Settings

log = logging.getLogger(__name__)


def make_tracer_provider(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider:
    """`exporter` given (tests pass an in-memory one): spans go there, synchronously.
    Otherwise OTEL_TRACES_EXPORTER picks: otlp (OTEL_EXPORTER_OTLP_* configure it), console, none.
    OTEL_SDK_DISABLED=true gives a provider that records nothing."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    for name in filter(None, (n.strip() for n in settings.otel_exporter.split(","))):
        if name == "none":
            continue
        if name == "console":  # diagnostics on stderr: stdout holds the commands' results (synth's JSON)
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; spans are not exported", name)
    return provider


def install_tracer_provider(provider: TracerProvider) -> None:
    """Make it the global provider, and trace every S3 call (botocore) under the request's span."""
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

    instrumentor = BotocoreInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
