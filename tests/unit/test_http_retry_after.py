"""Retry-After on exactly the HTTP refusals a retry can cure (the OpenAI clients honour it),
for every error code there is."""

import pytest
from fastapi.testclient import TestClient

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.http import HttpService, create_app
from adapters.http.schema import http_status, retry_after
from core.domain.audio import WavEncoder
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.service import GenerateSpeech, SpeechService

RETRYABLE = {ErrorCode.SHUTTING_DOWN: 1, ErrorCode.QUEUE_FULL: 1, ErrorCode.MODEL_NOT_READY: 5}


@pytest.mark.parametrize("code", list(ErrorCode))
@pytest.mark.parametrize("error_type", list(ErrorType))
def test_only_retryable_refusals_say_when_to_retry(code, error_type):
    error = DomainError(error_type, code, "x")
    assert retry_after(error) == RETRYABLE.get(code)
    if code in RETRYABLE:
        assert http_status(error) in (429, 503)


def test_a_draining_server_answers_503_with_retry_after():
    engine, voices = FakeSpeechEngine(), InMemoryVoiceLibrary.with_demo_voices()
    speech = SpeechService(GenerateSpeech(engine, voices, WavEncoder()), engine, voices)
    engine.warm_up()
    client = TestClient(create_app(HttpService(speech=speech)))
    body = {"model": "tts-1", "voice": "belinda", "input": "Hello there.", "response_format": "wav"}
    assert client.post("/v1/audio/speech", json=body).status_code == 200
    speech.shut_down(0)
    refused = client.post("/v1/audio/speech", json=body)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "SHUTTING_DOWN"
    assert client.get("/ready").status_code == 503
