"""The HTTP face of the service (FastAPI): OpenAI's `POST /v1/audio/speech` with this service's
extensions, the voice library, models, health and metrics, a playground page.

The use case is a blocking generator consumed on one thread from start to end; each request
runs it on a thread of its own and hands its events to the event loop, which streams the audio
as it comes. Audio leaves before generation ends: the response starts once the use case says
it started (so bad input still gets a proper status), then every chunk goes out encoded."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from adapters.http.encoding import CONTENT_TYPES, StreamEncoder
from adapters.http.schema import MODEL_ID, error_body, http_status, speech_request
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import AudioChunk, SpeechCompleted, SpeechEvent, SpeechFailed, SpeechStarted
from core.domain.request import MAX_REFERENCE_AUDIO_BYTES, InlineVoice, SpeechRequest
from core.domain.voice import VoiceInfo, VoicePrompt
from core.service.speech_service import SpeechService
from core.service.threads import iterate_in_thread

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/ping", "/"})  # the page itself holds nothing; it asks for the key
PLAYGROUND = Path(__file__).with_name("playground.html")
MAX_QUEUE = 8  # requests that may wait beyond the ones the engine decodes together


@dataclass
class HttpService:
    speech: SpeechService
    api_keys: tuple[str, ...] = ()
    max_queue: int = MAX_QUEUE
    completed: Callable[[SpeechCompleted, float], None] = lambda event, seconds: None
    failed: Callable[[DomainError, float], None] = lambda error, seconds: None
    metrics_text: Callable[[], bytes] = lambda: b""
    routes: str = "all"  # "all", or "health": only /health, /ready, /metrics, /ping
    _admitted: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)


def create_app(service: HttpService) -> FastAPI:
    everything = service.routes == "all"
    app = FastAPI(title="higgs-tts", version="1", docs_url="/docs" if everything else None,
                  redoc_url=None, openapi_url="/openapi.json" if everything else None)
    _add_error_handling(app, service)
    _add_health(app, service)
    if everything:
        _add_speech(app, service)
        _add_voices(app, service)
        app.get("/", response_class=HTMLResponse)(_playground)
    return app


def _add_error_handling(app: FastAPI, service: HttpService) -> None:
    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if service.api_keys and request.url.path not in OPEN_PATHS and not _authorized(request, service.api_keys):
            error = DomainError(ErrorType.AUTHENTICATION, ErrorCode.UNAUTHENTICATED,
                                "missing or unknown API key: send Authorization: Bearer <key>")
            return _error(error, {"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: DomainError):
        return _error(error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # a bug in one request: its own 500
        log.exception("request to %s failed", request.url.path)
        return _error(DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                                  f"internal error ({type(exc).__name__}); the server's log has the details",
                                  {"exception": type(exc).__name__}))


def _add_health(app: FastAPI, service: HttpService) -> None:
    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        is_ready = service.speech.is_ready()
        return JSONResponse({"ready": is_ready, "model": service.speech.model().to_dict()},
                            status_code=200 if is_ready else 503)

    @app.get("/ping")
    async def ping():
        if service.speech.is_ready():
            return {"status": "healthy"}
        return Response(status_code=204)  # RunPod load balancers: initialising

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _add_speech(app: FastAPI, service: HttpService) -> None:
    capacity = service.speech.capacity
    threads = ThreadPoolExecutor(max_workers=capacity + service.max_queue + 2, thread_name_prefix="http-speech")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "bosonai"}]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        received = time.monotonic()
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error(validation_error(ErrorCode.INVALID_INPUT, "the body is not JSON", field="body",
                                           constraint="type=json"))
        try:
            speech_req, fmt, stream_format = speech_request(body)
        except DomainError as error:
            service.failed(error, time.monotonic() - received)
            return _error(error)
        _admit(service, capacity)
        return await _respond(service, threads, speech_req, fmt, stream_format, received)


async def _respond(service: HttpService, threads: ThreadPoolExecutor, speech_req: SpeechRequest, fmt: str,
                   stream_format: str, received: float) -> Response:
    """The status line once the use case has started (or failed before starting), then the
    audio as it comes."""
    cancel = threading.Event()
    events = iterate_in_thread(lambda: _admitted_events(service, speech_req, cancel, received), threads, cancel)
    try:
        first = await events.__anext__()
        while not isinstance(first, (SpeechStarted, SpeechFailed)):
            first = await events.__anext__()
    except BaseException:
        cancel.set()
        await events.aclose()
        raise
    if isinstance(first, SpeechFailed):
        await events.aclose()
        service.failed(first.error, time.monotonic() - received)
        return _error(first.error)
    encoder = StreamEncoder(fmt, first.sample_rate)
    stream = _sse(events, encoder, service, received) if stream_format == "sse" else \
        _audio(events, encoder, service, received)
    media_type = "text/event-stream" if stream_format == "sse" else CONTENT_TYPES[fmt]
    return StreamingResponse(_cancel_on_exit(stream, cancel), media_type=media_type,
                             headers={"X-Request-Id": speech_req.request_id, "Cache-Control": "no-store",
                                      "X-Result-Cache": "hit" if first.cached else "miss"})


def _add_voices(app: FastAPI, service: HttpService) -> None:
    @app.get("/v1/audio/voices")
    async def list_voices():
        infos = await asyncio.to_thread(service.speech.voices)
        return {"object": "list", "data": [_voice(info) for info in infos]}

    @app.post("/v1/audio/voices", status_code=201)
    async def add_voice(request: Request):
        clip = await _uploaded_voice(request)
        info = await asyncio.to_thread(service.speech.add_voice, VoicePrompt(clip.name, clip.transcript, clip.audio))
        return _voice(info)

    @app.delete("/v1/audio/voices/{name}")
    async def delete_voice(name: str):
        await asyncio.to_thread(service.speech.delete_voice, name)
        return {"id": name, "object": "voice", "deleted": True}


async def _uploaded_voice(request: Request) -> InlineVoice:
    """The multipart upload (file, name, transcript), checked as an inline voice is."""
    limit = MAX_REFERENCE_AUDIO_BYTES + 64 * 1024
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise validation_error(ErrorCode.PAYLOAD_TOO_LARGE, f"an upload is at most {MAX_REFERENCE_AUDIO_BYTES} "
                               "bytes of audio", field="file", constraint=f"max_bytes={MAX_REFERENCE_AUDIO_BYTES}",
                               actual_bytes=int(length))
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
    except Exception:
        raise validation_error(ErrorCode.INVALID_INPUT, "send multipart/form-data with the fields file, name "
                               "and transcript", field="body", constraint="multipart/form-data") from None
    upload, name, transcript = form.get("file"), form.get("name"), form.get("transcript")
    if upload is None or isinstance(upload, str):
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "file (the voice's clip) is required",
                               field="file", constraint="required")
    audio = await upload.read(MAX_REFERENCE_AUDIO_BYTES + 1)
    await form.close()
    return InlineVoice(audio, transcript if isinstance(transcript, str) else "", name if isinstance(name, str) else "")


async def _playground():
    return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))


def _authorized(request: Request, keys: tuple[str, ...]) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    match = False
    for key in keys:  # every key compared, in constant time: the timing says nothing
        match |= hmac.compare_digest(given.strip().encode(), key.encode())
    return match


def _error(error: DomainError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=http_status(error), headers=headers)


def _voice(info: VoiceInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "voice", "name": info.name, "transcript": info.transcript,
            "duration_seconds": info.duration_seconds}


def _admit(service: HttpService, capacity: int) -> None:
    with service._lock:
        if service._admitted >= capacity + service.max_queue:
            raise DomainError(ErrorType.SYSTEM, ErrorCode.QUEUE_FULL,
                              f"{service.max_queue} requests are already waiting; retry later",
                              {"max_queue": service.max_queue})
        service._admitted += 1


def _admitted_events(service: HttpService, request: SpeechRequest, cancel: threading.Event,
                     received: float) -> Iterator[SpeechEvent]:
    """The use case's events; the request leaves the admitted count when they end."""
    try:
        yield from service.speech.speak(request, cancel, received_at=received)
    finally:
        with service._lock:
            service._admitted -= 1


