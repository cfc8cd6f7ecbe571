"""Every face takes the same inputs with the same rules and says the same thing about them: one
table of request shapes, good and bad, sent through the command line, HTTP (a real server), gRPC
(a real channel) and RunPod (the SDK's own job runner); the same code and message for every
refusal, the same samples for every success."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import urllib.request

import grpc
import pytest
import soundfile
from runpod.serverless.modules.rp_job import run_job

from adapters.grpc import ServerOptions
from adapters.grpc.status import ERROR_CODE_KEY
from adapters.runpod import RunpodWorker, WorkerOptions
from adapters.runpod.metrics import WorkerMetrics
from app.cli import main
from app.container import build_container
from app.grpc_api import build_server
from app.settings import Settings
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc
from tests.http_helpers import HttpServer

pytestmark = pytest.mark.slow

# one request, in the face-neutral words of the domain: text, voice, scene, seed, temperature,
# top_k, top_p, max_new_tokens, speed, chunk_method
GOOD = [
    {"text": "Hello there.", "seed": 1},
    {"text": "Hello there, how are you today?", "voice": "belinda", "seed": 2, "temperature": 0.7},
    {"text": "A quiet evening by the river.", "voice": "en_man", "scene": "A calm studio.", "seed": 3,
     "top_k": 20, "top_p": 0.8},
    {"text": "Speak slowly please.", "seed": 4, "speed": 0.5},
    {"text": "word " * 60, "seed": 5, "max_new_tokens": 200, "chunk_method": "word"},
]
BAD = [
    ({"text": ""}, "INVALID_TRANSCRIPT"),
    ({"text": "   "}, "INVALID_TRANSCRIPT"),
    ({"text": "a" * 10_001}, "INVALID_TRANSCRIPT"),
    ({"text": "Hi.", "temperature": 0}, "INVALID_TEMPERATURE"),
    ({"text": "Hi.", "temperature": 2.5}, "INVALID_TEMPERATURE"),
    ({"text": "Hi.", "top_k": 0}, "INVALID_TOP_K"),
    ({"text": "Hi.", "top_p": 1.5}, "INVALID_TOP_P"),
    ({"text": "Hi.", "max_new_tokens": 0}, "INVALID_MAX_NEW_TOKENS"),
    ({"text": "Hi.", "max_new_tokens": 9000}, "INVALID_MAX_NEW_TOKENS"),
    ({"text": "Hi.", "seed": -1}, "INVALID_SEED"),
    ({"text": "Hi.", "speed": 5}, "INVALID_SPEED"),
    ({"text": "Hi.", "speed": 0.1}, "INVALID_SPEED"),
    ({"text": "Hi.", "voice": "nobody"}, "UNKNOWN_VOICE"),
    ({"text": "Hi.", "voice": "no body!"}, "INVALID_VOICE_NAME"),
    ({"text": "Hi.", "scene": "x" * 2001}, "INVALID_SCENE_PROMPT"),
    ({"text": "Hi.", "chunk_method": "sentence"}, "INVALID_CHUNKING"),
    ({"text": "Hi\x00there."}, "INVALID_TRANSCRIPT"),
]


@pytest.fixture(scope="module")
def container():
    return build_container(Settings(engine="fake", store="none"))


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    server = HttpServer(tmp_path_factory.mktemp("faces-http"), HIGGS_ENGINE="fake", HIGGS_STORE="none")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(container):
    server = build_server(container, ServerOptions(host="127.0.0.1", port=0))
    server.start()
    assert server.ready.wait(30)
    channel = grpc.insecure_channel(server.address)
    yield pb_grpc.SpeechServiceStub(channel)
    channel.close()
    server.stop(grace=0)


@pytest.fixture(scope="module")
def worker(container):
    service = container.speech_service()
    return RunpodWorker(service, WorkerMetrics(engine_load=service.load), WorkerOptions())


# -- each face: a request in, (code, message) or samples out --------------------------------


def samples_of(data: bytes):
    wave, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000
    return wave.tobytes()


def via_http(http, r):
    body = {"input": r["text"], "response_format": "wav", **({"voice": r["voice"]} if "voice" in r else {}),
            **({"instructions": r["scene"]} if "scene" in r else {}),
            **{k: r[k] for k in ("seed", "temperature", "top_k", "top_p", "max_new_tokens", "speed", "chunk_method")
               if k in r}}
    request = urllib.request.Request(http.base + "/v1/audio/speech", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
    except urllib.error.HTTPError as error:
        e = json.loads(error.read())["error"]
        return e["code"], e["message"]
    pcm = data[44:]  # the streaming header's sizes are unknown; the samples follow it
    return pcm


def via_grpc(stub, r):
    sampling = {k: r[k] for k in ("seed", "temperature", "top_k", "top_p", "max_new_tokens") if k in r}
    methods = {"auto": pb.CHUNK_METHOD_AUTO, "word": pb.CHUNK_METHOD_WORD, "none": pb.CHUNK_METHOD_NONE,
               "speaker": pb.CHUNK_METHOD_SPEAKER}
    chunking = pb.Chunking(method=methods.get(r.get("chunk_method", "auto"), 99))
    message = pb.SpeechRequest(text=r["text"], voices=[pb.Voice(name=r["voice"])] if "voice" in r else [],
                               scene_prompt=r.get("scene", ""), sampling=pb.Sampling(**sampling), chunking=chunking,
                               **({"speed": r["speed"]} if "speed" in r else {}))
    try:
        result = stub.Synthesize(message, timeout=60)
    except grpc.RpcError as error:
        code = dict(error.trailing_metadata() or ()).get(ERROR_CODE_KEY)
        return code, error.details().removeprefix(f"{code}: ")  # gRPC's status text leads with the code
    return samples_of(result.audio)


def via_runpod(worker, r):
    job = {"transcript": r["text"], **({"ref_audio": r["voice"]} if "voice" in r else {}),
           **({"scene_prompt": r["scene"]} if "scene" in r else {}),
           **{k: r[k] for k in ("seed", "temperature", "top_k", "top_p", "max_new_tokens", "speed", "chunk_method")
              if k in r}}
    output = asyncio.run(run_job(worker.handle, {"id": "job", "input": job}))["output"]
    if not output["success"]:
        return output["error"]["code"], output["error"]["message"]
    return samples_of(base64.b64decode(output["audio_base64"]))


def via_cli(container, capsys, tmp_path, r):
    argv = ["synth", "--text", r["text"], "--out", str(tmp_path / "x.wav")]
    flags = {"voice": "--voice", "scene": "--scene", "seed": "--seed", "temperature": "--temperature",
             "top_k": "--top-k", "top_p": "--top-p", "max_new_tokens": "--max-new-tokens", "speed": "--speed",
             "chunk_method": "--chunk-method"}
    for key, flag in flags.items():
        if key in r:
            argv += [flag, str(r[key])]
    code = main(argv, container=container)
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    if code != 0:
        return summary["error"]["code"], summary["error"]["message"]
    return samples_of((tmp_path / "x.wav").read_bytes())


@pytest.mark.parametrize("request_", GOOD, ids=[f"good-{i}" for i in range(len(GOOD))])
def test_a_good_request_gives_the_same_samples_on_every_face(request_, http, stub, worker, container, capsys,
                                                             tmp_path):
    results = {"http": via_http(http, request_), "grpc": via_grpc(stub, request_),
               "runpod": via_runpod(worker, request_), "cli": via_cli(container, capsys, tmp_path, request_)}
    for face, result in results.items():
        assert isinstance(result, bytes) and len(result) > 0, (face, result)
    assert len({r for r in results.values()}) == 1, {f: len(r) for f, r in results.items()}


@pytest.mark.parametrize("request_,code", BAD, ids=[c + f"-{i}" for i, (_, c) in enumerate(BAD)])
def test_a_bad_request_gets_the_same_code_and_message_on_every_face(request_, code, http, stub, worker, container,
                                                                    capsys, tmp_path):
    results = {"http": via_http(http, request_), "grpc": via_grpc(stub, request_),
               "runpod": via_runpod(worker, request_), "cli": via_cli(container, capsys, tmp_path, request_)}
    codes = {face: r[0] if isinstance(r, tuple) else "success" for face, r in results.items()}
    assert set(codes.values()) == {code}, codes
    messages = {face: r[1] for face, r in results.items()}
    assert len(set(messages.values())) == 1, messages
