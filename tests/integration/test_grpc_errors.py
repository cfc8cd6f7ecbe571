"""Every kind of bad input and failure gets its status code, with the domain code in the
trailing metadata and at the start of the status details."""

import grpc
import pytest

from core.domain.errors import DomainError, ErrorCode, ErrorType
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.integration.grpc_helpers import (
    TEXT,
    collect,
    domain_code,
    domain_details,
    kinds,
    speech_request,
    wait_for,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT

BAD_REQUESTS = {
    "empty text": (pb.SpeechRequest(text=""), INVALID, "INVALID_TRANSCRIPT"),
    "temperature 3": (
        pb.SpeechRequest(text="hi", sampling=pb.Sampling(temperature=3.0)), INVALID, "INVALID_TEMPERATURE"),
    "top_p 0": (pb.SpeechRequest(text="hi", sampling=pb.Sampling(top_p=0.0)), INVALID, "INVALID_TOP_P"),
    "top_k 0": (pb.SpeechRequest(text="hi", sampling=pb.Sampling(top_k=0)), INVALID, "INVALID_TOP_K"),
    "max_new_tokens 0": (
        pb.SpeechRequest(text="hi", sampling=pb.Sampling(max_new_tokens=0)), INVALID, "INVALID_MAX_NEW_TOKENS"),
    "negative seed": (pb.SpeechRequest(text="hi", sampling=pb.Sampling(seed=-1)), INVALID, "INVALID_SEED"),
    "unknown voice": (speech_request(voice="nobody"), grpc.StatusCode.NOT_FOUND, "UNKNOWN_VOICE"),
    "bad voice name": (speech_request(voice="../etc"), INVALID, "INVALID_VOICE_NAME"),
    "empty voice": (pb.SpeechRequest(text="hi", voices=[pb.Voice()]), INVALID, "INVALID_VOICE_NAME"),
    "clip without transcript": (
        pb.SpeechRequest(text="hi", voices=[pb.Voice(reference=pb.ReferenceAudio(audio=b"RIFF"))]),
        INVALID, "INVALID_REFERENCE_AUDIO"),
    "bad s3 key": (
        speech_request(output=pb.OutputTarget(s3_bucket="tts-out", s3_key="../x.wav")), INVALID, "INVALID_S3_KEY"),
    "bad bucket": (speech_request(output=pb.OutputTarget(s3_bucket="Not_A_Bucket")), INVALID, "INVALID_S3_BUCKET"),
    "unknown format value": (speech_request(output_format=42), INVALID, "INVALID_OUTPUT_FORMAT"),
    "unknown encoding value": (speech_request(encoding=42), INVALID, "INVALID_INPUT"),
    "unknown chunk method": (
        speech_request(chunking=pb.Chunking(method=42)), INVALID, "INVALID_CHUNKING"),
    "bad request id": (speech_request(request_id="has space"), INVALID, "INVALID_REQUEST_ID"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
@pytest.mark.parametrize("method", ["StreamSpeech", "Synthesize"])
def test_bad_input_gets_its_status_before_any_generation(stub, engine, method, case):
    request, status, code = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as raised:
        call = getattr(stub, method)(request, timeout=10)
        if method == "StreamSpeech":
            messages, error = collect(call)
            assert messages == []
            raise error
    error = raised.value
    assert error.code() is status
    assert domain_code(error) == code
    assert error.details().startswith(f"{code}: ")
    assert dict(error.trailing_metadata())["error-type"] == "validation_error"
    assert engine.steps == 0


def test_unknown_voice_details_name_the_available_ones(stub):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Synthesize(speech_request(voice="nobody"), timeout=10)
    assert domain_details(raised.value) == {"field": "voice", "constraint": "in_library", "voice": "nobody",
                                            "available": ["belinda", "en_man"]}


ENGINE_FAILURES = {
    "crash": (RuntimeError("boom"), grpc.StatusCode.INTERNAL, "INFERENCE_FAILED"),
    "out of memory": (MemoryError(), grpc.StatusCode.INTERNAL, "OUT_OF_MEMORY"),
    "model lost": (
        DomainError(ErrorType.MODEL, ErrorCode.MODEL_LOAD_FAILED, "weights unreadable"),
        grpc.StatusCode.UNAVAILABLE, "MODEL_LOAD_FAILED"),
}


@pytest.mark.parametrize("case", sorted(ENGINE_FAILURES))
def test_failure_mid_stream_ends_it_with_a_status(stub, engine, case):
    engine.fail, status, code = ENGINE_FAILURES[case]
    messages, error = collect(stub.StreamSpeech(speech_request(), timeout=10))
    # the first chunk went out before the engine failed
    assert kinds(messages)[:2] == ["started", "audio"]
    assert "completed" not in kinds(messages)
    assert error.code() is status and domain_code(error) == code

    with pytest.raises(grpc.RpcError) as raised:
        stub.Synthesize(speech_request(), timeout=10)
    assert raised.value.code() is status and domain_code(raised.value) == code

    engine.fail = None  # one failed request leaves the server usable
    assert stub.Synthesize(speech_request(text=TEXT), timeout=10).completed.frames > 0


def test_queue_full_is_resource_exhausted_and_the_queued_call_runs_after(start_server, engine):
    server = start_server(max_queue=1)
    assert server.ready.wait(10)
    engine.step_delay = 0.01
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.SpeechServiceStub(channel)
    try:
        running = stub.StreamSpeech(speech_request(text="word " * 200), timeout=30)
        assert next(running).WhichOneof("event") == "started"
        queued = stub.StreamSpeech(speech_request(), timeout=30)
        wait_for(lambda: server.service.admission.waiting == 1)  # one generating, one waiting
        with pytest.raises(grpc.RpcError) as raised:
            stub.Synthesize(speech_request(), timeout=10)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert domain_code(raised.value) == "QUEUE_FULL"
        assert domain_details(raised.value) == {"max_queue": 1}

        running.cancel()
        messages, error = collect(queued)
        assert error is None and kinds(messages)[-1] == "completed"
        assert messages[-1].completed.timings.queue > 0
    finally:
        channel.close()


def test_calls_generate_together_up_to_the_engines_capacity(start_server, engine):
    """An engine that decodes 3 requests together: 3 calls stream at once over a real channel,
    max_queue more wait, the next is refused; the waiting ones run when a slot frees."""
    engine.capacity = 3
    engine.step_delay = 0.01
    server = start_server(max_queue=1)
    assert server.ready.wait(10)
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.SpeechServiceStub(channel)
    try:
        running = [stub.StreamSpeech(speech_request(text="word " * 200), timeout=30) for _ in range(3)]
        for call in running:
            assert next(call).WhichOneof("event") == "started"
        wait_for(lambda: engine.active == 3)
        queued = stub.StreamSpeech(speech_request(), timeout=30)
        wait_for(lambda: server.service.admission.waiting == 1)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Synthesize(speech_request(), timeout=10)
        assert domain_code(raised.value) == "QUEUE_FULL"
        running[0].cancel()
        messages, error = collect(queued)
        assert error is None and kinds(messages)[-1] == "completed"
        for call in running[1:]:
            call.cancel()
        assert engine.peak_active == 3
    finally:
        channel.close()


def _words(n: int) -> str:
    return " ".join(["Speech", "that", "goes", "on", "and", "on."] * (n // 6 + 1))[: 6 * n]


MiB = 1024 * 1024


def test_a_synthesize_result_over_the_clients_limit_is_refused_before_any_work(stub, engine):
    """gRPC clients refuse a message over 4 MiB by default, after all the work: a request whose
    audio could pass max_result_bytes (default 4 MiB) is refused up front, naming what fits.
    Every length class, format and limit: refused exactly when the audio's bound and the
    metadata's room pass the limit, and what is let through fits."""
    outcomes = set()
    for chars in (60, 2_000, 6_000, 10_000):
        for fmt in (pb.OUTPUT_FORMAT_WAV, pb.OUTPUT_FORMAT_FLAC, pb.OUTPUT_FORMAT_MP3):
            request = speech_request(text=_words(chars // 6), output_format=fmt)
            probe = pb.SpeechRequest()
            probe.CopyFrom(request)
            probe.max_result_bytes = 1
            with pytest.raises(grpc.RpcError) as probed:
                stub.Synthesize(probe, timeout=60)
            bound = domain_details(probed.value)["actual_max_bytes"]
            room = 64 * 1024 + 16 * len(request.text)
            for limit in (None, 1 * MiB, 16 * MiB, 64 * MiB):
                message = pb.SpeechRequest()
                message.CopyFrom(request)
                if limit is not None:
                    message.max_result_bytes = limit
                steps = engine.steps
                try:
                    result = stub.Synthesize(message, timeout=60)
                except grpc.RpcError as error:
                    outcomes.add("refused")
                    assert error.code() is INVALID and domain_code(error) == "PAYLOAD_TOO_LARGE", error.details()
                    assert bound + room > (limit or 4 * MiB), (chars, fmt, limit)
                    details = domain_details(error)
                    assert details["field"] == "max_result_bytes" and details["actual_max_bytes"] == bound
                    assert "StreamSpeech" in error.details() and "max_receive_message_length" in error.details()
                    for fits in details["formats_that_fit"]:
                        assert fits.upper() in error.details() and fits != pb.OutputFormat.Name(fmt)[14:].lower()
                    assert engine.steps == steps  # nothing was generated
                else:
                    outcomes.add("sent")
                    assert bound + room <= (limit or 4 * MiB), (chars, fmt, limit)
                    assert 0 < len(result.audio) <= bound
                    assert len(result.SerializeToString()) <= (limit or 4 * MiB)
    assert outcomes == {"refused", "sent"}


def test_the_refusal_follows_the_bound_and_omit_audio_skips_it(stub, engine):
    long = speech_request(text=_words(700))  # ~4,200 characters: minutes of WAV
    with pytest.raises(grpc.RpcError) as raised:
        stub.Synthesize(long, timeout=60)
    details = domain_details(raised.value)
    assert details["actual_max_bytes"] > 4 * MiB and "mp3" in details["formats_that_fit"]
    as_mp3 = pb.SpeechRequest()
    as_mp3.CopyFrom(long)
    as_mp3.output_format = pb.OUTPUT_FORMAT_MP3  # the advice, taken
    assert len(stub.Synthesize(as_mp3, timeout=60).audio) > 0
    stored = pb.SpeechRequest()
    stored.CopyFrom(long)
    stored.omit_audio = True
    stored.output.s3_bucket = "tts-out"
    result = stub.Synthesize(stored, timeout=60)
    assert result.audio == b"" and result.stored.key
