"""Spans of the use case, recorded by OpenTelemetry's in-memory exporter."""

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.otel import OtelTracer
from app.settings import Settings
from app.telemetry import make_tracer_provider
from core.domain.audio import WavEncoder
from core.domain.request import NamedVoice, OutputTarget, SpeechRequest
from core.service.archive import AudioArchive
from core.service.generate_speech import GenerateSpeech


def run(request, engine=None):
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider(Settings(), exporter)
    use_case = GenerateSpeech(
        engine or FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
        AudioArchive(InMemoryObjectStore(), tracer=OtelTracer(provider)), tracer=OtelTracer(provider),
    )
    events = list(use_case(request))
    return events, {s.name: s for s in exporter.get_finished_spans()}


def test_stages_are_child_spans_of_speech_generate():
    events, spans = run(SpeechRequest("Hello there.", voices=(NamedVoice("belinda"),),
                                      output=OutputTarget("bucket-a", "k.wav"), request_id="r-9"))
    root = spans["speech.generate"]
    for stage in ("speech.resolve_voices", "speech.synthesize", "speech.encode", "speech.store"):
        assert spans[stage].parent.span_id == root.context.span_id
        assert spans[stage].context.trace_id == root.context.trace_id
    assert root.attributes["request.id"] == "r-9"
    assert root.attributes["speech.voice"] == "belinda"
    assert root.attributes["speech.text_length"] == len("Hello there.")
    assert root.attributes["speech.frames"] == events[-1].frames
    assert root.attributes["speech.rtf"] > 0
    assert events[-1].metadata["trace_id"] == format(root.context.trace_id, "032x")


def test_failures_are_recorded_on_the_span():
    events, spans = run(SpeechRequest("Hello.", voices=(NamedVoice("nobody"),)))
    root = spans["speech.generate"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.code"] == "UNKNOWN_VOICE"
    assert any(e.name == "exception" for e in root.events)
