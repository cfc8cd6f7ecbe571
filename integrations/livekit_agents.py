"""higgs-tts as a LiveKit Agents TTS: the agent's LLM reply is streamed into the server's
WebSocket session (/v1/audio/speech/stream) as it is written, and the audio comes back while
the rest is still being written.

    pip install 'higgs-tts[livekit]'

    from integrations.livekit_agents import HiggsTTS
    session = AgentSession(tts=HiggsTTS("http://higgs-tts:8000", voice="belinda", api_key="sk-..."), ...)

One SynthesizeStream is one session (one voice, one seed's worth of sampling); `synthesize()`
uses the same path with the whole text."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    tts,
)

SAMPLE_RATE = 24000


class HiggsTTS(tts.TTS):
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, voice: str | None = None,
                 instructions: str | None = None, api_key: str | None = None, speed: float | None = None,
                 **sampling: Any) -> None:
        """`base_url` of `higgs-tts serve http`; `sampling`: seed, temperature, top_k, top_p,
        max_new_tokens, ..., as the HTTP API takes them."""
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True), sample_rate=SAMPLE_RATE, num_channels=1)
        scheme, _, rest = base_url.rstrip("/").partition("://")
        self.url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/audio/speech/stream"
        self.api_key = api_key
        self.session = {k: v for k, v in {"voice": voice, "instructions": instructions, "speed": speed,
                                          **sampling}.items() if v is not None}

    @property
    def model(self) -> str:
        return "higgs-audio-v2"

    @property
    def provider(self) -> str:
        return "higgs-tts"

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> tts.ChunkedStream:
        return self._synthesize_with_stream(text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> "HiggsStream":
        return HiggsStream(tts=self, conn_options=conn_options)


class HiggsStream(tts.SynthesizeStream):
    def __init__(self, *, tts: HiggsTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._higgs = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        request_id = uuid.uuid4().hex
        output_emitter.initialize(request_id=request_id, sample_rate=SAMPLE_RATE, num_channels=1,
                                  mime_type="audio/pcm", stream=True)
        output_emitter.start_segment(segment_id=request_id)
        headers = {"Authorization": f"Bearer {self._higgs.api_key}"} if self._higgs.api_key else {}
        try:
            async with websockets.connect(self._higgs.url, additional_headers=headers, max_size=None,
                                          open_timeout=self._conn_options.timeout) as ws:
                await ws.send(json.dumps({"type": "session.update", "session": self._higgs.session}))
                sender = asyncio.create_task(self._send(ws))
                try:
                    await self._receive(ws, output_emitter)
                finally:
                    await _cancel(sender)
        except websockets.InvalidStatus as exc:
            raise APIStatusError("the server refused the session", status_code=exc.response.status_code,
                                 retryable=exc.response.status_code >= 500) from exc
        except (OSError, websockets.ConnectionClosedError, asyncio.TimeoutError) as exc:
            raise APIConnectionError(f"lost the connection to higgs-tts: {exc}") from exc
        output_emitter.end_segment()

    async def _send(self, ws) -> None:
        """The LLM's text as it comes: tokens, the framework's flush, the end."""
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                await ws.send(json.dumps({"type": "input_text.flush"}))
            else:
                await ws.send(json.dumps({"type": "input_text.append", "text": item}))
        await ws.send(json.dumps({"type": "input_text.done"}))

    async def _receive(self, ws, output_emitter: tts.AudioEmitter) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                output_emitter.push(message)
                continue
            event = json.loads(message)
            if event.get("type") == "error" and event.get("fatal", True):
                error = event.get("error", {})
                raise APIError(f"{error.get('code')}: {error.get('message')}", body=error, retryable=False)
            if event.get("type") == "session.done":
                return


async def _cancel(task: asyncio.Task) -> None:
    if not task.done():
        task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # the session is over either way
        pass
