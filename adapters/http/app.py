"""The HTTP face of the service (FastAPI): OpenAI's `POST /v1/audio/speech` with this service's
extensions, the voice library, models, health and metrics, a playground page.

The use case is a blocking generator consumed on one thread from start to end; each request
runs it on a thread of its own and hands its events to the event loop, which streams the audio
as it comes. Audio leaves before generation ends: the response starts once the use case says
it started (so bad input still gets a proper status), then every chunk goes out encoded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from adapters.http.bodies import (
    JSON_TYPES,
    MAX_JSON_BYTES,
    multipart_parts,
    parse_json,
    read_limited,
    require_media_type,
    utf8_field,
)
from adapters.http.encoding import CONTENT_TYPES, StreamEncoder
from adapters.http.schema import MODEL_ID, error_body, http_status, retry_after, speech_request
from adapters.http.session import add_session_route
from adapters.http.streams import AudioStream, audio_stream, captions_response, sse_stream, whole_response
from core.domain.api_keys import is_known_key
from core.domain.captions import CAPTION_FORMATS
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import SpeechCompleted, SpeechFailed, SpeechStarted
from core.domain.request import MAX_REFERENCE_AUDIO_BYTES, InlineVoice, SpeechRequest
from core.domain.voice import VoiceInfo, VoicePrompt
from core.service.admission import Reservation
from core.service.speaking import SessionHooks
from core.service.speech_service import SpeechService
from core.service.threads import iterate_in_thread

log = logging.getLogger(__name__)

# the page itself holds nothing (it asks for the key); /ready says only ready or not without one
# (Kubernetes' probes carry no key)
OPEN_PATHS = frozenset({"/health", "/ping", "/ready", "/"})
PLAYGROUND = Path(__file__).with_name("playground.html")


@dataclass
class HttpService:
    speech: SpeechService
    api_keys: tuple[str, ...] = ()
    completed: Callable[[SpeechCompleted, float], None] = lambda event, seconds: None
    failed: Callable[[DomainError, float], None] = lambda error, seconds: None
    sessions: SessionHooks = field(default_factory=SessionHooks)  # the WebSocket sessions' metrics
    metrics_text: Callable[[], bytes] = lambda: b""
    routes: str = "all"  # "all", or "health": only /health, /ready, /metrics, /ping
    cors_origins: tuple[str, ...] = ()  # origins whose pages may call the API (none: same-origin only)


def create_app(service: HttpService) -> FastAPI:
    everything = service.routes == "all"
    app = FastAPI(title="higgs-tts", version="1", docs_url="/docs" if everything else None,
                  redoc_url=None, openapi_url="/openapi.json" if everything else None)
    _add_error_handling(app, service)
    if service.cors_origins:  # outermost: a preflight is answered before the key is asked for
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(service.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["X-Request-Id", "X-Result-Cache"], max_age=600)
    _add_health(app, service)
    if everything:
        _add_speech(app, service)
        add_session_route(app, service)
        _add_voices(app, service)
        app.get("/", response_class=HTMLResponse)(_playground)
    return app


class Authenticate:
    """The API keys, as plain ASGI middleware: a response passes through it message by message
    (FastAPI's `http` middleware re-streams a response and would finish one that was cut off)."""

    def __init__(self, app, keys: tuple[str, ...]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            request = Request(scope)
            if not _authorized(request, self.keys):
                error = DomainError(ErrorType.AUTHENTICATION, ErrorCode.UNAUTHENTICATED,
                                    "missing or unknown API key: send Authorization: Bearer <key>")
                await _error(error, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _add_error_handling(app: FastAPI, service: HttpService) -> None:
    if service.api_keys:
        app.add_middleware(Authenticate, keys=service.api_keys)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: DomainError):
        return _error(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # no route, wrong method: the same shape
        if exc.status_code == 404:
            return _error(DomainError(ErrorType.VALIDATION, ErrorCode.NOT_FOUND,
                                      f"no such route: {request.method} {request.url.path}",
                                      {"path": request.url.path}))
        if exc.status_code == 405:
            return _error(DomainError(ErrorType.VALIDATION, ErrorCode.METHOD_NOT_ALLOWED,
                                      f"{request.url.path} does not take {request.method}",
                                      {"path": request.url.path, "method": request.method}),
                          dict(exc.headers or {}))
        return _error(DomainError(ErrorType.VALIDATION, ErrorCode.INVALID_INPUT, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return _error(validation_error(ErrorCode.INVALID_INPUT, "the request does not match the route",
                                       field="path", constraint="route"))

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
    async def ready(request: Request):
        is_ready = service.speech.is_ready()
        body: dict[str, Any] = {"ready": is_ready}
        if not service.api_keys or _authorized(request, service.api_keys):  # the model's description
            body["model"] = service.speech.model().to_dict()
            if (asr := service.speech.asr()) is not None:  # the ASR pass's model, when there is one
                body["asr"] = asr
        return JSONResponse(body, status_code=200 if is_ready else 503)

    @app.get("/ping")
    async def ping():
        if service.speech.is_ready():
            return {"status": "healthy"}
        return Response(status_code=204)  # RunPod load balancers: initialising

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _add_speech(app: FastAPI, service: HttpService) -> None:
    admitted = service.speech.capacity + service.speech.admission.max_queue  # each with its thread
    threads = ThreadPoolExecutor(max_workers=admitted + 2, thread_name_prefix="http-speech")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "bosonai"}]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        received = time.monotonic()
        try:
            require_media_type(request.headers.get("content-type"), JSON_TYPES)
            body = await read_limited(request.stream(), request.headers.get("content-length"), MAX_JSON_BYTES,
                                      "a speech request")
            speech_req, fmt, stream_format = speech_request(parse_json(body))
        except DomainError as error:
            service.failed(error, time.monotonic() - received)
            return _error(error)
        place = service.speech.admission.reserve()  # the queue in front of the engine: QUEUE_FULL (429) now
        return await _respond(service, threads, speech_req, fmt, stream_format, received, place)


async def _respond(service: HttpService, threads: ThreadPoolExecutor, speech_req: SpeechRequest, fmt: str,
                   stream_format: str, received: float, place: Reservation) -> Response:
    """The status line once the use case has started (or failed before starting), then the
    audio as it comes."""
    cancel = threading.Event()
    events = iterate_in_thread(lambda: service.speech.speak(speech_req, cancel, received, place), threads, cancel)
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
    headers = {"X-Request-Id": speech_req.request_id, "Cache-Control": "no-store",
               "X-Result-Cache": "hit" if first.cached else "miss"}
    if fmt in CAPTION_FORMATS:
        try:
            return await captions_response(events, fmt, service, received, headers)
        finally:
            cancel.set()
            await events.aclose()
    encoder = StreamEncoder(fmt, first.sample_rate)
    if first.cached and stream_format == "audio":  # the whole audio is here: its length is known
        try:
            return await whole_response(events, encoder, service, received, headers)
        finally:
            cancel.set()
            await events.aclose()
    stream = sse_stream(events, encoder, service, received) if stream_format == "sse" else \
        audio_stream(events, encoder, service, received)
    media_type = "text/event-stream" if stream_format == "sse" else CONTENT_TYPES[fmt]
    return AudioStream(_cancel_on_exit(stream, cancel), media_type=media_type, headers=headers)


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
    """The multipart upload (file, name, transcript), checked as an inline voice is; text fields
    must be UTF-8 (a lenient parser would store bad bytes as Latin-1)."""
    require_media_type(request.headers.get("content-type"), ("multipart/form-data",))
    limit = MAX_REFERENCE_AUDIO_BYTES + 64 * 1024
    body = await read_limited(request.stream(), request.headers.get("content-length"), limit,
                              f"an upload ({MAX_REFERENCE_AUDIO_BYTES} bytes of audio and its fields)")
    parts = multipart_parts(body, request.headers.get("content-type"))
    upload = parts.get("file")
    if upload is None or upload[1] is None:
        raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "file (the voice's clip) is required",
                               field="file", constraint="required")
    name = utf8_field(parts["name"][0], "name", ErrorCode.INVALID_VOICE_NAME) if "name" in parts else ""
    transcript = (utf8_field(parts["transcript"][0], "transcript", ErrorCode.INVALID_REFERENCE_AUDIO)
                  if "transcript" in parts else "")
    try:
        return InlineVoice(upload[0], transcript, name)
    except DomainError as error:  # named as the form names them
        raise error.renamed({"ref_audio_base64": "file", "ref_audio_transcript": "transcript"}) from None


async def _playground():
    return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))


def _authorized(request: Request, keys: tuple[str, ...]) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and is_known_key(given, keys)


def _error(error: DomainError, headers: dict[str, str] | None = None) -> JSONResponse:
    seconds = retry_after(error)
    if seconds is not None:
        headers = {**(headers or {}), "Retry-After": str(seconds)}
    return JSONResponse(error_body(error), status_code=http_status(error), headers=headers)


def _voice(info: VoiceInfo) -> dict[str, Any]:
    return {"id": info.name, "object": "voice", "name": info.name, "transcript": info.transcript,
            "duration_seconds": info.duration_seconds}


async def _cancel_on_exit(stream: AsyncIterator[bytes], cancel: threading.Event) -> AsyncIterator[bytes]:
    """The client went away (or the response ended): generation stops at its next step."""
    try:
        async for data in stream:
            yield data
    finally:
        cancel.set()
