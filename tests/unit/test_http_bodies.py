"""Bodies read with their limits checked before parsing: the JSON depth measured outside
strings, strict JSON, multipart text fields decoded as strict UTF-8; the voice field's shapes;
one control-character rule (Unicode Cc) for every text field."""

import asyncio
import json
import unicodedata

import pytest

from adapters.http.bodies import (
    MAX_JSON_DEPTH,
    multipart_parts,
    nesting_depth,
    parse_json,
    read_limited,
    require_media_type,
    utf8_field,
)
from adapters.http.schema import speech_request
from core.domain.errors import DomainError, ErrorCode
from core.domain.request import SpeechRequest


@pytest.mark.parametrize("body,depth", [
    (b"{}", 1), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4), (b'"[[[[{{{"', 0), (b'{"a": "]]]\\"[[["}', 1),
    (b'["\\\\", [1]]', 2), (b"[" * 40 + b"]" * 40, 40), (b"5", 0), (b'{"a": "\\u005b"}', 1),
])
def test_nesting_depth_counts_brackets_outside_strings(body, depth):
    assert nesting_depth(body) == depth


def test_json_deeper_than_the_limit_is_refused_before_parsing():
    for depth in (MAX_JSON_DEPTH + 1, 10_000, 1_000_000):
        with pytest.raises(DomainError) as caught:
            parse_json(b"[" * depth + b"]" * depth)
        assert caught.value.code == "INVALID_INPUT"
        assert caught.value.details["constraint"] == f"max_depth={MAX_JSON_DEPTH}"
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b"[-Infinity]", b"\xff", b"{", b"{}x", b"'a'"])
def test_only_strict_json_parses(body):
    with pytest.raises(DomainError) as caught:
        parse_json(body)
    assert caught.value.code == "INVALID_INPUT"


def test_a_body_over_its_limit_is_refused_as_it_arrives():
    async def chunks(n):
        for _ in range(n):
            yield b"x" * 1000

    with pytest.raises(DomainError) as caught:
        asyncio.run(read_limited(chunks(100), None, 50_000, "a body"))
    assert caught.value.code == "PAYLOAD_TOO_LARGE"
    with pytest.raises(DomainError):  # from the declared length, before reading
        asyncio.run(read_limited(chunks(0), "60000", 50_000, "a body"))
    assert asyncio.run(read_limited(chunks(50), None, 50_000, "a body")) == b"x" * 50_000


@pytest.mark.parametrize("content_type,ok", [("application/json", True), ("application/json; charset=utf-8", True),
                                             ("APPLICATION/JSON", True), (None, False), ("text/plain", False),
                                             ("application/jsonp", False), ("", False)])
def test_the_media_type_is_required(content_type, ok):
    if ok:
        require_media_type(content_type, ("application/json",))
    else:
        with pytest.raises(DomainError) as caught:
            require_media_type(content_type, ("application/json",))
        assert caught.value.code == "UNSUPPORTED_MEDIA_TYPE"


def multipart(*parts: tuple[str, bytes, str | None]) -> tuple[bytes, str]:
    body = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += b"--XyZ\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--XyZ--\r\n", "multipart/form-data; boundary=XyZ"


def test_multipart_parts_keep_their_bytes_and_filenames():
    body, kind = multipart(("file", b"\x00\xffRIFF", "v.wav"), ("name", b"me", None), ("transcript", b"\xe9\xff", None))
    parts = multipart_parts(body, kind)
    assert parts == {"file": (b"\x00\xffRIFF", "v.wav"), "name": (b"me", None), "transcript": (b"\xe9\xff", None)}
    with pytest.raises(DomainError) as caught:
        utf8_field(parts["transcript"][0], "transcript", ErrorCode.INVALID_REFERENCE_AUDIO)
    assert caught.value.code == "INVALID_REFERENCE_AUDIO" and caught.value.details["constraint"] == "utf-8"
    assert utf8_field("é".encode(), "name", ErrorCode.INVALID_VOICE_NAME) == "é"
    for bad in (b"not multipart", b"--XyZ\r\ngarbage"):
        with pytest.raises(DomainError):
            multipart_parts(bad, "text/plain")


@pytest.mark.parametrize("voice,ok", [("belinda", True), ({"id": "belinda"}, True), ("", True), (None, True),
                                      ({}, False), ({"id": None}, False), ({"name": "belinda"}, False),
                                      ({"id": "belinda", "x": 1}, False), ({"id": 5}, False), ({"id": ""}, False),
                                      (5, False), (["belinda"], False), (True, False)])
def test_the_voice_is_a_name_or_exactly_an_id_object(voice, ok):
    body = {"input": "Hi.", "voice": voice}
    if ok:
        request, _, _ = speech_request(body)
        assert [v.name for v in request.voices] == ([] if voice in ("", None) else ["belinda"])
    else:
        with pytest.raises(DomainError) as caught:
            speech_request(body)
        assert caught.value.code == "INVALID_VOICE_NAME"


def test_every_unicode_control_character_but_tab_and_line_breaks_is_refused():
    controls = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"]
    assert len(controls) == 65 and "\x85" in controls
    for char in controls:
        text = f"a{char}b"
        if char in "\t\n\r":
            assert SpeechRequest(text).text == text
            continue
        with pytest.raises(DomainError) as caught:
            SpeechRequest(text)
        assert caught.value.code == "INVALID_TRANSCRIPT", repr(char)
    assert json.dumps(SpeechRequest("\u200b zero width, \u202e override, \u00a0 nbsp").text)  # format chars are not Cc
