"""WebSocket /v1/audio/speech/stream: speak while the text is still arriving (a voice agent's
LLM reply, token by token). One session is one request of the engine whose text comes segment
by segment (core/service/text_feed.py): each segment is generated with the earlier ones as
context, so the voice stays one voice, and with a seed the audio is the same however the text
was split into messages.

Client messages (JSON text frames): `session.update` {"session": {voice, voices, instructions,
response_format: pcm|wav|opus, speed, seed and the other sampling fields}} before the first text or
between segments;
`input_text.append` {"text"}; `input_text.flush`; `input_text.done`; `response.cancel`.
Server: binary frames of 16-bit 24 kHz mono PCM (`wav`: a streaming WAV header first; `opus`: Ogg
pages as they fill), and JSON
`session.created`, `segment.started` / `segment.done` {index, text, audio_start_ms,
audio_end_ms}, `response.cancelled`, `error` (OpenAI's error shape; the session goes on after a
bad message and closes after a fatal one), `session.done` {usage}."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from adapters.http.encoding import StreamEncoder
from adapters.http.schema import NAMES, error_body, speech_request
from core.domain.api_keys import is_known_key
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import AudioChunk, ChunkVerified, Progress, SpeechCompleted, SpeechFailed
from core.domain.request import MAX_TRANSCRIPT_CHARS, check_text
from core.domain.request_fields import FIELDS
from core.service.speaking import SegmentDone, SegmentStarted, SessionEvent, SessionHooks, SessionTracker
from core.service.text_feed import TextFeed
from core.service.threads import iterate_in_thread

log = logging.getLogger(__name__)

PROTOCOL = "higgs-tts.v1"
KEY_PROTOCOLS = ("bearer.", "openai-insecure-api-key.")  # browsers cannot set headers on a WebSocket
# a session's settings: the voices, scene and format, and every request field of how it is spoken
# (the sampling, the pace, the ASR pass), as the HTTP body names them
SESSION_FIELDS = {"voice", "voices", "instructions", "response_format"} | {
    NAMES[f.name] for f in FIELDS if f.into.split(".")[0] in ("sampling", "speed", "verification", "timestamps")}
MAX_MESSAGE_CHARS = MAX_TRANSCRIPT_CHARS  # one append
SAMPLE_RATE = 24000  # Higgs Audio V2's codec
SESSION_FORMATS = ("pcm", "wav", "opus")  # wav: a streaming header first; opus: Ogg pages as they fill


def offered_key(ws: WebSocket) -> tuple[str | None, str | None]:
    """(the API key, the subprotocol to answer with): from `Authorization: Bearer`, or from a
    `bearer.<key>` subprotocol (answered with higgs-tts.v1 when offered, else that one)."""
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    answer = PROTOCOL if PROTOCOL in offered else None
    scheme, _, given = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        return given.strip(), answer
    for protocol in offered:
        for prefix in KEY_PROTOCOLS:
            if protocol.startswith(prefix):
                return protocol[len(prefix):], answer or protocol
    return None, answer


@dataclass
class _State:
    config: dict[str, Any] = field(default_factory=dict)
    feed: TextFeed | None = None
    tracker: SessionTracker | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task | None = None
    cancellations: int = 0  # before any text
    fmt: str = "pcm"
    encoder: StreamEncoder | None = None
    # what earlier parts of the session (before a session.update between segments) added up to
    segments_before: int = 0
    samples_before: int = 0
    characters_before: int = 0
    switching: bool = False  # a session.update is ending the current part


class SpeechSession:
    def __init__(self, ws: WebSocket, speech, threads: ThreadPoolExecutor, hooks: SessionHooks,
                 completed: Callable[[SpeechCompleted, float], None],
                 failed: Callable[[DomainError, float], None]) -> None:
        self.ws, self.speech, self.threads, self.hooks = ws, speech, threads, hooks
        self.completed, self.failed = completed, failed
        self.state = _State()
        self.received = time.monotonic()
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        await self._json({"type": "session.created", "session": {"sample_rate": SAMPLE_RATE, "format": "pcm_s16le"}})
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await self._error(_bad("binary frames are not accepted: send JSON text messages"))
                    continue
                if not await self._handle(message.get("text") or ""):
                    break
        except WebSocketDisconnect:
            pass
        finally:
            self.state.cancel.set()  # a client that vanished frees its slot within a decode step
            if self.state.feed is not None:
                self.state.feed.done()
            if self.state.task is not None:
                await asyncio.gather(self.state.task, return_exceptions=True)
            await self._close(1000)

    async def _close(self, code: int) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                try:
                    await self.ws.close(code)
                except (RuntimeError, WebSocketDisconnect):
                    pass

    async def _handle(self, raw: str) -> bool:
        """One client message; False once the session is over."""
        try:
            message = json.loads(raw)
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise _bad('each message is a JSON object with a "type"')
            return await self._dispatch(message)
        except (ValueError, RecursionError):  # not JSON, or nested past what the parser follows
            await self._error(_bad("the message is not JSON (or is nested too deep)"))
        except DomainError as error:
            await self._error(error)
        return True

    async def _dispatch(self, message: dict[str, Any]) -> bool:
        kind, s = message["type"], self.state
        if kind == "session.update":
            session = message.get("session")
            if not isinstance(session, dict):
                raise _bad('session.update carries {"session": {...}}')
            self._request({**s.config, **session})  # checked now, used at the next text
            if s.feed is not None:
                await self._between_segments(session)
            s.config = {**s.config, **session}
            await self._json({"type": "session.updated", "session": s.config})
        elif kind == "input_text.append":
            text = message.get("text")
            check_text(text, "text", ErrorCode.INVALID_TRANSCRIPT, MAX_MESSAGE_CHARS)
            if s.feed is not None or text.strip():  # only spaces before any word start nothing
                self._start().append(text)
        elif kind == "input_text.flush":
            if s.feed is not None:  # nothing typed yet: nothing to speak
                s.feed.flush()
        elif kind == "input_text.done":
            if s.feed is None:  # nothing was said: nothing to generate
                await self._json({"type": "session.done", "usage": _usage(0, 0, 0)})
                return False
            s.feed.done()
            await asyncio.gather(s.task, return_exceptions=True) if s.task else None
            return False
        elif kind == "response.cancel":
            if s.tracker is None:
                s.cancellations += 1
                await self._json({"type": "response.cancelled", "index": None, "audio_end_ms": 0.0,
                                  "dropped_text": ""})
            else:
                await self._send_events(s.tracker.cancel())
        else:
            raise _bad(f"unknown message type {kind[:40]!r}", code=ErrorCode.INVALID_INPUT)
        return True

    async def _between_segments(self, session: dict[str, Any]) -> None:
        """A new voice, scene or sampling mid-session: allowed once every segment so far has been
        spoken and no text waits. The part spoken so far ends (its request completes); the next
        text starts a new one, on the same clock and with the segment indices going on."""
        s = self.state
        assert s.feed is not None and s.tracker is not None
        if not s.tracker.idle:
            raise _bad("session.update comes between segments: after every segment.done, before more text")
        if session.get("response_format", s.fmt) != s.fmt:
            raise _bad("response_format is set before the first text, once", code=ErrorCode.INVALID_OUTPUT_FORMAT)
        s.switching = True
        s.feed.done()
        if s.task is not None:
            await asyncio.gather(s.task, return_exceptions=True)
        s.segments_before += s.feed.segments_taken
        s.samples_before = s.tracker.samples
        s.characters_before += len(s.feed.spoken())
        s.cancellations += s.tracker.cancellations
        s.feed = s.tracker = s.task = None
        s.switching = False

    def _request(self, config: dict[str, Any]):
        unknown = sorted(set(config) - SESSION_FIELDS)
        if unknown:
            raise validation_error(ErrorCode.UNKNOWN_FIELD, f"unknown session field(s): {', '.join(unknown[:5])}",
                                   field=unknown[0], constraint="known_field", allowed=sorted(SESSION_FIELDS))
        fmt = config.get("response_format", "pcm")
        if fmt not in SESSION_FORMATS:
            raise validation_error(ErrorCode.INVALID_OUTPUT_FORMAT, "a session streams " + ", ".join(SESSION_FORMATS),
                                   field="response_format", constraint="one_of", actual=fmt,
                                   allowed=list(SESSION_FORMATS))
        body = {k: v for k, v in config.items() if k != "response_format"}
        request, _, _ = speech_request({**body, "input": "-", "response_format": "wav"})
        return request, fmt

    def _start(self) -> TextFeed:
        s = self.state
        if s.feed is None:
            request, s.fmt = self._request(s.config)
            s.feed = TextFeed()
            s.cancel = threading.Event()  # this part's (the last part's end set the one before)
            s.tracker = SessionTracker(s.feed, SAMPLE_RATE, latency=self.hooks.segment_latency,
                                       index_base=s.segments_before, samples=s.samples_before)
            request = replace(request, text="", feed=s.feed)
            if s.encoder is None:  # one stream for the whole session, its parts included
                s.encoder = StreamEncoder(s.fmt, SAMPLE_RATE)
            s.task = asyncio.create_task(self._generate(request))
        return s.feed

    async def _generate(self, request) -> None:
        s = self.state
        events = iterate_in_thread(lambda: self.speech.speak(request, s.cancel, received_at=self.received),
                                   self.threads, s.cancel)
        try:
            async for event in events:
                await self._event(event)
        except Exception as exc:  # never a silent end: the client hears why
            log.exception("session %s failed", request.request_id)
            await self._error(DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                                          f"internal error ({type(exc).__name__})"), fatal=True)

    async def _event(self, event) -> None:
        s = self.state
        tracker = s.tracker
        assert tracker is not None and s.feed is not None  # a request runs only once the text started
        if isinstance(event, AudioChunk):
            await self._send_events(tracker.audio(len(event.samples)))
            assert s.encoder is not None
            if data := s.encoder.push(event.samples):
                await self._bytes(data)
        elif isinstance(event, Progress) and event.segment is not None:
            await self._send_events(tracker.segment_ended(event.segment))
        elif isinstance(event, ChunkVerified):  # the ASR pass, on the session's clock
            r, offset = event.result, s.samples_before / SAMPLE_RATE
            await self._json({"type": "chunk.verified", **r.to_dict(),
                              "words": [w.shifted(offset).to_dict() for w in r.words]})
        elif isinstance(event, SpeechCompleted):
            self.completed(event, time.monotonic() - self.received)
            if s.switching:  # a part of the session ends: the session goes on
                return
            taken = s.segments_before + s.feed.segments_taken
            self.hooks.session_ended(taken, tracker.cancellations + s.cancellations)
            characters = s.characters_before + len(s.feed.spoken())
            if s.encoder is not None and (tail := s.encoder.finish()):
                await self._bytes(tail)
            await self._json({"type": "session.done", "request_id": event.request_id,
                              "usage": _usage(taken, tracker.ms(), characters)})
            await self._close(1000)
        elif isinstance(event, SpeechFailed):
            self.failed(event.error, time.monotonic() - self.received)
            if not s.cancel.is_set():
                await self._error(event.error, fatal=True)

    async def _send_events(self, events: list[SessionEvent]) -> None:
        for e in events:
            if isinstance(e, SegmentStarted):
                await self._json({"type": "segment.started", "index": e.index, "text": e.text,
                                  "audio_start_ms": e.audio_start_ms, "text_to_audio_ms": e.text_to_audio_ms})
            elif isinstance(e, SegmentDone):
                await self._json({"type": "segment.done", "index": e.index, "text": e.text,
                                  "audio_start_ms": e.audio_start_ms, "audio_end_ms": e.audio_end_ms})
            else:
                await self._json({"type": "response.cancelled", "index": e.index, "audio_end_ms": e.audio_end_ms,
                                  "dropped_text": e.dropped_text})

    async def _error(self, error: DomainError, fatal: bool = False) -> None:
        await self._json({"type": "error", "fatal": fatal, **error_body(error)})
        if fatal:
            self.state.cancel.set()
            await self._close(1011)

    async def _json(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps(payload))
            except (RuntimeError, WebSocketDisconnect):  # the client is gone: the receive loop ends it
                pass

    async def _bytes(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self.ws.send_bytes(data)
            except (RuntimeError, WebSocketDisconnect):
                pass


def _bad(message: str, code: ErrorCode = ErrorCode.INVALID_INPUT) -> DomainError:
    return validation_error(code, message, field="message", constraint="session_protocol")


def _usage(segments: int, audio_ms: float, characters: int) -> dict[str, Any]:
    return {"segments": segments, "audio_ms": audio_ms, "characters": characters}


MAX_SESSIONS = 64  # open at once; each holds a thread while it lasts (a slot only while it speaks)


def add_session_route(app, service) -> None:
    """The WebSocket route on the app; `service` is the HttpService (keys, the speech service,
    the metrics' hooks)."""
    threads = ThreadPoolExecutor(max_workers=MAX_SESSIONS, thread_name_prefix="speech-session")
    open_sessions = [0]

    @app.websocket("/v1/audio/speech/stream")
    async def speech_stream(ws: WebSocket) -> None:
        key, answer = offered_key(ws)
        if service.api_keys and not is_known_key(key, service.api_keys):
            await ws.close(code=1008, reason="missing or unknown API key")  # before accept: HTTP 403
            return
        if open_sessions[0] >= MAX_SESSIONS:
            await ws.close(code=1013, reason=f"{MAX_SESSIONS} sessions are open; try again later")
            return
        await ws.accept(subprotocol=answer)
        open_sessions[0] += 1
        try:
            await SpeechSession(ws, service.speech, threads, service.sessions, service.completed,
                                service.failed).run()
        finally:
            open_sessions[0] -= 1
