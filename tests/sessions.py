"""Speaking sessions for the tests: a server to hold them, and a WebSocket session run from
end to end (`session`), shared by the WebSocket, SpeakText and LiveKit suites."""

from __future__ import annotations

import asyncio
import json
import time

import websockets

from tests.ending_bundle import write_ending_bundle
from tests.http_helpers import HttpServer

TEXT = ("Hello there, friend. This is a reply that an agent streams while it thinks. It has a few "
        "sentences, some short! Some longer, with clauses, and a question? Yes. Done now.")
SESSION = {"voice": "belinda", "seed": 11, "max_new_tokens": 40}


def session_server(tmp_path_factory, args=(), **env) -> HttpServer:
    """`serve http` on a demo model that runs every segment to its step budget (its end token is
    all but never drawn), storing nothing, on one CPU thread."""
    bundle = write_ending_bundle(tmp_path_factory.mktemp("ending"), eos_rate=1e-6)
    return HttpServer(tmp_path_factory.mktemp("srv"), args=args, MODEL_PATH=str(bundle.root), HIGGS_STORE="none",
                      HIGGS_CPU_THREADS="1", **env)


def url(server) -> str:
    return server.base.replace("http://", "ws://") + "/v1/audio/speech/stream"


async def session(server, pieces, delay=0.0, session=SESSION, on_event=None, **connect):
    """Run one session: (audio bytes, events, seconds when the first audio came and the last text
    was sent)."""
    async with websockets.connect(url(server), max_size=None, **connect) as ws:
        events = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        events.append(json.loads(await ws.recv()))
        audio = bytearray()
        clock = {"first_audio": None, "last_text": None}

        async def read():
            async for message in ws:
                if isinstance(message, bytes):
                    if clock["first_audio"] is None:
                        clock["first_audio"] = time.monotonic()
                    audio.extend(message)
                else:
                    events.append(json.loads(message))
                    if on_event is not None:
                        await on_event(ws, events[-1])

        reader = asyncio.create_task(read())
        for piece in pieces:
            await ws.send(json.dumps({"type": "input_text.append", "text": piece}))
            if delay:
                await asyncio.sleep(delay)
        clock["last_text"] = time.monotonic()
        await ws.send(json.dumps({"type": "input_text.done"}))
        await asyncio.wait_for(reader, 120)
    return bytes(audio), events, clock


def split(text, how):
    if how == "words":
        return [w + " " for w in text.split(" ")]
    n = int(how)
    return [text[i:i + n] for i in range(0, len(text), n)]


def of(events, kind):
    return [e for e in events if e["type"] == kind]
