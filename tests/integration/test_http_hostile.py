"""Hostile input, generated, through a real `higgs-tts serve http` (the demo model, the local
store): wrong types and nulls for every field, huge and non-finite numbers as raw JSON, lone
surrogates and control characters (C0, DEL, C1) in every string field, nesting, 20 MB and
chunked bodies, wrong content types, voice shapes, voice uploads with hostile names, non-audio
bytes, bombs and bad transcripts, unknown routes and methods, every route without and with a
wrong key.

Every case gets OpenAI's error shape with a stable code (and the status that code has), or
succeeds with audio that is not empty; none takes 30 s; no traceback, source location or path
appears in any answer; a valid request succeeds after every 25 cases."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import soundfile

from adapters.http.schema import http_status
from core.domain.errors import DomainError, ErrorType
from tests.hostile import BAD_NUMBERS, BAD_TEXT, CODES, LEAKS, MB, ODD_TEXT, WRONG_TYPES
from tests.http_helpers import HttpServer

pytestmark = pytest.mark.slow

BASE = {"input": "Hi there.", "max_new_tokens": 60, "seed": 1, "response_format": "wav"}
KEY = "the-right-key"
TEXT_FIELDS = {  # HTTP field -> the code a bad text in it gets
    "input": "INVALID_TRANSCRIPT", "instructions": "INVALID_SCENE_PROMPT", "voice": "INVALID_VOICE_NAME",
    "response_format": "INVALID_OUTPUT_FORMAT", "stream_format": "INVALID_INPUT", "model": "INVALID_INPUT",
    "chunk_method": "INVALID_CHUNKING", "s3_bucket": "INVALID_S3_BUCKET", "s3_key": "INVALID_S3_KEY",
}
NUMERIC_FIELDS = ["temperature", "top_k", "top_p", "max_new_tokens", "seed", "ras_win_len", "ras_win_max_num_repeat",
                  "chunk_max_word_num", "chunk_max_num_turns", "speed"]
# raw JSON numbers no Python value writes: non-finite literals, and numbers past every range
RAW_NUMBERS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "1e999",
               "-1e999": "-1e999", "5000 digits": "1" + "0" * 5000, "1e-400": "1e-400", "-0": "-0",
               "2^64": str(2**64)}


@dataclass
class Case:
    name: str
    method: str = "POST"
    path: str = "/v1/audio/speech"
    json_body: object = None  # serialised with json.dumps (lone surrogates as \\u escapes)
    raw: bytes | None = None  # sent as it is
    content_type: str | None = "application/json"
    files: dict | None = None  # a multipart upload
    data: dict | None = None
    key: str | None = KEY
    expected: str | None = None  # a code, "ok", or None: any structured outcome
    headers: dict = field(default_factory=dict)
    chunked: bool = False


def speech(name: str, body: object, expected: str | None = None, **options) -> Case:
    return Case(name, json_body=body, expected=expected, **options)


def field_cases() -> list[Case]:
    cases = []
    for name, code in TEXT_FIELDS.items():
        for kind, value in WRONG_TYPES.items():
            expected = "INVALID_VOICE_NAME" if name == "voice" and kind == "dict" else None
            cases.append(speech(f"{name} as {kind}", {**BASE, name: value}, expected))
        for kind, value in BAD_TEXT.items():
            cases.append(speech(f"{name} with {kind}", {**BASE, name: value}, code))
        for kind, value in ODD_TEXT.items():
            cases.append(speech(f"{name} with {kind}", {**BASE, name: value}))
        cases.append(speech(f"{name} as null", {**BASE, name: None}))
    for name in NUMERIC_FIELDS:
        for kind, value in BAD_NUMBERS.items():
            cases.append(speech(f"{name}={kind}", {**BASE, name: value}))
        for kind, literal in RAW_NUMBERS.items():
            body = json.dumps({**BASE, name: 12345}).replace("12345", literal)
            cases.append(Case(f"{name} as raw {kind}", raw=body.encode()))
        cases.append(speech(f"{name} as null", {**BASE, name: None}, "ok"))
    return cases


def voice_cases() -> list[Case]:
    cases = [speech(f"voice {shape!r}", {**BASE, "voice": shape}, "INVALID_VOICE_NAME")
             for shape in [{}, {"id": None}, {"name": "belinda"}, {"id": "belinda", "x": 1}, {"id": 5}, {"id": ""},
                           {"id": ["belinda"]}, {"ID": "belinda"}]]
    cases += [speech("voice {'id': 'belinda'}", {**BASE, "voice": {"id": "belinda"}}, "ok"),
              speech("voice 'belinda'", {**BASE, "voice": "belinda"}, "ok"),
              speech("voice and voices", {**BASE, "voice": "belinda", "voices": ["en_man"]}, "INVALID_VOICE_NAME"),
              speech("an unknown voice", {**BASE, "voice": "nobody"}, "UNKNOWN_VOICE"),
              speech("voices with an unknown one", {**BASE, "voices": ["belinda", "nobody"]}, "UNKNOWN_VOICE")]
    for value in ["../etc/passwd", "..", "a/b", "belinda\n", "a" * 65, "%2e%2e", "belinda,", "\x85"]:
        cases.append(speech(f"voice name {value[:20]!r}", {**BASE, "voice": value}, "INVALID_VOICE_NAME"))
    return cases


def body_cases() -> list[Case]:
    deep = {"10,000-deep array in input": b'{"input": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            "100,000 [": b"[" * 100_000, "50,000 {\"a\":": b'{"a":' * 50_000,
            "33-deep object": json.dumps(_nested(33)).encode()}
    cases = [Case(name, raw=raw, expected="INVALID_INPUT") for name, raw in deep.items()]
    cases.append(Case("32-deep object", raw=json.dumps(_nested(32)).encode(), expected="UNKNOWN_FIELD"))
    for name, raw in {"empty body": b"", "invalid UTF-8": b'{"input": "\xe9\xff"}', "a UTF-8 BOM": b"\xef\xbb\xbf{}",
                      "trailing garbage": json.dumps(BASE).encode() + b"x", "two objects": b"{}{}",
                      "not JSON": b"input=hello", "single quotes": b"{'input': 'Hi.'}"}.items():
        cases.append(Case(name, raw=raw, expected="INVALID_INPUT"))
    for name, value in {"a list": [BASE], "a string": "Hi.", "a number": 5, "null": None, "true": True}.items():
        cases.append(speech(f"body is {name}", value, "INVALID_INPUT"))
    cases.append(speech("an unknown field", {**BASE, "inputs": "x"}, "UNKNOWN_FIELD"))
    cases.append(speech("1000 unknown fields", {**BASE, **{f"f{i}": i for i in range(1000)}}, "UNKNOWN_FIELD"))
    cases.append(speech("a surrogate field name", {**BASE, "\ud800": 1}, "UNKNOWN_FIELD"))
    cases.append(speech("duplicate keys, the last wins", None, "ok", raw=b'{"input": 5, "input": "Hi there.", '
                        b'"max_new_tokens": 60}'))
    cases.append(Case("a 20 MB body", raw=b'{"input": "' + b"a" * (20 * MB) + b'"}', expected="PAYLOAD_TOO_LARGE"))
    cases.append(Case("a 2 MB chunked body", raw=b'{"input": "' + b"a" * (2 * MB) + b'"}', chunked=True,
                      expected="PAYLOAD_TOO_LARGE"))
    cases.append(Case("a chunked body", raw=json.dumps(BASE).encode(), chunked=True, expected="ok"))
    cases.append(speech("input of 10,001 characters", {**BASE, "input": "a" * 10_001}, "INVALID_TRANSCRIPT"))
    cases.append(speech("input of 10,000 emoji", {**BASE, "input": "😀" * 10_000, "max_new_tokens": 60}, "ok"))
    cases.append(speech("chunk_method none past one chunk", {**BASE, "input": "word " * 2000, "max_new_tokens": 2048,
                                                               "chunk_method": "none"}, "TEXT_TOO_LONG"))
    cases.append(speech("max_new_tokens 9: no audio frame", {**BASE, "max_new_tokens": 9}, "INVALID_MAX_NEW_TOKENS"))
    cases.append(speech("max_new_tokens 10: one frame", {**BASE, "max_new_tokens": 10}, "ok"))
    speeds = [(0.25, "ok"), (2, "ok"), (4, "ok"), (0.2499, "INVALID_SPEED"), (4.0001, "INVALID_SPEED"),
              (0, "INVALID_SPEED"), (-1, "INVALID_SPEED"), ("1.5", "INVALID_SPEED"), (True, "INVALID_SPEED")]
    for speed, expected in speeds:
        cases.append(speech(f"a speed of {speed!r}", {**BASE, "speed": speed}, expected))
    return cases


def _nested(depth: int) -> object:
    """Objects `depth` deep."""
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def content_type_cases() -> list[Case]:
    body = json.dumps(BASE).encode()
    cases = [Case(f"Content-Type {kind!r}", raw=body, content_type=kind, expected="UNSUPPORTED_MEDIA_TYPE")
             for kind in [None, "text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                          "application/jsonx", "application/xml", ""]]
    cases += [Case(f"Content-Type {kind!r}", raw=body, content_type=kind, expected="ok")
              for kind in ["application/json; charset=utf-8", "Application/JSON"]]
    return cases


def _clip(seconds: float = 1.0, fmt: str = "WAV", silence: bool = False) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * 24000)) / 24000
    wave = np.zeros_like(t) if silence else 0.3 * np.sin(2 * np.pi * 220 * t)
    soundfile.write(buffer, wave.astype(np.float32), 24000, format=fmt)
    return buffer.getvalue()


def upload_cases() -> list[Case]:
    clip = _clip()
    cases = []
    for name in ["../up", "a b", "", "a" * 65, "x\x00", "é", "belinda/../x", ".", "-", "con"]:
        expected = "ok" if name in ("-", "con") else "INVALID_VOICE_NAME"
        cases.append(Case(f"upload named {name[:20]!r}", path="/v1/audio/voices", content_type=None,
                          files={"file": ("v.wav", clip, "audio/wav")}, data={"name": name or "", "transcript": "Hi."},
                          expected=expected))
    for label, raw in {"encoded surrogate": b"\xed\xa0\x80", "Latin-1 bytes": b"\xe9\xff"}.items():
        cases.append(Case(f"upload transcript with {label}", path="/v1/audio/voices", content_type=None,
                          files={"file": ("v.wav", clip, "audio/wav"), "name": (None, b"utf8_test"),
                                 "transcript": (None, raw)}, expected="INVALID_REFERENCE_AUDIO"))
    for label, value in BAD_TEXT.items():
        if "surrogate" in label:
            continue
        cases.append(Case(f"upload transcript with {label}", path="/v1/audio/voices", content_type=None,
                          files={"file": ("v.wav", clip, "audio/wav")}, data={"name": "ctl", "transcript": value},
                          expected="INVALID_REFERENCE_AUDIO"))
    for label, data in {"not audio": b"not audio at all", "random bytes": np.random.default_rng(0).bytes(4000),
                        "RIFF garbage": b"RIFF" + bytes(2000), "too short": _clip(0.05),
                        "an hour of FLAC silence": _clip(3600, "FLAC", silence=True)}.items():
        cases.append(Case(f"upload of {label}", path="/v1/audio/voices", content_type=None,
                          files={"file": ("v.wav", data, "audio/wav")}, data={"name": "bad_clip", "transcript": "Hi."},
                          expected="INVALID_REFERENCE_AUDIO"))
    cases.append(Case("an upload of 13 MB", path="/v1/audio/voices", content_type=None,
                      files={"file": ("v.wav", bytes(13 * MB), "audio/wav")}, data={"name": "big", "transcript": "x"},
                      expected="PAYLOAD_TOO_LARGE"))
    cases.append(Case("an upload without a file", path="/v1/audio/voices", content_type=None,
                      files={"name": (None, b"nofile"), "transcript": (None, b"Hi.")},
                      expected="INVALID_REFERENCE_AUDIO"))
    cases.append(Case("an upload as JSON", path="/v1/audio/voices", json_body={"name": "x"},
                      expected="UNSUPPORTED_MEDIA_TYPE"))
    cases.append(Case("an upload over an existing voice", path="/v1/audio/voices", content_type=None,
                      files={"file": ("v.wav", clip, "audio/wav")}, data={"name": "belinda", "transcript": "Hi."},
                      expected="VOICE_EXISTS"))
    return cases


ROUTES = [("GET", "/v1/models"), ("POST", "/v1/audio/speech"), ("GET", "/v1/audio/voices"),
          ("POST", "/v1/audio/voices"), ("DELETE", "/v1/audio/voices/belinda"), ("GET", "/metrics"),
          ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/nowhere"), ("PUT", "/v1/audio/speech")]
OPEN = [("GET", "/health"), ("GET", "/ping"), ("GET", "/ready"), ("GET", "/")]  # /ready: no model without a key


def route_cases() -> list[Case]:
    cases = []
    for method, path in ROUTES:
        for label, key in {"without a key": None, "with a wrong key": "wrong", "with a key of spaces": "   x"}.items():
            cases.append(Case(f"{method} {path} {label}", method=method, path=path, json_body=BASE, key=key,
                              expected="UNAUTHENTICATED"))
    for method, path in OPEN:
        cases.append(Case(f"{method} {path} without a key", method=method, path=path, key=None, expected="ok"))
    for path in ["/nowhere", "/v1/audio/speeches", "/v1/audio/voices/a/b", "/v1/audio/voices/..%2Fbelinda",
                 "/v1/audio/voices/belinda/../en_man", "/%00", "/v1//audio/speech"]:
        # the client may resolve a `..` itself (then another route answers): any structured outcome
        cases.append(Case(f"GET {path}", method="GET", path=path, expected=None if ".." in path else "NOT_FOUND"))
    for method, path in [("PUT", "/v1/audio/speech"), ("GET", "/v1/audio/speech"), ("DELETE", "/v1/models"),
                         ("PATCH", "/v1/audio/voices"), ("POST", "/health")]:
        cases.append(Case(f"{method} {path}", method=method, path=path, json_body=BASE, expected="METHOD_NOT_ALLOWED"))
    for name in ["nobody", "..", "a%00b", "x" * 65]:
        cases.append(Case(f"DELETE voice {name[:20]!r}", method="DELETE", path=f"/v1/audio/voices/{name}",
                          expected=None))
    return cases


def all_cases() -> list[Case]:
    return [*field_cases(), *voice_cases(), *body_cases(), *content_type_cases(), *upload_cases(), *route_cases()]


CASES = all_cases()


def send(client: httpx.Client, case: Case) -> httpx.Response:
    headers = dict(case.headers)
    if case.key is not None:
        headers["Authorization"] = f"Bearer {case.key}"
    if case.files is not None:
        return client.request(case.method, case.path, files=case.files, data=case.data, headers=headers)
    body = case.raw if case.raw is not None else (json.dumps(case.json_body).encode()
                                                  if case.json_body is not None or case.method == "POST" else None)
    if case.content_type is not None and body is not None:
        headers["Content-Type"] = case.content_type
    if case.chunked:
        return client.request(case.method, case.path, content=iter([body[i:i + 65536]
                                                                    for i in range(0, len(body), 65536)]),
                              headers=headers)
    return client.request(case.method, case.path, content=body, headers=headers)


def audio_samples(response: httpx.Response) -> int:
    """Samples of a speech response, whatever format it came in (SSE: its decoded deltas)."""
    import base64

    import av

    kind = response.headers["content-type"]
    data = response.content
    if kind.startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1]["type"] == "speech.audio.done", events[-1]
        return sum(len(base64.b64decode(e["audio"])) for e in events if e["type"] == "speech.audio.delta")
    if kind == "audio/pcm":
        return len(data) // 2
    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def check(case: Case, response: httpx.Response) -> None:
    text = response.text if not response.headers.get("content-type", "").startswith("audio/") else ""
    assert not LEAKS.search(text), (case.name, text[:1000])
    if response.status_code < 300:
        assert case.expected in (None, "ok"), (case.name, "succeeded, expected", case.expected)
        if case.path == "/v1/audio/speech":
            assert audio_samples(response) > 0, case.name
        if case.path == "/v1/audio/voices" and case.method == "POST":  # leave the library as it was
            assert response.status_code == 201
        return
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param", "error_type", "details"}, (case.name, error)
    assert error["code"] in CODES, (case.name, error)
    domain = DomainError(ErrorType(error["error_type"]), error["code"], error["message"])
    assert response.status_code == http_status(domain), (case.name, response.status_code, error)
    if case.expected not in (None, "ok"):
        assert error["code"] == case.expected, (case.name, error)
    assert case.expected != "ok", (case.name, error)


@pytest.fixture(scope="module")
def server(demo_bundle, tmp_path_factory):
    import shutil

    tmp = tmp_path_factory.mktemp("http-hostile")
    shutil.copytree(demo_bundle.root, tmp / "model")
    srv = HttpServer(tmp, MODEL_PATH=str(tmp / "model"), HIGGS_STORE="local", OUTPUT_DIR=str(tmp / "out"),
                     HIGGS_API_KEYS=KEY)
    yield srv
    srv.stop()
    guard = tmp / "netguard.log"
    assert not guard.exists() or guard.read_text() == ""


def test_the_suite_is_large_and_covers_every_field():
    assert len(CASES) >= 300, len(CASES)
    named = " ".join(case.name for case in CASES)
    for name in [*TEXT_FIELDS, *NUMERIC_FIELDS, *[path for _, path in ROUTES], "upload", "chunked", "Content-Type"]:
        assert name in named, name


def test_every_hostile_case_through_serve_http(server):
    valid = {**BASE, "input": "A valid request, between the hostile ones."}
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for index, case in enumerate(CASES):
            started = time.monotonic()
            response = send(client, case)
            assert time.monotonic() - started < 30, case.name
            check(case, response)
            if case.path == "/v1/audio/voices" and case.method == "POST" and response.status_code == 201:
                client.delete(f"/v1/audio/voices/{response.json()['id']}", headers={"Authorization": f"Bearer {KEY}"})
            if index % 25 == 24:  # the server still serves a valid request
                check(Case("valid", json_body=valid, expected="ok"), send(client, Case("valid", json_body=valid)))
        voices = client.get("/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert sorted(v["id"] for v in voices) == ["belinda", "en_man"]  # nothing added, nothing lost
