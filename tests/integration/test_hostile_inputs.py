"""Hostile input, generated, through the real parts: runpod's local API server and its
production job loop in front of `higgs-tts serve runpod` (the real engine on the demo bundle,
the local store), and the text/voice/sampling subset through `higgs-tts serve grpc`.

Every case gets a structured error with a stable code, or succeeds; none hangs past 30 s; no
traceback, filesystem path or exception text appears in any output; no output is larger than a
bounded error; the worker's peak memory stays bounded; and a valid request succeeds after each
batch."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile

from higgs_tts.v1 import speech_pb2 as pb
from tests.hostile import BAD_NUMBERS, BAD_TEXT, CODES, LEAKS, MB, ODD_TEXT, TYPES, WRONG_TYPES
from tests.integration.runpod_helpers import FakePlatform, WorkerProcess, guarded_env, http

pytestmark = pytest.mark.slow

BASE = {"transcript": "Hi there.", "max_new_tokens": 20, "seed": 1}
VALID = {**BASE, "ref_audio": "belinda"}
TEXT_FIELDS = {  # RunPod field -> the code a bad text in it gets
    "transcript": "INVALID_TRANSCRIPT", "ref_audio": "INVALID_VOICE_NAME", "scene_prompt": "INVALID_SCENE_PROMPT",
    "chunk_method": "INVALID_CHUNKING", "s3_bucket": "INVALID_S3_BUCKET", "s3_key": "INVALID_S3_KEY",
    "ref_audio_base64": "INVALID_REFERENCE_AUDIO", "ref_audio_transcript": "INVALID_REFERENCE_AUDIO",
    "output_format": "INVALID_OUTPUT_FORMAT", "traceparent": None,  # an invalid traceparent is ignored
}
NUMERIC_FIELDS = ["temperature", "top_k", "top_p", "max_new_tokens", "chunk_max_word_num", "chunk_max_num_turns",
                  "ras_win_len", "ras_win_max_num_repeat", "seed"]
def wav_b64(seconds: float = 1.0, rate: int = 24000, line_breaks: bool = False) -> str:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    text = base64.b64encode(buffer.getvalue()).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + "\n" if line_breaks else text


def silence_b64(fmt: str, minutes: int) -> str:
    """A decompression bomb: minutes of silence, compressed to almost nothing."""
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", samplerate=24000, channels=1, format=fmt) as f:
        block = np.zeros(24000 * 60, dtype=np.float32)
        for _ in range(minutes):
            f.write(block)
    return base64.b64encode(buffer.getvalue()).decode()


def lying_wav_b64() -> str:
    """A WAV whose header claims an hour of samples; the file holds a second."""
    data = base64.b64decode(wav_b64())
    claimed = (24000 * 3600 * 2).to_bytes(4, "little")
    data = data[:4] + (36 + 24000 * 3600 * 2).to_bytes(4, "little") + data[8:40] + claimed + data[44:]
    return base64.b64encode(data).decode()


Case = tuple[str, object, "str | None"]  # name, job input, expected code (None: any structured outcome)


def hostile_cases() -> list[Case]:
    """Every class of bad input; the key collisions last, in the order they must happen."""
    return [*_field_cases(), *_location_cases(), *_shape_cases(), *_clip_cases(), *_collision_cases()]


def _field_cases() -> list[Case]:
    cases: list[Case] = []
    for field, code in TEXT_FIELDS.items():
        for name, value in WRONG_TYPES.items():
            cases.append((f"{field} as {name}", {**VALID, field: value}, None))
        for name, value in BAD_TEXT.items():
            cases.append((f"{field} with {name}", {**VALID, field: value}, code))
        for name, value in ODD_TEXT.items():
            cases.append((f"{field} with {name}", {**VALID, field: value}, None))
    for field in NUMERIC_FIELDS:
        for name, value in BAD_NUMBERS.items():
            cases.append((f"{field}={name}", {**VALID, field: value}, None))
    return cases


def _location_cases() -> list[Case]:
    """Voice names, S3 keys and buckets that try to leave where they belong."""
    cases: list[Case] = []
    for value in ["../etc/passwd", "..", "a/b", "/abs", "C:\\x", "belinda\n", "belinda ", " belinda", "belinda,",
                  ",", "a" * 65, "belinda,../x", "belinda\t", "%2e%2e"]:
        cases.append((f"voice {value!r}", {**BASE, "ref_audio": value}, "INVALID_VOICE_NAME"))
    for value in ["../x.wav", "a/../../b.wav", "/abs.wav", "a//b.wav", "C:/x.wav", "a\\b.wav", "x/weather.wav.json",
                  "a/./b.wav", "k" * 1025, "dir/", "x.JSON"]:
        cases.append((f"key {value[:40]!r}", {**VALID, "s3_bucket": "hostile", "s3_key": value}, "INVALID_S3_KEY"))
    for value in ["192.168.1.1", "10.0.0.1", "..", "ab", "A-B", "xn--abc", "-abc", "abc-", "a" * 64,
                  "bucket-s3alias", "a..b", "b_b"]:
        cases.append((f"bucket {value[:40]!r}", {**VALID, "s3_bucket": value}, "INVALID_S3_BUCKET"))
    return cases


def _shape_cases() -> list[Case]:
    """The input's shape, field names, trace context and flags."""
    cases: list[Case] = []
    for name, value in {"a string": "text", "a number": 123, "a list": [], "null": None, "true": True,
                        "a list of jobs": [{"transcript": "x"}]}.items():
        cases.append((f"input is {name}", value, "INVALID_INPUT" if value is not None else None))
    for name, value in {"1 MB field name": {**VALID, "x" * MB: 1}, "surrogate field name": {**VALID, "\ud800": 1},
                        "empty field name": {**VALID, "": 1}, "field name with a space": {"transcript ": "hi"},
                        "1000 unknown fields": {**VALID, **{f"f{i}": i for i in range(1000)}}}.items():
        cases.append((name, value, "UNKNOWN_FIELD"))
    for name, value in {"garbage": "garbage", "1 MB": "0" * MB, "all zero": "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                        "number": 5, "valid": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}.items():
        cases.append((f"traceparent {name}", {**VALID, "traceparent": value}, "ok" if name != "number" else None))
    for value in ["yes", 1, [], {}]:
        cases.append((f"overwrite={value!r}", {**VALID, "s3_bucket": "hostile", "s3_key": "x.wav", "overwrite": value},
                      None))
    cases.append(("transcript of 15000 characters", {**VALID, "transcript": "a" * 15000}, "INVALID_TRANSCRIPT"))
    cases.append(("missing transcript", {"ref_audio": "belinda"}, "INVALID_TRANSCRIPT"))
    cases.append(("unknown voice", {**BASE, "ref_audio": "nobody"}, "UNKNOWN_VOICE"))
    return cases


def _clip_cases() -> list[Case]:
    cases: list[Case] = []
    clip = {"ref_audio_transcript": "A tone."}
    for name, value, code in [
        ("not base64", "not base64!!", "INVALID_REFERENCE_AUDIO"), ("padding only", "====", "INVALID_REFERENCE_AUDIO"),
        ("not audio", base64.b64encode(b"hello world, not a clip").decode(), "INVALID_REFERENCE_AUDIO"),
        ("random bytes", base64.b64encode(os.urandom(4000)).decode(), "INVALID_REFERENCE_AUDIO"),
        ("RIFF garbage", base64.b64encode(b"RIFF" + os.urandom(2000)).decode(), "INVALID_REFERENCE_AUDIO"),
        ("too short clip", wav_b64(0.05), "INVALID_REFERENCE_AUDIO"),
        ("FLAC bomb, an hour of silence", silence_b64("FLAC", 60), "INVALID_REFERENCE_AUDIO"),
        ("OGG bomb, ten minutes of silence", silence_b64("OGG", 10), "INVALID_REFERENCE_AUDIO"),
        ("WAV header claiming an hour", lying_wav_b64(), None),
        ("MIME base64 with line breaks", wav_b64(line_breaks=True), "ok"),
        ("one-line base64", wav_b64(), "ok"),
    ]:
        cases.append((f"clip: {name}", {**BASE, **clip, "ref_audio_base64": value}, code))
    cases.append(("transcript without clip", {**BASE, "ref_audio_transcript": "x"}, "INVALID_REFERENCE_AUDIO"))
    return cases


def _collision_cases() -> list[Case]:
    """Record-key collisions, in order: the first write succeeds, then nothing may write over it."""
    cases: list[Case] = []
    key = {"s3_bucket": "hostile", "s3_key": "collide/weather.wav"}
    cases.append(("first write of a key", {**VALID, **key}, "ok"))
    cases.append(("second write of the same key", {**VALID, **key}, "OBJECT_EXISTS"))
    cases.append(("audio over the key's event record", {**VALID, **key, "s3_key": "collide/weather.wav.json"},
                  "INVALID_S3_KEY"))
    cases.append(("same key with overwrite", {**VALID, **key, "overwrite": True}, "ok"))
    return cases


CASES = hostile_cases()
# runpod's production loop polls for jobs about once a second: it gets the cases
# that test what lies between the handler and the platform (serialising every output, non-object
# inputs, huge names and values), the local API gets them all
_TRANSPORT = ("surrogate", "NUL", "input is", "field name", "NaN", "bomb", "1 MB", "write", "record", "same key")
PRODUCTION_CASES = [case for case in CASES if any(word in case[0] for word in _TRANSPORT)]


def check_output(name: str, output: object, expected: str | None) -> None:
    text = json.dumps(output)
    assert len(text) < 200_000 or (isinstance(output, dict) and output.get("success") is True), (name, len(text))
    assert isinstance(output, dict) and isinstance(output.get("success"), bool), (name, text[:500])
    if output["success"]:
        assert expected in (None, "ok"), (name, "succeeded, expected", expected)
        # the local store's file URL is the output's location (what the caller asked for)
        scrubbed = {k: v for k, v in output.items() if k != "audio_url"}
        scrubbed["metadata"] = {k: v for k, v in output["metadata"].items() if k != "audio_uri"}
        assert not LEAKS.search(json.dumps(scrubbed)[:5000] if "audio_base64" in output else json.dumps(scrubbed))
        return
    error = output["error"]
    assert set(error) == {"type", "message", "code", "details"}, (name, error)
    assert error["type"] in TYPES and error["code"] in CODES, (name, error)
    assert isinstance(error["message"], str) and isinstance(error["details"], dict)
    assert len(text) < 20_000, (name, len(text))
    assert not LEAKS.search(text), (name, text[:2000])
    json.loads(text)  # serialisable both ways
    if expected not in (None, "ok"):
        assert error["code"] == expected, (name, error)
    assert expected != "ok", (name, error)


def peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def api_worker(demo_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-api")
    env = guarded_env(tmp, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp / "out"))
    worker = WorkerProcess(tmp, env).wait_api()
    yield worker
    worker.stop()
    assert worker.violations() == "", worker.violations()


def test_the_suite_is_large_and_covers_every_field():
    assert len(CASES) >= 300 and len(PRODUCTION_CASES) >= 60
    named = " ".join(name for name, _, _ in CASES)
    for field in list(TEXT_FIELDS) + NUMERIC_FIELDS + ["overwrite", "ref_audio_transcript"]:
        assert field in named


def test_every_hostile_case_through_runpods_local_api(api_worker):
    assert api_worker.runsync(VALID)["output"]["success"] is True  # warm before measuring memory
    before = peak_rss_mb(api_worker.proc.pid)
    for index, (name, job_input, expected) in enumerate(CASES):
        started = time.monotonic()
        status, body = http("POST", f"{api_worker.api}/runsync", {"input": job_input}, timeout=30)
        assert time.monotonic() - started < 30, name
        if not isinstance(job_input, dict):
            # runpod's local API refuses a non-object input itself (its request schema), before
            # any handler: the production loop below hands it to ours
            assert status == 422 and "dict" in json.dumps(body), (name, status, body)
            continue
        completed = status == 200 and isinstance(body, dict) and body.get("status") == "COMPLETED"
        assert completed, (name, status, str(body)[:500])
        check_output(name, body["output"], expected)
        if index % 50 == 49:  # the worker still serves a valid request after each batch
            assert api_worker.runsync(VALID)["output"]["success"] is True, name
    grown = peak_rss_mb(api_worker.proc.pid) - before
    assert grown < 250, f"peak memory grew by {grown:.0f} MB"
    assert api_worker.runsync(VALID)["output"]["success"] is True


# the worker takes jobs in batches and runs them side by side: these depend on the ones before
ORDERED = ("first write of a key", "second write of the same key", "same key with overwrite")


def test_every_hostile_case_through_the_production_job_loop(demo_bundle, tmp_path):
    assert set(ORDERED) <= {name for name, _, _ in PRODUCTION_CASES}
    jobs = [{"id": f"hostile-{i}", "input": job_input} for i, (name, job_input, _) in enumerate(PRODUCTION_CASES)
            if name not in ORDERED]
    jobs.append({"id": "after", "input": VALID})
    platform = FakePlatform(jobs)
    env = guarded_env(tmp_path, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="local", OUTPUT_DIR=str(tmp_path / "o"),
                      RUNPOD_PROGRESS_INTERVAL="60", **platform.env())
    worker = WorkerProcess(tmp_path, env, api=False)
    try:
        deadline = time.monotonic() + 10 * 60
        while not platform.finished("after"):
            assert worker.proc.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.5)
        for i, (name, job_input, _) in enumerate(PRODUCTION_CASES):
            if name in ORDERED:  # one at a time, each once the one before has finished
                with platform.lock:
                    platform.jobs.append({"id": f"hostile-{i}", "input": job_input})
                while not platform.finished(f"hostile-{i}"):
                    assert worker.proc.poll() is None and time.monotonic() < deadline, worker.output()
                    time.sleep(0.2)
        for i, (name, _, expected) in enumerate(PRODUCTION_CASES):
            (done,) = platform.finished(f"hostile-{i}")
            assert "error" not in done, (name, str(done)[:500])  # a completed job, never a FAILED one
            check_output(name, done["output"], expected)
        assert platform.finished("after")[0]["output"]["success"] is True
    finally:
        worker.stop()
        platform.close()
    assert worker.violations() == "", worker.violations()


