"""The request's one field table (core.domain.request_fields): it covers every part of the
domain's request, and every face reads it the same way. Requests are drawn at random (every
field given or not, values across their whole range and at its edges) and sent through the four
faces' readers: RunPod's input, the HTTP body, the gRPC message and the command line. They must
build the same SpeechRequest; a bad value in any field must be refused with the same code and
message everywhere, naming the field as that face names it."""

from __future__ import annotations

import dataclasses
import random
import string

import pytest

from adapters.grpc.messages import _CHUNK_METHOD_ENUMS, _FORMAT_ENUMS, request_from_message
from adapters.grpc.verification import _MODE_ENUMS
from adapters.http.schema import OWN_FIELDS as HTTP_OWN
from adapters.http.schema import speech_request
from adapters.runpod.schema import OWN_FIELDS as RUNPOD_OWN
from adapters.runpod.schema import read_input
from app.cli import FLAGS, build_parser, request_from_args
from core.domain.errors import DomainError
from core.domain.request import ChunkMethod, OutputFormat, SpeechRequest
from core.domain.request_fields import FACES, FIELDS, PARTS, assemble, face_names
from core.domain.verification import Timestamps, VerifyMode
from higgs_tts.v1 import speech_pb2 as pb

# -- the table covers the request ------------------------------------------------------------

FACE_OWN = {"runpod": set(RUNPOD_OWN), "http": set(HTTP_OWN), "grpc": {"voices", "encoding", "omit_audio",
                                                                       "max_result_bytes"}, "cli": set()}


def test_every_attribute_of_the_request_and_its_parts_is_one_line():
    targets = [f.into for f in FIELDS]
    assert len(targets) == len(set(targets)), "two lines land in one place"
    expected = {f.name for f in dataclasses.fields(SpeechRequest)} - set(PARTS) - {"voices", "feed", "output"}
    for part, cls in PARTS.items():
        expected |= {f"{part}.{a.name}" for a in dataclasses.fields(cls)}
    assert set(targets) == expected


@pytest.mark.parametrize("face", FACES)
def test_a_face_names_each_field_once_and_apart_from_its_own(face):
    names = list(face_names(face).values())
    assert len(names) == len(set(names))
    assert not set(names) & FACE_OWN[face]


# -- drawing requests --------------------------------------------------------------------------

BUCKETS = ["abc", "my-bucket", "a" * 63, "tts.out-1", "0x9"]


def _words(rnd: random.Random, limit: int) -> str:
    size = rnd.choice([1, 2, rnd.randint(1, 400), limit])  # every length class, the limit itself
    return "".join(rnd.choice(string.ascii_letters + "  .,'!?\n\t") for _ in range(size)).strip() or "x"


DRAW = {
    "transcript": lambda r: _words(r, 10_000),
    "scene_prompt": lambda r: r.choice(["", _words(r, 2_000)]),
    "temperature": lambda r: r.choice([2.0, 1e-6, r.uniform(1e-6, 2.0)]),
    "top_k": lambda r: r.choice([1, 1024, r.randint(1, 1024)]),
    "top_p": lambda r: r.choice([1.0, 1e-6, r.uniform(1e-6, 1.0)]),
    "max_new_tokens": lambda r: r.choice([1, 8192, r.randint(1, 8192)]),
    "seed": lambda r: r.choice([0, 2**63 - 1, r.randint(0, 2**63 - 1)]),
    "ras_win_len": lambda r: r.choice([0, 256, r.randint(0, 256)]),
    "ras_win_max_num_repeat": lambda r: r.choice([1, 256, r.randint(1, 256)]),
    "chunk_method": lambda r: r.choice([m.value for m in ChunkMethod]),
    "chunk_max_word_num": lambda r: r.choice([1, 1000, r.randint(1, 1000)]),
    "chunk_max_num_turns": lambda r: r.choice([1, 100, r.randint(1, 100)]),
    "s3_bucket": lambda r: r.choice(BUCKETS),
    "s3_key": lambda r: r.choice(["a.wav", "calls/2026/x y.flac", "é/ü.mp3", "k" * 1024]),
    "overwrite": lambda r: r.choice([True, False]),
    "output_format": lambda r: r.choice(["wav", "flac", "mp3"]),  # what HTTP's response_format can ask for
    "speed": lambda r: r.choice([0.25, 4.0, r.uniform(0.25, 4.0)]),
    "verify": lambda r: r.choice([m.value for m in VerifyMode]),
    "max_wer": lambda r: r.choice([0.0, 1.0, r.uniform(0, 1)]),
    "max_attempts": lambda r: r.randint(1, 5),
    "timestamps": lambda r: r.choice([t.value for t in Timestamps]),
    "request_id": lambda r: r.choice(["a", "job-1:2.3_x", "z" * 128]),
}


