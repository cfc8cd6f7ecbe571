"""What a speech response sends once its status line is out: the audio as it comes, OpenAI's
speech events (SSE), or (response_format srt / vtt) the captions once the audio is done."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any, AsyncIterator, Protocol

from fastapi.responses import JSONResponse, Response, StreamingResponse

from adapters.http.encoding import StreamEncoder, sealed_wav
from adapters.http.schema import error_body, http_status
from core.domain.captions import CONTENT_TYPES, render
from core.domain.errors import DomainError
from core.domain.events import AudioChunk, ChunkVerified, SpeechCompleted, SpeechFailed
from core.domain.verification import Word

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where a response reports how its request ended (the metrics)."""

    def completed(self, event: SpeechCompleted, seconds: float) -> None: ...

    def failed(self, error: DomainError, seconds: float) -> None: ...


async def audio_stream(events, encoder: StreamEncoder, service: Reporter, received: float) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, AudioChunk):
            data = encoder.push(event.samples)
            if data:
                yield data
        elif isinstance(event, SpeechCompleted):
            service.completed(event, time.monotonic() - received)
            yield encoder.finish()
        elif isinstance(event, SpeechFailed):  # the status line is gone: the transfer is cut off, so
            service.failed(event.error, time.monotonic() - received)  # no client takes it for complete
            log.warning("speech failed mid-stream: %s: %s", event.error.code, event.error.message)
            raise StreamAborted(event.error)


async def sse_stream(events, encoder: StreamEncoder, service: Reporter, received: float) -> AsyncIterator[bytes]:
    """OpenAI's speech events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
    (or an `error` event carrying the error body)."""
    frames = 0
    async for event in events:
        if isinstance(event, AudioChunk):
            data = encoder.push(event.samples)
            frames = event.frame_index + len(event.samples) * 25 // event.sample_rate
            if data:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
        elif isinstance(event, ChunkVerified):  # this service's: what the ASR pass heard in a chunk
            r = event.result
            yield _event({"type": "speech.chunk.verified", **r.to_dict(), "words": [w.to_dict() for w in r.words]})
        elif isinstance(event, SpeechCompleted):
            service.completed(event, time.monotonic() - received)
            tail = encoder.finish()
            if tail:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode("ascii")})
            prompt = int(event.metadata.get("prompt_tokens") or 0)
            frames = event.frames or frames
            yield _event({"type": "speech.audio.done", "request_id": event.request_id,
                          "cache": event.metadata.get("cache", "off"), "stop_reason": event.stop_reason,
                          "chunk_stop_reasons": event.metadata.get("chunk_stop_reasons", []),
                          **{k: event.metadata[k] for k in ("verification", "words") if k in event.metadata},
                          "usage": {"input_tokens": prompt, "output_tokens": frames, "total_tokens": prompt + frames}})
        elif isinstance(event, SpeechFailed):
            service.failed(event.error, time.monotonic() - received)
            yield _event({"type": "error", **error_body(event.error)})
            return


async def whole_response(events, encoder: StreamEncoder, service: Reporter, received: float,
                         headers: dict[str, str]) -> Response:
    """Audio known in full before the first byte (a result-cache hit) goes out whole, with its
    length, and a WAV's header carries its real sizes instead of a stream's maximum."""
    try:
        data = b"".join([chunk async for chunk in audio_stream(events, encoder, service, received)])
    except StreamAborted as aborted:
        return JSONResponse(error_body(aborted.error), status_code=http_status(aborted.error))
    if encoder.fmt == "wav":
        data = sealed_wav(data)
    return Response(data, media_type=encoder.content_type, headers=headers)


class StreamAborted(Exception):
    """A stream that failed after its status line went out."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class AudioStream(StreamingResponse):
    """A streaming response that, when its stream fails after the status line, ends without its
    terminating chunk: the server then closes the connection, and a client sees an incomplete
    transfer (httpx: RemoteProtocolError, curl: exit 18), never a short file that looks whole."""

    async def stream_response(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except StreamAborted:
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def captions_response(events, fmt: str, service: Reporter, received: float, headers: dict[str, str]) -> Response:
    """The request's captions (srt or vtt) once its audio is done: nothing has gone out yet, so
    a failure still gets its own status and error body."""
    from adapters.http.schema import http_status

    async for event in events:
        if isinstance(event, SpeechCompleted):
            service.completed(event, time.monotonic() - received)
            words = [Word.from_dict(w) for w in event.metadata.get("words", ())]
            text = render(fmt, words, event.duration_seconds)
            return Response(text.encode("utf-8"), media_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8", headers=headers)
        if isinstance(event, SpeechFailed):
            service.failed(event.error, time.monotonic() - received)
            return Response(json.dumps(error_body(event.error)).encode(), status_code=http_status(event.error),
                            media_type="application/json", headers=headers)
    raise RuntimeError("the speech events ended without a result")
