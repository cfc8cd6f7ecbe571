"""WebSocket /v1/audio/speech/stream against a real `serve http` process (a demo model that runs
every segment to its step budget), with a real WebSocket client (`websockets`): text in pieces of
every size, timings, equality with the text sent at once, barge-in, bad messages, a client that
vanishes, keys."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.ending_bundle import write_ending_bundle
from tests.http_helpers import HttpServer
from tests.sessions import SESSION, TEXT, of, session, session_server, split, url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = session_server(tmp_path_factory)
    yield srv
    srv.stop()


def test_text_in_pieces_gives_contiguous_segments_and_the_audio_of_the_whole_text(server):
    whole, whole_events, _ = asyncio.run(session(server, [TEXT]))
    assert of(whole_events, "session.done")[0]["usage"]["segments"] == len(of(whole_events, "segment.done")) >= 3
    for how in ("1", "3", "17", "words"):
        audio, events, _ = asyncio.run(session(server, split(TEXT, how), delay=0.002))
        done = of(events, "segment.done")
        assert [e["text"] for e in done] == [e["text"] for e in of(whole_events, "segment.done")], how
        assert done[0]["audio_start_ms"] == 0
        for before, after in zip(done, done[1:]):
            assert after["audio_start_ms"] == before["audio_end_ms"] > before["audio_start_ms"]
        assert done[-1]["audio_end_ms"] == pytest.approx(len(audio) / 2 / 24, abs=0.01)
        assert audio == whole, how  # the same seed: the same audio however the text came
        assert " ".join(e["text"] for e in done).split() == TEXT.split()


def test_the_first_sentence_is_heard_before_the_last_text_is_sent(server):
    pieces = split(TEXT * 2, "17")
    audio, events, clock = asyncio.run(session(server, pieces, delay=0.15))
    assert audio and clock["first_audio"] < clock["last_text"]
    assert of(events, "segment.started")[0]["index"] == 0


def test_a_cancel_stops_the_segment_frees_the_slot_and_the_session_goes_on(server):
    long_session = {**SESSION, "max_new_tokens": 1500}  # a segment that would speak for a minute

    async def run():
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": long_session}))
            await ws.recv()
            await ws.send(json.dumps({"type": "input_text.append", "text": "word " * 200 + "end. And more."}))
            while not isinstance(await ws.recv(), bytes):  # the first audio: it is speaking
                pass
            await ws.send(json.dumps({"type": "response.cancel"}))
            sent = time.monotonic()
            cancelled = None
            while cancelled is None:
                message = await ws.recv()
                if isinstance(message, str) and json.loads(message)["type"] == "response.cancelled":
                    cancelled = json.loads(message)
            stopped = time.monotonic() - sent
            busy = await asyncio.to_thread(slots_busy, server)
            await ws.send(json.dumps({"type": "input_text.append", "text": "After the interruption. Yes."}))
            await ws.send(json.dumps({"type": "input_text.done"}))
            rest = [m async for m in ws]
        return cancelled, stopped, busy, rest

    cancelled, stopped, busy, rest = asyncio.run(run())
    assert cancelled["index"] == 0 and cancelled["audio_end_ms"] < 60_000 and stopped < 5
    assert busy == 0  # the slot is free
    texts = [json.loads(m) for m in rest if isinstance(m, str)]
    assert [e["text"] for e in of(texts, "segment.done")] == ["After the interruption.", "Yes."]
    assert of(texts, "session.done")
    assert metric(server, "higgs_tts_session_cancellations_total") >= 1


def slots_busy(server) -> float:
    deadline = time.monotonic() + 1.0
    while True:
        value = metric(server, "higgs_tts_slots_busy")
        if value == 0 or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def metric(server, name) -> float:
    text = httpx.get(server.base + "/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_a_client_that_vanishes_frees_its_slot(server):
    async def run():
        ws = await websockets.connect(url(server), max_size=None)
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {**SESSION, "max_new_tokens": 1500}}))
        await ws.recv()
        await ws.send(json.dumps({"type": "input_text.append", "text": "word " * 200 + "end. More."}))
        while not isinstance(await ws.recv(), bytes):
            pass
        ws.transport.abort()  # gone, without a closing handshake

    asyncio.run(run())
    assert slots_busy(server) == 0
    audio, events, _ = asyncio.run(session(server, ["The next one works."]))
    assert audio and of(events, "session.done")


def test_done_without_text_ends_the_session_with_no_audio(server):
    audio, events, _ = asyncio.run(session(server, []))
    assert audio == b"" and of(events, "session.done")[0]["usage"]["segments"] == 0


def test_segment_latency_and_sessions_are_counted(server):
    asyncio.run(session(server, ["Counted. "]))
    assert metric(server, "higgs_tts_segment_first_audio_seconds_count") >= 1
    assert metric(server, "higgs_tts_sessions_total") >= 1


def test_keys_in_the_header_or_the_subprotocol(tmp_path):
    bundle = write_ending_bundle(tmp_path / "b", eos_rate=1e-6)
    srv = HttpServer(tmp_path / "s", MODEL_PATH=str(bundle.root), HIGGS_STORE="none", HIGGS_API_KEYS="sk-one,sk-two")
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(session(srv, ["Hi."]))
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(session(srv, ["Hi."], additional_headers={"Authorization": "Bearer sk-wrong"}))
        header = {"Authorization": "Bearer sk-one"}
        audio, events, _ = asyncio.run(session(srv, ["Hi there."], additional_headers=header))
        assert audio and of(events, "session.done")

        async def browser():
            async with websockets.connect(url(srv), subprotocols=["higgs-tts.v1", "bearer.sk-two"]) as ws:
                assert ws.subprotocol == "higgs-tts.v1"  # the key is never echoed
                return json.loads(await ws.recv())["type"]

        assert asyncio.run(browser()) == "session.created"
    finally:
        srv.stop()


def test_a_session_at_another_speed_keeps_its_timings_whole(server):
    plain, _, _ = asyncio.run(session(server, [TEXT]))
    fast, events, _ = asyncio.run(session(server, split(TEXT, "17"), session={**SESSION, "speed": 2.0}))
    done = of(events, "segment.done")
    for before, after in zip(done, done[1:]):
        assert after["audio_start_ms"] == before["audio_end_ms"]
    assert done[-1]["audio_end_ms"] == pytest.approx(len(fast) / 2 / 24, abs=0.01)  # every sample in a segment
    assert len(fast) == pytest.approx(len(plain) / 2, rel=0.03)


def test_session_update_between_segments_changes_the_voice_and_the_clock_goes_on(server):
    second = {"voice": "en_man", "seed": 5, "max_new_tokens": 40}

    async def run():
        async with websockets.connect(url(server), max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
            await ws.recv()
            await ws.send(json.dumps({"type": "input_text.append", "text": "The first part."}))
            await ws.send(json.dumps({"type": "input_text.flush"}))
            audio, events = bytearray(), []
            while not any(e.get("type") == "segment.done" for e in events):
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio.extend(message)
                else:
                    events.append(json.loads(message))
            first_part = len(audio)
            await ws.send(json.dumps({"type": "session.update", "session": second}))
            await ws.send(json.dumps({"type": "input_text.append", "text": "The second part. "}))
            await ws.send(json.dumps({"type": "input_text.done"}))
            async for message in ws:
                if isinstance(message, bytes):
                    audio.extend(message)
                else:
                    events.append(json.loads(message))
        return bytes(audio), first_part, events

    audio, first_part, events = asyncio.run(run())
    done = of(events, "segment.done")
    assert [(e["index"], e["text"]) for e in done] == [(0, "The first part."), (1, "The second part.")]
    assert done[1]["audio_start_ms"] == done[0]["audio_end_ms"] == pytest.approx(first_part / 2 / 24, abs=0.01)
    assert of(events, "session.updated")[-1]["session"]["voice"] == "en_man"
    assert of(events, "session.done"), [e["type"] for e in events]
    assert of(events, "session.done")[0]["usage"]["segments"] == 2
    alone, _, _ = asyncio.run(session(server, ["The second part. "], session=second))
    assert audio[first_part:] == alone  # the new voice, as a session of its own would speak it


def test_wav_and_opus_framings_carry_the_same_audio(server):
    import io

    import av
    import numpy as np

    pcm, _, _ = asyncio.run(session(server, ["Framed two ways. "]))
    wav, _, _ = asyncio.run(session(server, ["Framed two ways. "], session={**SESSION, "response_format": "wav"}))
    assert wav[:4] == b"RIFF" and wav[44:] == pcm
    opus_session = {**SESSION, "response_format": "opus"}
    opus, events, _ = asyncio.run(session(server, ["Framed two ways. "], session=opus_session))
    assert opus[:4] == b"OggS"
    with av.open(io.BytesIO(opus)) as container:
        frames = list(container.decode(audio=0))
    seconds = sum(f.samples for f in frames) / frames[0].sample_rate
    assert np.isfinite(np.concatenate([f.to_ndarray().reshape(-1) for f in frames])).all()
    assert seconds == pytest.approx(len(pcm) / 2 / 24000, abs=0.05)
    assert of(events, "session.done")