# -- gRPC: text, voice and sampling fields -------------------------------------------------------

BAD_UTF8 = {"encoded surrogate": b"\xed\xa0\x80", "lone continuation byte": b"\x80", "overlong slash": b"\xc0\xaf",
            "truncated sequence": b"\xe2\x82"}
PLACEHOLDER = "\u2603\u2603\u2603"  # replaced in the serialised bytes by invalid UTF-8


def grpc_cases() -> list[tuple[str, pb.SpeechRequest, str | None]]:
    cases = []
    slots = {
        "text": lambda v: pb.SpeechRequest(text=v),
        "scene_prompt": lambda v: pb.SpeechRequest(text="Hi.", scene_prompt=v),
        "voice name": lambda v: pb.SpeechRequest(text="Hi.", voices=[pb.Voice(name=v)]),
        "reference transcript": lambda v: pb.SpeechRequest(text="Hi.", voices=[pb.Voice(
            reference=pb.ReferenceAudio(audio=base64.b64decode(wav_b64()), transcript=v))]),
        "s3_key": lambda v: pb.SpeechRequest(text="Hi.", output=pb.OutputTarget(s3_bucket="hostile", s3_key=v)),
        "s3_bucket": lambda v: pb.SpeechRequest(text="Hi.", output=pb.OutputTarget(s3_bucket=v)),
        "request_id": lambda v: pb.SpeechRequest(text="Hi.", request_id=v),
    }
    codes = {"text": "INVALID_TRANSCRIPT", "scene_prompt": "INVALID_SCENE_PROMPT", "voice name": "INVALID_VOICE_NAME",
             "reference transcript": "INVALID_REFERENCE_AUDIO", "s3_key": "INVALID_S3_KEY",
             "s3_bucket": "INVALID_S3_BUCKET", "request_id": "INVALID_REQUEST_ID"}
    for slot, build in slots.items():
        for name, raw in BAD_UTF8.items():
            cases.append((f"{slot} with {name}", (build(PLACEHOLDER), raw), codes[slot]))
        for name, value in {**{k: v for k, v in BAD_TEXT.items() if "surrogate" not in k}, **ODD_TEXT}.items():
            cases.append((f"{slot} with {name}", (build(value), None), codes[slot] if name in BAD_TEXT else None))
    for field, values in {"temperature": [math.nan, math.inf, -1.0, 1e308, 0.0], "top_p": [math.nan, -0.5, 2.0],
                          "top_k": [0, -1, 2**31 - 1], "max_new_tokens": [0, -1, 2**31 - 1],
                          "seed": [-1, -(2**63), 2**63 - 1], "ras_win_len": [-1, 2**31 - 1],
                          "ras_win_max_num_repeat": [0, 2**31 - 1]}.items():
        for value in values:
            fields = {field: value, "max_new_tokens": 20} if field != "max_new_tokens" else {field: value}
            message = pb.SpeechRequest(text="Hi.", sampling=pb.Sampling(**fields))
            cases.append((f"{field}={value}", (message, None), None))
    return cases