def test_every_line_has_a_draw():
    assert set(DRAW) == {f.name for f in FIELDS}


def draw(seed: int) -> dict:
    r = random.Random(seed)
    return {"transcript": DRAW["transcript"](r),
            **{f.name: DRAW[f.name](r) for f in FIELDS if f.name != "transcript" and r.random() < 0.5}}


# -- each face's reader, from values by service name -------------------------------------------

def via_runpod(values: dict) -> SpeechRequest:
    return read_input({k: v for k, v in values.items() if k != "request_id"}).request


def via_http(values: dict) -> SpeechRequest:
    names = face_names("http")
    body = {names[k]: v for k, v in values.items() if k in names}
    body["response_format"] = values.get("output_format", "wav")
    return speech_request(body)[0]


_ENUMS = {"chunking.method": lambda v: _CHUNK_METHOD_ENUMS[ChunkMethod(v)],
          "output_format": lambda v: _FORMAT_ENUMS[OutputFormat(v)],
          "verification.mode": lambda v: _MODE_ENUMS[VerifyMode(v)],
          "timestamps": lambda v: {"none": pb.TIMESTAMPS_NONE, "word": pb.TIMESTAMPS_WORD}[v]}


def grpc_message(values: dict, raw: bool = False) -> pb.SpeechRequest:
    message = pb.SpeechRequest()
    for name, path in face_names("grpc").items():
        if name not in values:
            continue
        *parents, leaf = path.split(".")
        holder = message
        for parent in parents:
            holder = getattr(holder, parent)
        value = values[name]
        setattr(holder, leaf, value if raw or path not in _ENUMS else _ENUMS[path](value))
    return message


def via_grpc(values: dict) -> SpeechRequest:
    return request_from_message(grpc_message({k: v for k, v in values.items() if k != "request_id"}))


def cli_args(values: dict) -> list[str]:
    argv = ["synth"]
    for name, flag in FLAGS.items():
        if name not in values or name == "request_id":
            continue
        value = values[name]
        if name == "overwrite":
            argv += [flag] if value else []
        else:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


def via_cli(values: dict) -> SpeechRequest:
    return request_from_args(build_parser().parse_args(cli_args(values)))


READERS = {"runpod": via_runpod, "http": via_http, "grpc": via_grpc, "cli": via_cli}


def same(request: SpeechRequest) -> SpeechRequest:
    return dataclasses.replace(request, request_id="r")


@pytest.mark.parametrize("seed", range(300))
def test_a_drawn_request_is_the_same_request_on_every_face(seed):
    values = draw(seed)
    expected = same(assemble(values))
    for face, read in READERS.items():
        assert same(read(values)) == expected, face
    # what the draw asked for is what the request holds
    assert expected.text == values["transcript"]
    if "seed" in values:
        assert expected.sampling.seed == values["seed"]
    if values.get("s3_bucket") or values.get("s3_key"):
        assert expected.output is not None and expected.output.overwrite == values.get("overwrite", False)
    else:
        assert expected.output is None  # `overwrite` alone names no target


def test_absent_fields_take_the_domain_defaults_on_every_face():
    for face, read in READERS.items():
        assert same(read({"transcript": "Hi."})) == same(SpeechRequest("Hi.")), face


# -- bad values: same code, same message, the face's own field name ------------------------------

