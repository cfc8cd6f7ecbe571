"""integrations/livekit_agents.py with LiveKit Agents' own classes (its SynthesizeStream's
push_text / flush / end_input, its ChunkedStream, its AudioFrames and errors) against a running
`serve http` on a demo model: the agent's streamed reply is heard as the same audio a WebSocket
session makes for the same text and seed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit.agents import APIConnectOptions, APIError, APIStatusError

from integrations.livekit_agents import HiggsTTS
from tests.sessions import SESSION, TEXT, session, session_server, split

NO_RETRY = APIConnectOptions(max_retry=0, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = session_server(tmp_path_factory, HIGGS_API_KEYS="sk-agent")
    yield srv
    srv.stop()


def higgs(server, **overrides) -> HiggsTTS:
    options = {"voice": "belinda", "seed": SESSION["seed"], "max_new_tokens": SESSION["max_new_tokens"],
               "api_key": "sk-agent", **overrides}
    return HiggsTTS(server.base, **options)


def pcm(frames) -> bytes:
    return b"".join(bytes(frame.data) for frame in frames)


def test_a_streamed_reply_is_the_audio_of_a_websocket_session(server):
    async def agent():
        async with higgs(server) as tts:
            stream = tts.stream(conn_options=NO_RETRY)
            for token in split(TEXT, "3"):  # an LLM's tokens
                stream.push_text(token)
                await asyncio.sleep(0.001)
            stream.end_input()
            frames = [audio.frame async for audio in stream]
            await stream.aclose()
        return frames

    frames = asyncio.run(agent())
    assert frames and all(f.sample_rate == 24000 and f.num_channels == 1 for f in frames)
    expected, _, _ = asyncio.run(session(server, [TEXT], additional_headers={"Authorization": "Bearer sk-agent"}))
    heard = pcm(frames)
    # LiveKit frames the audio in 200 ms frames and pads the last one with silence
    assert heard[:len(expected)] == expected and not any(heard[len(expected):])


def test_synthesize_speaks_a_whole_text(server):
    async def run():
        async with higgs(server) as tts:
            frame = await tts.synthesize("A whole sentence, at once.", conn_options=NO_RETRY).collect()
        return frame

    frame = asyncio.run(run())
    samples = np.frombuffer(bytes(frame.data), dtype="<i2")
    assert frame.sample_rate == 24000 and len(samples) > 24000 * 0.5 and np.abs(samples).max() > 0


@pytest.mark.parametrize("overrides,expected", [
    ({"api_key": "sk-wrong"}, APIStatusError),  # refused before the session opens (403)
    ({"voice": "nobody"}, APIError),  # the server's fatal error, in LiveKit's error type
])
def test_errors_reach_the_agent_as_livekit_errors(server, overrides, expected):
    async def run():
        async with higgs(server, **overrides) as tts:
            stream = tts.stream(conn_options=NO_RETRY)
            stream.push_text("Hello there. ")
            stream.end_input()
            try:
                return [audio async for audio in stream]
            finally:
                await stream.aclose()

    with pytest.raises(expected) as failed:
        asyncio.run(run())
    if expected is APIStatusError:
        assert failed.value.status_code == 403
    else:
        assert "UNKNOWN_VOICE" in str(failed.value)