GRPC_CASES = grpc_cases()


@pytest.fixture(scope="module")
def grpc_server(demo_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-grpc")
    env = guarded_env(tmp, MODEL_PATH=str(demo_bundle.root), HIGGS_STORE="none")
    with open(tmp / "stderr.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())",
                                 "serve", "grpc", "--host", "127.0.0.1", "--port", "0"], cwd=tmp, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    address = json.loads(proc.stdout.readline())["address"]
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 * MB)])
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 120
    while health.Check(health_pb2.HealthCheckRequest()).status != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    yield channel, proc
    channel.close()
    proc.terminate()
    proc.wait(30)
    guard = env["NETGUARD_LOG"]
    assert not os.path.exists(guard) or open(guard).read() == "", open(guard).read()


def test_the_grpc_subset_is_generated_over_every_text_and_sampling_field():
    assert len(GRPC_CASES) >= 80


def test_hostile_text_voice_and_sampling_fields_over_grpc(grpc_server):
    from adapters.grpc.status import ERROR_CODE_KEY, ERROR_DETAILS_KEY

    channel, proc = grpc_server
    synthesize = channel.unary_unary("/higgs_tts.v1.SpeechService/Synthesize", request_serializer=lambda b: b,
                                     response_deserializer=pb.SpeechResult.FromString)
    before = peak_rss_mb(proc.pid)
    for index, (name, (message, raw), expected) in enumerate(GRPC_CASES):
        data = message.SerializeToString()
        if raw is not None:
            data = data.replace(PLACEHOLDER.encode(), raw)
        try:
            result = synthesize(data, timeout=30)
        except grpc.RpcError as error:
            metadata = dict(error.trailing_metadata() or ())
            code = metadata.get(ERROR_CODE_KEY)
            assert code in CODES, (name, error.code(), error.details())
            assert error.code() is not grpc.StatusCode.UNKNOWN
            json.loads(metadata.get(ERROR_DETAILS_KEY, "{}"), parse_constant=lambda c: pytest.fail(f"{name}: {c}"))
            assert not LEAKS.search(error.details() or ""), (name, error.details())
            if expected is not None:
                assert code == expected, (name, code)
        else:
            assert expected is None, (name, "succeeded, expected", expected)
            assert result.completed.frames >= 0
        if index % 40 == 39:
            ok = synthesize(pb.SpeechRequest(text="Hi.", sampling=pb.Sampling(max_new_tokens=20)).SerializeToString(),
                            timeout=30)
            assert ok.completed.frames >= 0
    assert peak_rss_mb(proc.pid) - before < 250
