"""The gRPC adapter's mapping: messages <-> domain request, samples -> bytes, errors -> status."""

import json
import math
import threading
from array import array

import grpc
import pytest

from adapters.grpc.generation import GenerationQueue
from adapters.grpc.messages import (
    PCM_F32LE,
    PCM_S16LE,
    audio_bytes,
    message_from_request,
    request_from_message,
)
from adapters.grpc.status import error_from_rpc, status_code, trailing_metadata
from core.domain.audio import pcm16_bytes
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.request import (
    Chunking,
    InlineVoice,
    NamedVoice,
    OutputTarget,
    Sampling,
    SpeechRequest,
)
from higgs_tts.v1 import speech_pb2 as pb


def test_a_request_survives_the_round_trip():
    request = SpeechRequest(
        "[SPEAKER0] Hi. [SPEAKER1] Hello.",
        voices=(NamedVoice("belinda"), InlineVoice(b"RIFF....", "A clip.", "mine")),
        scene_prompt="A windy pier.",
        sampling=Sampling(temperature=0.7, top_k=20, top_p=0.8, max_new_tokens=300, seed=2**62,
                          ras_win_len=0, ras_win_max_num_repeat=3),
        chunking=Chunking("speaker", 40, 2),
        output=OutputTarget("tts-out", "a/b.wav"),
        request_id="req-1",
    )
    assert request_from_message(message_from_request(request)) == request


def test_unset_fields_take_the_domain_defaults():
    request = request_from_message(pb.SpeechRequest(text="Hi."))
    assert request.sampling == Sampling() and request.chunking == Chunking()
    assert request.voices == () and request.output is None and request.scene_prompt is None
    assert len(request.request_id) == 32


def test_an_empty_output_target_is_no_target():
    assert request_from_message(pb.SpeechRequest(text="Hi.", output=pb.OutputTarget())).output is None


def test_pcm16_chunks_round_exactly_as_the_wav_encoder():
    samples = array("f", [0.0, 0.5, -0.5, 0.99999, -0.99999, 1.0, -1.0, 3.0, -3.0, 1e-6, math.nan])
    assert audio_bytes(samples, PCM_S16LE) == pcm16_bytes(samples)
    assert audio_bytes(samples, PCM_F32LE)[:8] == array("f", [0.0, 0.5]).tobytes()
    assert len(audio_bytes(samples, PCM_F32LE)) == 4 * len(samples)


V, M, INF, S3, SYS = ErrorType.VALIDATION, ErrorType.MODEL, ErrorType.INFERENCE, ErrorType.STORAGE, ErrorType.SYSTEM


@pytest.mark.parametrize("error_type, code, status", [
    (V, ErrorCode.INVALID_TOP_P, grpc.StatusCode.INVALID_ARGUMENT),
    (V, ErrorCode.UNKNOWN_VOICE, grpc.StatusCode.NOT_FOUND),
    (SYS, ErrorCode.QUEUE_FULL, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (M, ErrorCode.MODEL_NOT_READY, grpc.StatusCode.UNAVAILABLE),
    (INF, ErrorCode.INFERENCE_FAILED, grpc.StatusCode.INTERNAL),
    (SYS, ErrorCode.CANCELLED, grpc.StatusCode.CANCELLED),
    (S3, ErrorCode.S3_NO_SUCH_BUCKET, grpc.StatusCode.FAILED_PRECONDITION),
    (S3, ErrorCode.S3_UPLOAD_FAILED, grpc.StatusCode.UNAVAILABLE),
])
def test_status_codes(error_type, code, status):
    assert status_code(DomainError(error_type, code, "x")) is status


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details, metadata=()):
        self._code, self._details, self._metadata = code, details, metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


def test_a_client_gets_the_domain_error_back():
    sent = DomainError(ErrorType.VALIDATION, ErrorCode.UNKNOWN_VOICE, "unknown voice 'x'", {"voice": "x"})
    received = error_from_rpc(FakeRpcError(
        grpc.StatusCode.NOT_FOUND, "UNKNOWN_VOICE: unknown voice 'x'", trailing_metadata(sent)
    ))
    assert (received.type, received.code, received.message) == (sent.type, sent.code, sent.message)
    assert received.details == {"voice": "x", "grpc_status": "NOT_FOUND"}


def test_a_status_without_a_domain_code_is_named_after_the_status():
    assert error_from_rpc(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")).code == "TIMEOUT"
    assert error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "refused")).code == "UNAVAILABLE"


def test_details_are_bounded_valid_json_or_left_out():
    error = DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_S3_KEY, "bad",
                        {"value": "k" * 5000, "nan": float("nan"), "inf": float("-inf"), "odd": "\ud800"})
    keys = dict(trailing_metadata(error))
    details = json.loads(keys["error-details"], parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert details["nan"] == "nan" and details["inf"] == "-inf" and len(details["value"]) < 100
    many = {f"{i}" + "k" * 99: "v" * 99 for i in range(30)}
    huge = DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_S3_KEY, "bad", many)
    keys = dict(trailing_metadata(huge))
    assert keys["error-code"] == "INVALID_S3_KEY" and "error-details" not in keys
    small = dict(trailing_metadata(DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_S3_KEY, "bad", {"v": "é"})))
    assert small["error-details"].isascii() and json.loads(small["error-details"]) == {"v": "é"}


def test_generation_queue_runs_as_many_jobs_as_it_has_workers_at_once_and_refuses_once_closed():
    """workers=3: three jobs run side by side, a fourth runs when one ends (the bound is the
    service's admission queue, tests/unit/test_admission.py)."""
    together = threading.Barrier(3, timeout=5)
    gate, ran = threading.Event(), []
    line = GenerationQueue(workers=3)
    for i in range(3):
        line.submit(lambda i=i: (together.wait(), gate.wait(5), ran.append(i)))
    line.submit(lambda: ran.append("after"))
    gate.set()
    assert line.close(timeout=5)
    assert sorted(map(str, ran)) == ["0", "1", "2", "after"]
    with pytest.raises(DomainError) as closed:
        line.submit(lambda: None)
    assert closed.value.code == "MODEL_NOT_READY"
