"""`higgs-tts serve http` as its own process on 127.0.0.1 with the demo bundle, called with the
official `openai` client (plain, streaming, SSE), httpx and urllib: speech in every format,
the voice library, models, health, metrics, errors in OpenAI's shape, API keys."""

import base64
import io
import json
import time
import wave

import av
import httpx
import numpy as np
import openai
import pytest
import soundfile

from tests.http_helpers import HttpServer

TEXT = "Hello from the HTTP face of the service."


@pytest.fixture(scope="module")
def server(demo_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("http")
    voices = tmp / "model"
    import shutil

    shutil.copytree(demo_bundle.root, voices)  # uploads land in this copy's voice_prompts/
    srv = HttpServer(tmp, MODEL_PATH=str(voices), HIGGS_STORE="local", OUTPUT_DIR=str(tmp / "out"))
    yield srv
    srv.stop()
    assert (tmp / "netguard.log").read_text() == "" if (tmp / "netguard.log").exists() else True


def decode(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    with av.open(io.BytesIO(data)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_changes_the_duration_in_whole_files_and_streams(server, speed):
    """OpenAI's `speed` through the official client: the same seed's audio, 1/speed as long."""
    def seconds(fmt, value, stream=False):
        body = {"seed": 9, "max_new_tokens": 80}
        if stream:
            with server.client().audio.speech.with_streaming_response.create(
                    model="tts-1", voice="belinda", input=TEXT, response_format=fmt, speed=value,
                    extra_body=body) as response:
                return len(decode(b"".join(response.iter_bytes()), fmt)) / 24000
        audio = server.client().audio.speech.create(model="tts-1", voice="belinda", input=TEXT, response_format=fmt,
                                                    speed=value, extra_body=body)
        return len(decode(audio.content, fmt)) / 24000

    plain = seconds("wav", 1.0)
    assert seconds("wav", speed) == pytest.approx(plain / speed, rel=0.03)
    assert seconds("pcm", speed, stream=True) == pytest.approx(plain / speed, rel=0.03)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format_decodes(server, fmt):
    audio = server.client().audio.speech.create(model="tts-1", voice="belinda", input=TEXT, response_format=fmt,
                                                extra_body={"seed": 5, "max_new_tokens": 120})
    samples = decode(audio.content, fmt)
    assert len(samples) > 24000 * 0.5, fmt
    assert np.isfinite(samples).all()


def test_a_seeded_request_is_reproducible_and_another_seed_differs(server):
    client = server.client()

    def speak(seed):
        return client.audio.speech.create(model="higgs-audio-v2", voice={"id": "en_man"}, input=TEXT,
                                          response_format="pcm",
                                          extra_body={"seed": seed, "max_new_tokens": 80}).content

    first = speak(11)
    assert first == speak(11) and first != speak(12)


def test_streaming_response_sends_audio_in_chunks_before_the_end(server):
    chunks, times = [], []
    started = time.monotonic()
    with server.client().audio.speech.with_streaming_response.create(
            model="tts-1", voice="belinda", input="word " * 30, response_format="pcm",
            extra_body={"seed": 1, "max_new_tokens": 400}) as response:
        assert response.headers["content-type"] == "audio/pcm" and response.headers["x-request-id"]
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            times.append(time.monotonic() - started)
    assert len(chunks) >= 3
    assert times[0] < times[-1]  # the first audio left before the last
    assert sum(map(len, chunks)) % 2 == 0


def test_sse_sends_deltas_then_done(server):
    events = []
    with server.client().audio.speech.with_streaming_response.create(
            model="tts-1", voice="belinda", input=TEXT, response_format="pcm", stream_format="sse",
            extra_body={"seed": 2, "max_new_tokens": 120}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and set(kinds[:-1]) == {"speech.audio.delta"} and len(kinds) >= 3
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) > 0 and events[-1]["usage"]["output_tokens"] > 0
    plain = server.client().audio.speech.create(model="tts-1", voice="belinda", input=TEXT, response_format="pcm",
                                                extra_body={"seed": 2, "max_new_tokens": 120}).content
    assert audio == plain  # the same audio either way


def test_scene_and_dialogue_voices(server):
    audio = server.client().audio.speech.create(
        model="tts-1", voice="", input="[SPEAKER0] Hi there. [SPEAKER1] Hello to you.", response_format="wav",
        instructions="Two friends in a quiet cafe.", extra_body={"voices": ["belinda", "en_man"], "seed": 1,
                                                                 "max_new_tokens": 100})
    wave, rate = soundfile.read(io.BytesIO(audio.content))
    assert rate == 24000 and len(wave) > 0


BAD = [
    ({"voice": "nobody"}, openai.NotFoundError, "UNKNOWN_VOICE", "voice"),
    ({"speed": 5}, openai.BadRequestError, "INVALID_SPEED", "speed"),
    ({"response_format": "ogg"}, openai.BadRequestError, "INVALID_OUTPUT_FORMAT", "response_format"),
    ({"model": "whisper-1"}, openai.BadRequestError, "INVALID_INPUT", "model"),
    ({"input": ""}, openai.BadRequestError, "INVALID_TRANSCRIPT", "input"),
    ({"input": "a" * 20000}, openai.BadRequestError, "INVALID_TRANSCRIPT", "input"),
    ({"extra_body": {"temperature": 9}}, openai.BadRequestError, "INVALID_TEMPERATURE", "temperature"),
    ({"extra_body": {"top_k": 0}}, openai.BadRequestError, "INVALID_TOP_K", "top_k"),
    ({"extra_body": {"seed": -1}}, openai.BadRequestError, "INVALID_SEED", "seed"),
    ({"extra_body": {"bogus": 1}}, openai.BadRequestError, "UNKNOWN_FIELD", "bogus"),
    ({"extra_body": {"s3_key": "../x.wav", "s3_bucket": "good-bucket"}}, openai.BadRequestError, "INVALID_S3_KEY",
     None),
    ({"stream_format": "ws"}, openai.BadRequestError, "INVALID_INPUT", "stream_format"),
    ({"voice": "../../etc/passwd"}, openai.BadRequestError, "INVALID_VOICE_NAME", None),
]


@pytest.mark.parametrize("change, raised, code, param", BAD, ids=[b[2] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_input_gets_openai_errors_with_stable_codes(server, change, raised, code, param):
    kwargs = {"model": "tts-1", "voice": "belinda", "input": TEXT, "response_format": "wav", **change}
    with pytest.raises(raised) as error:
        server.client().audio.speech.create(**kwargs)
    body = error.value.body
    assert body["code"] == code and body["message"]
    if param:
        assert body["param"] == param
    assert set(body) >= {"message", "type", "code", "param"}


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"null", b'{"input": 5}',
                                  "\ud800".encode("utf-8", "surrogatepass")])
def test_malformed_bodies_are_400_and_the_server_keeps_serving(server, body):
    response = httpx.post(server.base + "/v1/audio/speech", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] in ("INVALID_INPUT", "INVALID_TRANSCRIPT") and error["type"] == "invalid_request_error"
    assert server.client().audio.speech.create(model="tts-1", voice="belinda", input="Still here.",
                                               response_format="wav", extra_body={"max_new_tokens": 40}).content


def test_models_health_ready_ping_and_metrics(server):
    assert [m.id for m in server.client().models.list()] == ["higgs-audio-v2"]
    assert httpx.get(server.base + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.base + "/ready")
    assert ready.status_code == 200 and ready.json()["model"]["loaded"] is True
    assert httpx.get(server.base + "/ping").json() == {"status": "healthy"}
    metrics = httpx.get(server.base + "/metrics").text
    assert "higgs_tts_requests_total" in metrics and "higgs_tts_slots_capacity 8.0" in metrics
    assert "higgs_tts_ready 1.0" in metrics


def test_a_voice_uploaded_is_listed_used_and_deleted(server):
    buffer = io.BytesIO()
    t = np.arange(24000 * 2) / 24000
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000, format="FLAC")
    files = {"file": ("narrator.flac", buffer.getvalue(), "audio/flac")}
    data = {"name": "narrator", "transcript": "A low steady voice."}
    created = httpx.post(server.base + "/v1/audio/voices", files=files, data=data)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "narrator" and created.json()["duration_seconds"] == 2.0
    again = httpx.post(server.base + "/v1/audio/voices", files=files, data=data)
    assert again.status_code == 409 and again.json()["error"]["code"] == "VOICE_EXISTS"
    listed = [v["id"] for v in httpx.get(server.base + "/v1/audio/voices").json()["data"]]
    assert "narrator" in listed
    audio = server.client().audio.speech.create(model="tts-1", voice="narrator", input=TEXT, response_format="wav",
                                                extra_body={"max_new_tokens": 60})
    assert soundfile.read(io.BytesIO(audio.content))[0].size > 0
    assert httpx.delete(server.base + "/v1/audio/voices/narrator").json()["deleted"] is True
    gone = httpx.delete(server.base + "/v1/audio/voices/narrator")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "UNKNOWN_VOICE"


@pytest.mark.parametrize("case", ["no file", "not audio", "bad name", "no transcript", "too long", "huge"])
def test_bad_uploads_are_refused_and_nothing_is_added(server, case):
    clip = io.BytesIO()
    soundfile.write(clip, np.zeros(24000, dtype=np.float32), 24000, format="WAV")
    files = {"file": ("v.wav", clip.getvalue(), "audio/wav")}
    data = {"name": "fine_name", "transcript": "Words."}
    if case == "no file":
        files = None
    elif case == "not audio":
        files = {"file": ("v.wav", b"hello, not audio", "audio/wav")}
    elif case == "bad name":
        data["name"] = "../up"
    elif case == "no transcript":
        data["transcript"] = "  "
    elif case == "too long":
        long = io.BytesIO()
        soundfile.write(long, np.zeros(24000 * 40, dtype=np.int16), 24000, format="FLAC")
        files = {"file": ("v.flac", long.getvalue(), "audio/flac")}
    elif case == "huge":
        files = {"file": ("v.wav", b"\0" * (13 * 1024 * 1024), "audio/wav")}
    before = httpx.get(server.base + "/v1/audio/voices").json()
    response = httpx.post(server.base + "/v1/audio/voices", files=files, data=data, timeout=60)
    # without a file, httpx sends a url-encoded form: not the multipart upload the route takes
    assert response.status_code == 415 if case == "no file" else response.status_code in (400, 413), response.text
    assert response.json()["error"]["code"] in ("INVALID_REFERENCE_AUDIO", "INVALID_VOICE_NAME", "PAYLOAD_TOO_LARGE",
                                                "UNSUPPORTED_MEDIA_TYPE",
                                                "INVALID_INPUT")
    named = {"not audio": "file", "bad name": "name", "no transcript": "transcript", "too long": "file"}
    if case in named:  # the form's own field names, not RunPod's (ref_audio_base64, ref_audio_transcript)
        assert response.json()["error"]["param"] == named[case], response.text
    assert httpx.get(server.base + "/v1/audio/voices").json() == before


def test_api_keys_guard_every_route_but_health_ping_and_bare_readiness(demo_bundle, tmp_path):
    secret = "sk-test-9f8e7d6c5b4a"
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# the team's keys\nsk-other-key\n{secret}\n")
    srv = HttpServer(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none", HIGGS_API_KEYS=str(keys))
    try:
        ready = httpx.get(srv.base + "/ready")  # probes carry no key: ready or not, no description
        assert set(ready.json()) == {"ready"}
        for route in ("/v1/models", "/v1/audio/voices", "/metrics"):
            assert httpx.get(srv.base + route).status_code == 401
            wrong = httpx.get(srv.base + route, headers={"Authorization": "Bearer sk-wrong"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHENTICATED"
            assert httpx.get(srv.base + route, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        assert httpx.get(srv.base + "/health").status_code == 200 and httpx.get(srv.base + "/ping").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            srv.client("sk-wrong").audio.speech.create(model="tts-1", voice="belinda", input=TEXT)
        audio = srv.client(secret).audio.speech.create(model="tts-1", voice="belinda", input=TEXT,
                                                       response_format="wav", extra_body={"max_new_tokens": 40})
        assert audio.content[:4] == b"RIFF"
    finally:
        srv.stop()
    assert secret not in srv.output() and "sk-other-key" not in srv.output()
    assert "API keys required" in srv.output()


def test_voices_are_shared_by_every_instance_over_one_s3_prefix(seaweed, s3_bucket, tmp_path):
    """Two servers (as two workers of an endpoint) with HIGGS_VOICES_S3_URI on one prefix of a
    real S3 server: a voice added through one is listed and spoken by the other, and gone from
    both once deleted."""
    from tests.seaweed import ACCESS_KEY, SECRET_KEY

    env = dict(HIGGS_ENGINE="fake", HIGGS_STORE="none", HIGGS_VOICES_S3_URI=f"s3://{s3_bucket}/team/voices",
               S3_ENDPOINT_URL=seaweed.endpoint, S3_ADDRESSING_STYLE="path", AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    first, second = HttpServer(tmp_path / "a", **env), HttpServer(tmp_path / "b", **env)
    try:
        assert httpx.get(second.base + "/v1/audio/voices").json()["data"] == []
        clip = io.BytesIO()
        soundfile.write(clip, (0.2 * np.sin(np.arange(24000) / 9)).astype(np.float32), 24000, format="WAV")
        created = httpx.post(first.base + "/v1/audio/voices", files={"file": ("v.wav", clip.getvalue())},
                             data={"name": "shared_voice", "transcript": "Hello from the team."})
        assert created.status_code == 201, created.text
        listed = httpx.get(second.base + "/v1/audio/voices").json()["data"]
        assert [(v["id"], v["transcript"]) for v in listed] == [("shared_voice", "Hello from the team.")]
        audio = second.client().audio.speech.create(model="tts-1", voice="shared_voice", input=TEXT,
                                                    response_format="wav")
        assert soundfile.read(io.BytesIO(audio.content))[0].size > 0
        keys = sorted(o["Key"] for o in seaweed.client().list_objects_v2(Bucket=s3_bucket)["Contents"])
        assert keys == ["team/voices/shared_voice.txt", "team/voices/shared_voice.wav"]
        assert httpx.delete(second.base + "/v1/audio/voices/shared_voice").status_code == 200
        assert httpx.get(first.base + "/v1/audio/voices").json()["data"] == []
        with pytest.raises(openai.NotFoundError):
            first.client().audio.speech.create(model="tts-1", voice="shared_voice", input=TEXT)
    finally:
        first.stop()
        second.stop()


def test_a_seeded_repeat_comes_from_the_result_cache(demo_bundle, tmp_path):
    srv = HttpServer(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp_path / "o"),
                     HIGGS_RESULT_CACHE="on")
    try:
        body = {"model": "tts-1", "voice": "belinda", "input": TEXT, "response_format": "flac", "seed": 21,
                "max_new_tokens": 90}
        first = httpx.post(srv.base + "/v1/audio/speech", json=body, timeout=120)
        second = httpx.post(srv.base + "/v1/audio/speech", json=body, timeout=120)
        unseeded = httpx.post(srv.base + "/v1/audio/speech", json={**body, "seed": None}, timeout=120)
        assert first.headers["x-result-cache"] == "miss" and second.headers["x-result-cache"] == "hit"
        assert unseeded.headers["x-result-cache"] == "miss"
        assert first.content == second.content  # the same samples, encoded the same way
        assert list((tmp_path / "o").rglob("*.f32"))  # kept in the local store
        assert "content-length" in second.headers and "content-length" not in first.headers
        wav = [httpx.post(srv.base + "/v1/audio/speech", json={**body, "response_format": "wav", "seed": 22},
                          timeout=120)
               for _ in range(2)]
        assert [w.headers["x-result-cache"] for w in wav] == ["miss", "hit"]
        assert wav[0].content[4:8] == b"\xff" * 4  # streamed: the sizes are a stream's maximum
        with wave.open(io.BytesIO(wav[1].content)) as whole:  # whole: the real sizes
            assert whole.getnframes() == (len(wav[1].content) - 44) // 2 > 0
            assert whole.readframes(whole.getnframes()) == wav[0].content[44:]
        assert int(wav[1].headers["content-length"]) == len(wav[1].content)
    finally:
        srv.stop()


def test_one_queue_in_front_of_the_engine_for_http_and_grpc(demo_bundle, tmp_path):
    """`serve http --grpc-port`: one engine slot (HIGGS_MAX_BATCH=1) and no room to wait
    (HIGGS_MAX_QUEUE=0). While an HTTP stream holds the slot, the next HTTP request is 429
    QUEUE_FULL with Retry-After and a gRPC call is RESOURCE_EXHAUSTED QUEUE_FULL: one queue,
    one rule, one count in /metrics. When the stream ends, both faces are served again."""
    import grpc

    from higgs_tts.v1 import speech_pb2 as pb
    from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
    from tests.integration.runpod_helpers import free_port

    grpc_port = free_port()
    srv = HttpServer(tmp_path, args=("--grpc-port", str(grpc_port)), MODEL_PATH=str(demo_bundle.root),
                     HIGGS_STORE="none", HIGGS_MAX_BATCH="1", HIGGS_MAX_QUEUE="0")
    body = {"voice": "en_man", "input": "A long text that holds the slot for a while. " * 30,
            "response_format": "pcm", "seed": 3}
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.SpeechServiceStub(channel)
        with httpx.stream("POST", srv.base + "/v1/audio/speech", json=body, timeout=120) as holding:
            assert holding.status_code == 200
            chunks = holding.iter_bytes()  # kept: a dropped iterator closes the response
            next(chunks)  # generating now
            refused = httpx.post(srv.base + "/v1/audio/speech", json={**body, "input": "Hi."}, timeout=30)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "QUEUE_FULL"
            assert refused.headers["retry-after"] == "1"
            with pytest.raises(grpc.RpcError) as raised:
                stub.Synthesize(pb.SpeechRequest(text="Hi.", omit_audio=True), timeout=30)
            assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(raised.value.trailing_metadata())["error-code"] == "QUEUE_FULL"
            metrics = httpx.get(srv.base + "/metrics").text
            assert "higgs_tts_in_flight 1.0" in metrics and "higgs_tts_queue_depth 0.0" in metrics
        deadline = time.monotonic() + 30
        while "higgs_tts_in_flight 0.0" not in httpx.get(srv.base + "/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(srv.base + "/v1/audio/speech", json={**body, "input": "Hi."}, timeout=60).status_code == 200
        assert stub.Synthesize(pb.SpeechRequest(text="Hi.", omit_audio=True), timeout=60).completed.frames > 0
        channel.close()
    finally:
        srv.stop()
