"""The ASR pass through `serve http` with a real (tiny) Whisper: captions as response formats,
the SSE events, the errors, /ready and the metrics; the official openai client included."""

import base64
import io
import json
import urllib.request

import pytest
import srt
import webvtt

from tests.http_helpers import HttpServer

pytestmark = pytest.mark.slow

TEXT = "One two three four five six. Seven eight nine ten eleven twelve. Thirteen fourteen fifteen."


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_asr):
    server = HttpServer(tmp_path_factory.mktemp("asr-http"), ready_path="/ready", HIGGS_ENGINE="fake",
                        HIGGS_STORE="none", HIGGS_ASR_MODEL=str(demo_asr))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    server = HttpServer(tmp_path_factory.mktemp("no-asr"), HIGGS_ENGINE="fake", HIGGS_STORE="none")
    yield server
    server.stop()


def post(server, body):
    request = urllib.request.Request(server.base + "/v1/audio/speech", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_ready_names_the_asr_model(server, demo_asr):
    with urllib.request.urlopen(server.base + "/ready", timeout=10) as response:
        body = json.load(response)
    assert body["ready"] is True and body["asr"]["asr_model"] == str(demo_asr)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_captions_come_back_as_the_response_and_parse(server, fmt):
    status, headers, data = post(server, {"input": TEXT, "response_format": fmt, "seed": 3, "max_new_tokens": 130})
    assert status == 200, data
    text = data.decode("utf-8")
    if fmt == "srt":
        assert headers.get_content_type() == "application/x-subrip"
        cues = [(c.start.total_seconds(), c.end.total_seconds()) for c in srt.parse(text)]
    else:
        assert headers.get_content_type() == "text/vtt"
        cues = [(c.start_in_seconds + c.start_time.milliseconds / 1000, c.end_in_seconds)
                for c in webvtt.from_buffer(io.StringIO(text)).captions]
    assert cues and all(s < e for s, e in cues)
    assert all(a[1] <= b[0] + 1e-3 for a, b in zip(cues, cues[1:]))
    assert headers["X-Request-Id"]


def test_sse_carries_each_chunks_verdict_and_the_totals(server):
    status, _, data = post(server, {"input": TEXT, "stream_format": "sse", "response_format": "pcm",
                                    "verify": "report", "timestamps": "word", "seed": 4, "max_new_tokens": 130})
    assert status == 200
    events = [json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: ")]
    verified = [e for e in events if e["type"] == "speech.chunk.verified"]
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert len(verified) == len(done["verification"]) >= 2
    for e, summary in zip(verified, done["verification"]):
        assert {"chunk", "transcript", "wer", "attempts", "kept", "passed", "words"} <= set(e)
        assert {k: e[k] for k in summary} == summary
    assert done["words"] == [w for e in verified for w in e["words"]]
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert len(audio) > 0


def test_the_openai_client_passes_the_fields_through(server):
    response = server.client().audio.speech.create(model="tts-1", voice="belinda", input=TEXT, response_format="wav",
                                                   extra_body={"verify": True, "max_wer": 1.0, "max_attempts": 1,
                                                               "seed": 5, "max_new_tokens": 130})
    assert response.content[:4] == b"RIFF"


@pytest.mark.parametrize("body,code,field", [
    ({"verify": "maybe"}, "INVALID_VERIFICATION", "verify"),
    ({"verify": 1}, "INVALID_VERIFICATION", "verify"),
    ({"verify": True, "max_wer": 1.5}, "INVALID_VERIFICATION", "max_wer"),
    ({"verify": True, "max_wer": "0.1"}, "INVALID_VERIFICATION", "max_wer"),
    ({"verify": True, "max_attempts": 0}, "INVALID_VERIFICATION", "max_attempts"),
    ({"verify": True, "max_attempts": 6}, "INVALID_VERIFICATION", "max_attempts"),
    ({"timestamps": "segment"}, "INVALID_VERIFICATION", "timestamps"),
    ({"response_format": "vtt", "stream_format": "sse"}, "INVALID_OUTPUT_FORMAT", "stream_format"),
    ({"response_format": "ass"}, "INVALID_OUTPUT_FORMAT", "response_format"),
])
def test_bad_fields_are_refused_before_any_work(server, body, code, field):
    status, _, data = post(server, {"input": "hello", **body})
    error = json.loads(data)["error"]
    assert status == 400 and error["code"] == code and error["param"] == field


@pytest.mark.parametrize("body", [{"verify": True}, {"verify": "report"}, {"timestamps": "word"},
                                  {"response_format": "srt"}, {"response_format": "vtt"}])
def test_without_an_asr_model_the_pass_is_refused_clearly(bare, body):
    status, _, data = post(bare, {"input": "hello", **body})
    error = json.loads(data)["error"]
    assert status == 400 and error["code"] == "ASR_NOT_CONFIGURED" and "HIGGS_ASR_MODEL" in error["message"]


def test_metrics_count_the_verified_chunks(server):
    post(server, {"input": TEXT, "response_format": "wav", "verify": True, "max_wer": 0.0, "max_attempts": 2,
                  "seed": 6, "max_new_tokens": 130})
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("higgs_tts_chunks_") or line.startswith("higgs_tts_asr_seconds")}
    assert values["higgs_tts_chunks_verified_total"] >= 2
    assert values["higgs_tts_chunks_regenerated_total"] >= 2  # a demo Whisper never hears the words
    assert values["higgs_tts_chunks_failing_total"] >= 2
    assert values["higgs_tts_asr_seconds_total"] > 0
