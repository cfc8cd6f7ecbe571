from adapters.otel.tracer import OtelTracer

__all__ = ["OtelTracer"]
