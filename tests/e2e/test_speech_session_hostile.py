"""Hostile and empty input to WebSocket speaking sessions (see test_speech_session.py), on the
same kind of server: every bad message gets an error and the session (or at least the server)
goes on; a session that says nothing ends cleanly."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from tests.sessions import SESSION, of, session, session_server, url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = session_server(tmp_path_factory)
    yield srv
    srv.stop()


BAD = [
    ("not JSON", "{nope", "INVALID_INPUT"),
    ("nested 100,000 deep", "[" * 100_000 + "]" * 100_000, "INVALID_INPUT"),
    ("not an object", "[1, 2]", "INVALID_INPUT"),
    ("no type", json.dumps({"text": "x"}), "INVALID_INPUT"),
    ("unknown type", json.dumps({"type": "input_audio.append"}), "INVALID_INPUT"),
    ("text not a string", json.dumps({"type": "input_text.append", "text": 5}), "INVALID_TRANSCRIPT"),
    ("a lone surrogate", '{"type": "input_text.append", "text": "\\ud800"}', "INVALID_TRANSCRIPT"),
    ("a control character", json.dumps({"type": "input_text.append", "text": "a\u0007b"}), "INVALID_TRANSCRIPT"),
    ("1 MB of text", json.dumps({"type": "input_text.append", "text": "a" * 1_000_000}), "INVALID_TRANSCRIPT"),
    ("an unknown session field", json.dumps({"type": "session.update", "session": {"voise": "x"}}), "UNKNOWN_FIELD"),
    ("a bad format", json.dumps({"type": "session.update", "session": {"response_format": "mp3"}}),
     "INVALID_OUTPUT_FORMAT"),
    ("a bad top_p", json.dumps({"type": "session.update", "session": {"top_p": 7}}), "INVALID_TOP_P"),
    ("session not an object", json.dumps({"type": "session.update", "session": "x"}), "INVALID_INPUT"),
]


def test_bad_messages_get_an_error_and_the_session_goes_on(server):
    async def run():
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            errors = []
            for name, raw, code in BAD:
                await ws.send(raw)
                reply = json.loads(await ws.recv())
                errors.append((name, reply["type"], reply["error"]["code"], reply["fatal"]))
                assert reply["error"]["type"] == "invalid_request_error" and code == reply["error"]["code"], name
            await ws.send(b"\x00\x01binary")
            reply = json.loads(await ws.recv())
            errors.append(("binary", reply["type"], reply["error"]["code"], reply["fatal"]))
            for _ in range(10_000):  # ten thousand appends, most of them empty
                await ws.send(json.dumps({"type": "input_text.append", "text": ""}))
            await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
            assert json.loads(await ws.recv())["type"] == "session.updated"
            await ws.send(json.dumps({"type": "input_text.append", "text": "Still here. "}))
            await ws.send(json.dumps({"type": "session.update", "session": SESSION}))  # too late now
            late = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "input_text.done"}))
            rest = [m async for m in ws]
        return errors, late, rest

    errors, late, rest = asyncio.run(run())
    assert all(kind == "error" and fatal is False for _, kind, _, fatal in errors), errors
    assert late["type"] == "error" and late["fatal"] is False
    events = [json.loads(m) for m in rest if isinstance(m, str)]
    assert [e["text"] for e in of(events, "segment.done")] == ["Still here."]
    assert any(isinstance(m, bytes) for m in rest)
    assert httpx.get(server.base + "/health").status_code == 200


def test_a_text_frame_that_is_not_utf8_closes_that_session_only(server):
    async def run():
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            await ws.send(b'{"type": "input_text.append", "text": "\xff\xfe"}', text=True)  # not UTF-8
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(run()) == 1007  # invalid frame payload data: the WebSocket protocol's answer
    audio, events, _ = asyncio.run(session(server, ["The server is still here. "]))
    assert audio and of(events, "session.done")


NUMERIC = ["seed", "temperature", "top_k", "top_p", "max_new_tokens", "ras_win_len", "ras_win_max_num_repeat", "speed"]
TEXTUAL = ["voice", "instructions", "response_format"]
RAW_BAD = ['"x"', "[]", "{}", "true", "-1", "1e999", "-1e999", "NaN", "Infinity", "1" + "0" * 400, "1e-400",
           '"\\ud800"', '"a\\u0007b"']


def hostile_updates() -> list[tuple[str, str]]:
    """Every session field with values no request may carry (as raw JSON: NaN and 1e999 too)."""
    cases = []
    for name in NUMERIC:
        for raw in RAW_BAD:
            if name == "seed" and raw == "1e-400":
                continue  # 0.0: a float seed, refused below with the other types
            cases.append((f"{name}={raw[:12]}", '{"type": "session.update", "session": {"%s": %s}}' % (name, raw)))
    for name in TEXTUAL:
        for raw in ['"\\ud800"', '"a\\u0007b"', "5", "[1]", "true", '"' + "x" * 3000 + '"']:
            cases.append((f"{name}={raw[:12]}", '{"type": "session.update", "session": {"%s": %s}}' % (name, raw)))
    cases.append(("voices=[5]", '{"type": "session.update", "session": {"voices": [5]}}'))
    cases.append(("voice and voices", '{"type": "session.update", "session": {"voice": "a", "voices": ["b"]}}'))
    return cases


def test_every_hostile_session_field_gets_an_error_and_the_session_goes_on(server):
    cases = hostile_updates()

    async def run():
        replies = []
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            for name, raw in cases:
                await ws.send(raw)
                replies.append((name, json.loads(await ws.recv())))
            await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
            await ws.recv()
            await ws.send(json.dumps({"type": "input_text.append", "text": "Unharmed. "}))
            await ws.send(json.dumps({"type": "input_text.done"}))
            rest = [m async for m in ws]
        return replies, rest

    replies, rest = asyncio.run(run())
    assert len(replies) == len(cases) > 120
    for name, reply in replies:
        assert reply["type"] == "error" and reply["fatal"] is False, (name, reply)
        assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["code"] != "INTERNAL_ERROR", name
    events = [json.loads(m) for m in rest if isinstance(m, str)]
    assert [e["text"] for e in of(events, "segment.done")] == ["Unharmed."]


@pytest.mark.parametrize("messages", [
    [{"type": "input_text.flush"}],
    [{"type": "input_text.append", "text": "   \n\t "}, {"type": "input_text.flush"}],
    [{"type": "input_text.append", "text": "Never finished"}, {"type": "response.cancel"}],
    [{"type": "response.cancel"}, {"type": "input_text.flush"}],
])
def test_a_session_that_says_nothing_ends_cleanly(server, messages):
    """Flushes, spaces, or text cancelled before it was cut: no audio, no error, a clean end."""
    async def run():
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            for message in messages:
                await ws.send(json.dumps(message))
            await ws.send(json.dumps({"type": "input_text.done"}))
            return [m async for m in ws]

    received = asyncio.run(run())
    events = [json.loads(m) for m in received if isinstance(m, str)]
    assert not of(events, "error"), events
    assert of(events, "session.done") and of(events, "session.done")[0]["usage"]["audio_ms"] == 0
    assert not any(isinstance(m, bytes) for m in received)