BAD = {
    "transcript": ["", "   ", "a" * 10_001, "Hi\x00there"],
    "scene_prompt": ["x" * 2001, "a\x07b"],
    "temperature": [0.0, 2.0000001, -1.0],
    "top_k": [0, 1025, -3],
    "top_p": [0.0, 1.5],
    "max_new_tokens": [0, 8193],
    "seed": [-1],
    "ras_win_len": [-1, 257],
    "ras_win_max_num_repeat": [0, 257],
    "chunk_method": ["sentence", "AUTO"],
    "chunk_max_word_num": [0, 1001],
    "chunk_max_num_turns": [0, 101],
    "s3_bucket": ["Not_A_Bucket", "ab", "192.168.0.1", "a" * 64],
    "s3_key": ["../x.wav", "/abs.wav", "a//b", "a/", "x.json", "k" * 1025],
    "output_format": ["aiff", "WAV"],
    "speed": [0.2499, 4.0001],
    "verify": ["maybe"],
    "max_wer": [-0.1, 1.01],
    "max_attempts": [0, 6],
    "timestamps": ["char"],
}
CASES = [(name, value) for name, values in BAD.items() for value in values]
_GRPC_ENUM_FIELDS = {"chunk_method", "output_format", "verify", "timestamps"}


def refusal(read, values) -> DomainError:
    with pytest.raises(DomainError) as caught:
        read(values)
    return caught.value


@pytest.mark.parametrize("name, value", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_a_bad_value_is_refused_alike_and_named_as_each_face_names_it(name, value):
    values = {"transcript": "Hi.", name: value}
    if name == "s3_key":
        values["s3_bucket"] = "abc"
    if name == "max_wer" or name == "max_attempts":
        values["verify"] = "on"
    expected = refusal(lambda v: assemble(v), values)
    readers = dict(READERS)
    if name == "output_format":  # HTTP asks through response_format, which has its own refusal
        del readers["http"]
    if name in _GRPC_ENUM_FIELDS:  # a message carries an enum number: one it does not know
        readers["grpc"] = lambda v: request_from_message(grpc_message({**v, name: 42}, raw=True))
    for face, read in readers.items():
        error = refusal(read, values)
        assert (error.code, error.type) == (expected.code, expected.type), face
        if name not in _GRPC_ENUM_FIELDS or face != "grpc":
            assert error.message == expected.message, face
        own = FLAGS[name] if face == "cli" else face_names(face)[name]
        assert error.details.get("field") == own, (face, error.details)


@pytest.mark.parametrize("face", ["runpod", "http"])
@pytest.mark.parametrize("line", [f for f in FIELDS if f.json is not None and f.on("runpod") and f.on("http")],
                         ids=lambda f: f.name)
@pytest.mark.parametrize("value", [5, 2.5, True, ["a"], {"a": 1}])
def test_a_json_face_refuses_a_value_of_the_wrong_type_with_the_fields_code(face, line, value):
    name = line.on(face)
    body = {line.on(face) if line.name != "transcript" else face_names(face)["transcript"]: value}
    if line.name != "transcript":
        body[face_names(face)["transcript"]] = "Hi."
    read = (lambda b: read_input(b).request) if face == "runpod" else (lambda b: speech_request(b)[0])
    error = refusal(read, body)
    assert (error.code, error.details["field"], error.details["constraint"]) == (line.code, name, "type=string")


@pytest.mark.parametrize("face", ["runpod", "http"])
def test_a_json_face_names_every_unknown_field(face):
    names = ["zeta", "alpha", "a" * 500, "\u202eevil", "", "top-k", "Temperature"]
    body = {face_names(face)["transcript"]: "Hi.", **{n: 1 for n in names}}
    read = (lambda b: read_input(b).request) if face == "runpod" else (lambda b: speech_request(b)[0])
    error = refusal(read, body)
    assert len(error.details["actual"]) == len(names) and error.details["field"] == ""  # first in order
    assert all(len(str(shown)) <= 300 for shown in error.details["actual"])  # long names are cut short
    assert "and 2 more" in error.message and len(error.message) < 400
