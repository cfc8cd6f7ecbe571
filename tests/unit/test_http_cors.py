"""CORS is explicit: no origin may call the API from a browser unless HIGGS_CORS_ORIGINS names
it (the playground is same-origin); a named origin's preflight is answered before the API key
is asked for, and its responses carry the headers a page needs."""

import pytest
from starlette.testclient import TestClient

from adapters.fake import FakeSpeechEngine, InMemoryVoiceLibrary
from adapters.http import HttpService, create_app
from adapters.soundfile import SoundfileEncoder
from app.settings import Settings
from core.service import GenerateSpeech, SpeechService

PAGE = "https://app.example.com"


def client(origins=(), keys=()) -> TestClient:
    engine = FakeSpeechEngine()
    engine.warm_up()
    voices = InMemoryVoiceLibrary.with_demo_voices()
    speech = SpeechService(GenerateSpeech(engine, voices, SoundfileEncoder()), engine, voices)
    return TestClient(create_app(HttpService(speech, api_keys=keys, cors_origins=origins)))


def preflight(http: TestClient):
    return http.options("/v1/audio/speech", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization,content-type"})


def test_no_origin_is_allowed_by_default():
    http = client()
    assert "access-control-allow-origin" not in preflight(http).headers
    response = http.post("/v1/audio/speech", json={"input": "Hi."}, headers={"Origin": PAGE})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_a_named_origin_gets_its_preflight_before_the_key_check_and_its_headers():
    http = client(origins=(PAGE,), keys=("k",))
    answer = preflight(http)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == PAGE
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    response = http.post("/v1/audio/speech", json={"input": "Hi.", "response_format": "wav"},
                         headers={"Origin": PAGE, "Authorization": "Bearer k"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == PAGE
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    other = http.options("/v1/audio/speech", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("value,origins", [("", ()), ("*", ("*",)), (f"{PAGE}, http://127.0.0.1:8000",
                                                                     (PAGE, "http://127.0.0.1:8000"))])
def test_the_setting_reads_origins(value, origins):
    assert Settings.from_env({"HIGGS_CORS_ORIGINS": value}).cors_origins == origins


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/path", "ftp://x", "https://a b"])
def test_the_setting_refuses_what_is_not_an_origin(value):
    with pytest.raises(ValueError, match="HIGGS_CORS_ORIGINS"):
        Settings.from_env({"HIGGS_CORS_ORIGINS": value})
