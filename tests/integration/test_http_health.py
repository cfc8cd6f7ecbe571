"""The health routes every worker serves (the queue worker on HEALTH_PORT and PORT_HEALTH,
`serve http` on its own port), on a real socket: liveness, readiness, RunPod's /ping, metrics."""

import json
import urllib.error
import urllib.request

from adapters.fake import FakeSpeechEngine, InMemoryObjectStore, InMemoryVoiceLibrary
from adapters.http import HttpService, create_app
from adapters.runpod import WorkerMetrics
from app.servers import BackgroundServer
from core.domain.audio import WavEncoder
from core.service import GenerateSpeech, SpeechService
from core.service.archive import AudioArchive


def get(url, key=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ready(base, key=None):
    status, text = get(f"{base}/ready", key)
    return status, json.loads(text)


def serve(routes="health", keys=()):
    engine = FakeSpeechEngine(capacity=4)
    metrics = WorkerMetrics(gpu_memory=lambda: {"allocated": 2048, "reserved": 4096}, engine_load=engine.load)
    metrics.ready.set_function(lambda: 1.0 if engine.is_ready() else 0.0)
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(InMemoryObjectStore()))
    speech = SpeechService(use_case, engine, InMemoryVoiceLibrary.with_demo_voices())
    service = HttpService(speech, api_keys=keys,
                          completed=metrics.completed, failed=metrics.failed, metrics_text=metrics.render,
                          routes=routes)
    return engine, BackgroundServer(create_app(service), "127.0.0.1", 0).start()


def idle_service():
    engine = FakeSpeechEngine()
    return SpeechService(GenerateSpeech(engine, InMemoryVoiceLibrary(), WavEncoder()), engine, InMemoryVoiceLibrary())


def test_health_ready_ping_and_metrics():
    engine, server = serve()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(f"{base}/health") == (200, '{"status":"ok"}')
        status, body = get(f"{base}/ready")
        assert status == 503 and json.loads(body) == {"ready": False, "model": engine.describe().to_dict()}
        assert get(f"{base}/ping")[0] == 204
        engine.warm_up()
        assert get(f"{base}/ready")[0] == 200
        assert get(f"{base}/ping") == (200, '{"status":"healthy"}')
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert 'higgs_tts_gpu_memory_bytes{kind="reserved"} 4096.0' in text
        assert "higgs_tts_ready 1.0" in text and "higgs_tts_queue_depth 0.0" in text
        assert "higgs_tts_slots_capacity 4.0" in text and "higgs_tts_time_to_first_audio_seconds_bucket" in text
        assert get(f"{base}/nope")[0] == 404
        assert get(f"{base}/v1/audio/speech")[0] == 404  # the health app serves nothing else
    finally:
        server.stop()


def test_with_keys_only_health_ping_and_bare_readiness_are_open():
    engine, server = serve(keys=("sk-health",))
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert ready(base) == (503, {"ready": False})  # a probe's answer, nothing more
        engine.warm_up()
        assert get(f"{base}/health")[0] == 200 and get(f"{base}/ping")[0] == 200
        assert ready(base) == (200, {"ready": True}) and get(f"{base}/metrics")[0] == 401
        status, body = ready(base, "sk-health")
        assert status == 200 and body["ready"] is True and body["model"]["loaded"] is True
        assert ready(base, "sk-wrong") == (200, {"ready": True})
        assert get(f"{base}/metrics", "sk-health")[0] == 200
    finally:
        server.stop()


def test_a_taken_port_is_an_error_at_once():
    import pytest

    _, server = serve()
    try:
        with pytest.raises(OSError):
            BackgroundServer(create_app(HttpService(idle_service(), routes="health")),
                             "127.0.0.1", server.port)
    finally:
        server.stop()


def test_a_failing_voice_library_is_a_500_in_openai_shape_and_the_server_goes_on():
    import httpx

    class Broken(InMemoryVoiceLibrary):
        def list(self):
            raise RuntimeError("disk on fire")

    engine = FakeSpeechEngine()
    engine.warm_up()
    use_case = GenerateSpeech(engine, InMemoryVoiceLibrary.with_demo_voices(), WavEncoder(),
                              AudioArchive(InMemoryObjectStore()))
    app = create_app(HttpService(SpeechService(use_case, engine, Broken())))
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        response = httpx.get(base + "/v1/audio/voices")
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "INTERNAL_ERROR" and "disk on fire" not in response.text
        speech = httpx.post(base + "/v1/audio/speech", json={"input": "Still serving.", "response_format": "wav"})
        assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    finally:
        server.stop()
