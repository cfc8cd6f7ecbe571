"""W3C trace context in the call metadata continues into the server's spans."""

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import client_interceptor, intercept_channel
from opentelemetry.trace import SpanKind

from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import speech_request, wait_for

SYNTHESIZE = "/higgs_tts.v1.SpeechService/Synthesize"
STREAM = "/higgs_tts.v1.SpeechService/StreamSpeech"


def spans_named(exporter, name, kind=None):
    return [
        s for s in exporter.get_finished_spans()
        if s.name == name and (kind is None or s.kind is kind)
    ]


def test_client_trace_continues_through_the_server(server, exporter, tracer_provider):
    with grpc.insecure_channel(server.address) as channel:
        traced = intercept_channel(channel, client_interceptor(tracer_provider=tracer_provider))
        result = pb_grpc.SpeechServiceStub(traced).Synthesize(speech_request(), timeout=10)

    client = wait_for(lambda: spans_named(exporter, SYNTHESIZE, SpanKind.CLIENT))[0]
    server_span = wait_for(lambda: spans_named(exporter, SYNTHESIZE, SpanKind.SERVER))[0]
    generate = spans_named(exporter, "speech.generate")[0]
    trace_id = client.context.trace_id
    assert server_span.context.trace_id == trace_id
    assert generate.context.trace_id == trace_id
    assert server_span.parent.span_id == client.context.span_id
    assert generate.parent.span_id == server_span.context.span_id  # across the generation thread
    for stage in ("speech.resolve_voices", "speech.synthesize", "speech.encode"):
        assert spans_named(exporter, stage)[0].parent.span_id == generate.context.span_id
    assert result.completed.trace_id == format(trace_id, "032x")
    assert server_span.attributes["rpc.grpc.status_code"] == 0


def test_traceparent_header_is_honoured_on_a_stream(stub, exporter):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    call = stub.StreamSpeech(
        speech_request(), timeout=10, metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")]
    )
    completed = list(call)[-1].completed
    assert completed.trace_id == trace_id

    server_span = wait_for(lambda: spans_named(exporter, STREAM, SpanKind.SERVER))[0]
    assert format(server_span.context.trace_id, "032x") == trace_id
    assert server_span.parent.is_remote and format(server_span.parent.span_id, "016x") == parent_id
    generate = spans_named(exporter, "speech.generate")[0]
    assert format(generate.context.trace_id, "032x") == trace_id
    assert generate.attributes["request.id"] == completed.request_id


def test_failed_calls_are_marked_on_the_server_span(stub, exporter):
    try:
        stub.Synthesize(speech_request(voice="nobody"), timeout=10)
    except grpc.RpcError:
        pass
    server_span = wait_for(lambda: spans_named(exporter, SYNTHESIZE, SpanKind.SERVER))[0]
    assert server_span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert spans_named(exporter, "speech.generate")[0].attributes["error.code"] == "UNKNOWN_VOICE"


def test_health_checks_are_not_traced(server, exporter):
    with grpc.insecure_channel(server.address) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert exporter.get_finished_spans() == ()