async def _cancel_on_exit(stream: AsyncIterator[bytes], cancel: threading.Event) -> AsyncIterator[bytes]:
    """The client went away (or the response ended): generation stops at its next step."""
    try:
        async for data in stream:
            yield data
    finally:
        cancel.set()


async def _audio(events, encoder: StreamEncoder, service: HttpService, received: float) -> AsyncIterator[bytes]:
    async for event in events:
        if isinstance(event, AudioChunk):
            data = encoder.push(event.samples)
            if data:
                yield data
        elif isinstance(event, SpeechCompleted):
            service.completed(event, time.monotonic() - received)
            yield encoder.finish()
        elif isinstance(event, SpeechFailed):  # the status line is gone: the stream ends early
            service.failed(event.error, time.monotonic() - received)
            log.warning("speech failed mid-stream: %s: %s", event.error.code, event.error.message)
            return


async def _sse(events, encoder: StreamEncoder, service: HttpService, received: float) -> AsyncIterator[bytes]:
    """OpenAI's speech events: `speech.audio.delta` with base64 audio, then `speech.audio.done`
    (or an `error` event carrying the error body)."""
    frames = 0
    async for event in events:
        if isinstance(event, AudioChunk):
            data = encoder.push(event.samples)
            frames = event.frame_index + len(event.samples) * 25 // event.sample_rate
            if data:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
        elif isinstance(event, SpeechCompleted):
            service.completed(event, time.monotonic() - received)
            tail = encoder.finish()
            if tail:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode("ascii")})
            prompt = int(event.metadata.get("prompt_tokens") or 0)
            frames = event.frames or frames
            yield _event({"type": "speech.audio.done", "request_id": event.request_id,
                          "cache": event.metadata.get("cache", "off"),
                          "usage": {"input_tokens": prompt, "output_tokens": frames, "total_tokens": prompt + frames}})
        elif isinstance(event, SpeechFailed):
            service.failed(event.error, time.monotonic() - received)
            yield _event({"type": "error", **error_body(event.error)})
            return


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
