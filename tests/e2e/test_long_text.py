"""Long text just works, on every face: texts of every size class up to the 10,000-character
limit (sentences, a `[SPEAKERn]` dialogue, no sentence punctuation at all, unspaced Chinese,
emoji) through HTTP, the RunPod worker's production loop and gRPC, each split where it must be
and every chunk ended by the model's own end token (the metadata's per-chunk stop reasons say
so), on a demo model that ends its audio (tests/ending_bundle.py). And what can be known before
the first byte is refused before it, in every streaming format."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import grpc
import httpx
import pytest

from boson_multimodal.runtime import HiggsAudio, SpeechJob
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.ending_bundle import write_ending_bundle
from tests.http_helpers import HttpServer
from tests.integration.grpc_helpers import collect, domain_code, wait_for
from tests.integration.runpod_helpers import ROOT, FakePlatform, WorkerProcess, guarded_env

pytestmark = pytest.mark.slow

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def sized(unit: str, chars: int, separator: str = " ") -> str:
    text = separator.join([unit] * (chars // (len(unit) + len(separator)) + 1))
    return text[:chars].rstrip()


def dialogue(chars: int) -> str:
    turns, i = [], 0
    while sum(len(t) + 1 for t in turns) < chars:
        turns.append(f"[SPEAKER{i % 2}] {SENTENCE}")
        i += 1
    return "\n".join(turns)[:chars].rsplit("\n", 1)[0]


TEXTS = {
    "one sentence": SENTENCE,
    "600 characters": sized(SENTENCE, 600),
    "2,500 characters": sized(SENTENCE, 2500),
    "10,000 characters of sentences": sized(SENTENCE, 10_000),
    "10,000 characters, no sentence punctuation": sized("alpha bravo charlie delta echo foxtrot", 10_000),
    "10,000 characters of one word and no space": "a" * 10_000,
    "5,000 characters of dialogue": dialogue(5000),
    "3,000 unspaced Chinese characters": ("今天天气很好我们一起去公园散步吧" * 200)[:3000],
    "10,000 emoji": "😀" * 10_000,
}


@pytest.fixture(scope="module")
def ending(tmp_path_factory):
    return write_ending_bundle(tmp_path_factory.mktemp("ending"))


@pytest.fixture(scope="module")
def plans(ending):
    """The chunks the runtime plans for each text (the faces must report that many)."""
    runtime = HiggsAudio.load(ending, device="cpu")
    try:
        return {name: runtime.plan(SpeechJob(text)).chunks for name, text in TEXTS.items()}
    finally:
        runtime.close()


def test_the_plans_cover_every_text_and_split_the_long_ones(plans):
    for name, chunks in plans.items():
        spoken = "".join(chunks).replace(" ", "").replace("\n", "")
        original = TEXTS[name].replace(" ", "").replace("\n", "")
        assert spoken.rstrip(".") == original.rstrip("."), name  # all of it (normalisation adds a final period)
        assert (len(chunks) > 1) == (len(TEXTS[name]) > 2000), (name, len(chunks))


def spoken_whole(name: str, reasons: list[str], plans) -> None:
    assert len(reasons) == len(plans[name]), (name, reasons)
    assert set(reasons) == {"end_token"}, (name, reasons)


@pytest.fixture(scope="module")
def http_server(ending, tmp_path_factory):
    server = HttpServer(tmp_path_factory.mktemp("long-http"), MODEL_PATH=str(ending.root), HIGGS_STORE="none",
                        ready_path="/ready")
    yield server
    server.stop()


@pytest.mark.parametrize("name", list(TEXTS))
def test_http(http_server, plans, name):
    response = httpx.post(http_server.base + "/v1/audio/speech", timeout=120,
                          json={"input": TEXTS[name], "response_format": "pcm", "stream_format": "sse", "seed": 4})
    assert response.status_code == 200, response.text[:500]
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    done = events[-1]
    assert done["type"] == "speech.audio.done", done
    assert sum(len(base64.b64decode(e["audio"])) for e in events[:-1]) > 0
    spoken_whole(name, done["chunk_stop_reasons"], plans)


def test_runpod(ending, plans, tmp_path):
    platform = FakePlatform([{"id": f"long-{i}", "input": {"transcript": text, "seed": 4}}
                             for i, text in enumerate(TEXTS.values())])
    # long audio does not fit a job's inline payload: it goes to the (local) store, a URL comes back
    env = guarded_env(tmp_path, MODEL_PATH=str(ending.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp_path / "out"),
                      S3_BUCKET="long", RUNPOD_PROGRESS_INTERVAL="60", **platform.env())
    worker = WorkerProcess(tmp_path, env, api=False)
    try:
        for i, name in enumerate(TEXTS):
            (done,) = wait_for(lambda i=i: platform.finished(f"long-{i}"), timeout=300)
            output = done["output"]
            assert output["success"] is True, (name, str(output)[:500])
            assert output["audio_url"] and output["metadata"]["frames"] > 0
            spoken_whole(name, output["metadata"]["chunk_stop_reasons"], plans)
    finally:
        worker.stop()
        platform.close()


@pytest.fixture(scope="module")
def grpc_channel(ending, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("long-grpc")
    env = guarded_env(tmp, MODEL_PATH=str(ending.root), HIGGS_STORE="none")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
                             "serve", "grpc", "--host", "127.0.0.1", "--port", "0"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    address = json.loads(proc.stdout.readline())["address"]
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 256 << 20)])
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    wait_for(lambda: health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING,
             timeout=120)
    yield channel
    channel.close()
    proc.terminate()
    proc.wait(60)


@pytest.mark.parametrize("name", list(TEXTS))
def test_grpc(grpc_channel, plans, name):
    stub = pb_grpc.SpeechServiceStub(grpc_channel)
    messages, error = collect(stub.StreamSpeech(pb.SpeechRequest(text=TEXTS[name], sampling=pb.Sampling(seed=4)),
                                                timeout=120))
    assert error is None, error
    completed = messages[-1].completed
    assert completed.frames > 0
    spoken_whole(name, list(completed.metadata["chunk_stop_reasons"]), plans)


# -- refused before the first byte, in every format ------------------------------------------------

REFUSALS = {
    "a text that cannot fit one chunk": ({"input": "word " * 1990, "chunk_method": "none"}, 400, "TEXT_TOO_LONG"),
    "an unknown voice": ({"input": "Hi.", "voice": "nobody"}, 404, "UNKNOWN_VOICE"),
    "a step budget with no audio frame": ({"input": "Hi.", "max_new_tokens": 9}, 400, "INVALID_MAX_NEW_TOKENS"),
    "an output key that exists": ({"input": "Hi.", "s3_bucket": "outputs", "s3_key": "taken.wav"}, 409,
                                  "OBJECT_EXISTS"),
}
FORMATS = [(fmt, "audio") for fmt in ("wav", "pcm", "mp3", "opus", "aac", "flac")] + [("mp3", "sse")]


@pytest.fixture(scope="module")
def stored_server(ending, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("long-refusals")
    (tmp / "out" / "outputs").mkdir(parents=True)
    (tmp / "out" / "outputs" / "taken.wav").write_bytes(b"RIFF")
    server = HttpServer(tmp, MODEL_PATH=str(ending.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp / "out"),
                        ready_path="/ready")
    yield server
    server.stop()


def first_byte(base: str, body: dict) -> tuple[int, bytes]:
    """The status and the first bytes of a streamed answer."""
    with httpx.stream("POST", base + "/v1/audio/speech", json=body, timeout=60) as response:
        return response.status_code, next(response.iter_raw(), b"")


@pytest.mark.parametrize("fmt,stream_format", FORMATS)
@pytest.mark.parametrize("case", list(REFUSALS))
def test_what_is_knowable_is_refused_before_the_first_byte(stored_server, case, fmt, stream_format):
    body, status, code = REFUSALS[case]
    got, data = first_byte(stored_server.base, {**body, "response_format": fmt, "stream_format": stream_format})
    assert got == status, (got, data[:300])
    assert json.loads(data)["error"]["code"] == code


@pytest.mark.parametrize("fmt,stream_format", FORMATS)
def test_no_model_is_a_503_before_the_first_byte(tmp_path_factory, fmt, stream_format, request):
    server = request.getfixturevalue("empty_server")
    got, data = first_byte(server.base, {"input": "Hi.", "response_format": fmt, "stream_format": stream_format})
    assert got == 503 and json.loads(data)["error"]["code"] == "MODEL_NOT_FOUND", (got, data[:300])


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("no-model")
    (tmp / "volume").mkdir()
    server = HttpServer(tmp, MODEL_PATH=str(tmp / "volume"), HIGGS_STORE="none", ready_path="/health")
    yield server
    server.stop()


@pytest.mark.parametrize("case", ["a text that cannot fit one chunk", "an unknown voice",
                                  "a step budget with no audio frame"])
def test_grpc_refuses_before_its_first_message(grpc_channel, case):
    body, _, code = REFUSALS[case]
    message = pb.SpeechRequest(text=body["input"], voices=[pb.Voice(name=body["voice"])] if "voice" in body else [],
                               sampling=pb.Sampling(max_new_tokens=body.get("max_new_tokens", 2048)),
                               chunking=pb.Chunking(method=pb.CHUNK_METHOD_NONE)
                               if body.get("chunk_method") == "none" else None)
    messages, error = collect(pb_grpc.SpeechServiceStub(grpc_channel).StreamSpeech(message, timeout=60))
    assert messages == [] and error is not None and domain_code(error) == code
