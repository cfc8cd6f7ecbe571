"""SpeakText: a speaking session over gRPC (the WebSocket's protocol in protobuf). The caller's
messages are read on a thread of their own and fed to the session's text; the use case runs on
another; the call's thread sends what both produce, in order."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from typing import Callable, Iterator

import grpc

from adapters.grpc.messages import Undecodable, encoding_of, event_message, request_from_message
from adapters.grpc.status import abort
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import AudioChunk, Progress, SpeechCompleted, SpeechFailed, SpeechStarted
from core.domain.request import MAX_TRANSCRIPT_CHARS, check_text
from core.service.speaking import Cancelled, SegmentDone, SegmentStarted, SessionHooks, SessionTracker
from core.service.speech_service import SpeechService
from core.service.text_feed import TextFeed
from higgs_tts.v1 import speech_pb2 as pb

log = logging.getLogger(__name__)

_END = object()
SAMPLE_RATE = 24000


class TextSession:
    def __init__(self, service: SpeechService, context: grpc.ServicerContext, hooks: SessionHooks,
                 completed: Callable[[SpeechCompleted, float], None],
                 failed: Callable[[DomainError, float], None], poll: float = 0.5) -> None:
        self.service, self.context, self.hooks, self.poll = service, context, hooks, poll
        self.completed, self.failed = completed, failed
        self.received = time.monotonic()
        self.cancel = threading.Event()
        self.feed = TextFeed()
        self.tracker = SessionTracker(self.feed, SAMPLE_RATE, latency=hooks.segment_latency)
        self.lock = threading.Lock()  # the tracker is told of audio and of cancels from two threads
        self.out: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, inputs: Iterator[pb.TextInput]) -> Iterator[pb.SpeechEvent]:
        request, encoding = self._config(inputs)
        if not self.context.add_callback(self.cancel.set):
            return
        threading.Thread(target=self._read, args=(inputs,), name="speak-text-input", daemon=True).start()
        threading.Thread(target=self._speak, args=(request,), name="speak-text", daemon=True).start()
        early: list = []  # a cancel's events before Started went out: they follow it
        started = False
        while True:
            try:
                item = self.out.get(timeout=self.poll)
            except queue.Empty:
                if not self.context.is_active():
                    self.cancel.set()
                    return
                continue
            if item is _END:
                return
            if isinstance(item, DomainError):
                self.cancel.set()
                abort(self.context, item)
            if isinstance(item, list) and not started:
                early += item
                continue
            yield from self._messages(item, encoding)
            if not started and isinstance(item, SpeechStarted):
                started = True
                yield from self._messages(early, encoding)

    def _config(self, inputs: Iterator[pb.TextInput]):
        first = next(inputs, None)
        if isinstance(first, Undecodable):
            abort(self.context, first.error)
        if first is None or first.WhichOneof("input") != "config":
            abort(self.context, _bad("the first message of SpeakText is `config`"))
        if first.config.text:
            abort(self.context, _bad("config.text stays empty: the text comes in `text` messages"))
        message = pb.SpeechRequest()
        message.CopyFrom(first.config)
        message.text = "-"  # checked as any request; the session's text comes later
        try:
            request = request_from_message(message)
        except DomainError as error:
            abort(self.context, error)
        if request.output is not None:
            abort(self.context, _bad("a session is not stored: leave `output` empty"))
        return replace(request, text="", feed=self.feed), encoding_of(message)

    def _read(self, inputs: Iterator[pb.TextInput]) -> None:
        """The caller's messages, as they come; the end of them is `done`."""
        try:
            for message in inputs:
                if isinstance(message, Undecodable):
                    raise message.error
                kind = message.WhichOneof("input")
                if kind == "text":
                    check_text(message.text, "text", ErrorCode.INVALID_TRANSCRIPT, MAX_TRANSCRIPT_CHARS)
                    if message.text:
                        self.feed.append(message.text)
                elif kind == "flush":
                    self.feed.flush()
                elif kind == "done":
                    break
                elif kind == "cancel":
                    with self.lock:
                        self.out.put(self.tracker.cancel())
                else:
                    raise _bad("`config` comes first, and once")
        except DomainError as error:
            self.out.put(error)
        except grpc.RpcError:  # the caller went away: the call's callback cancels
            pass
        finally:
            self.feed.done()

    def _speak(self, request) -> None:
        try:
            for event in self.service.speak(request, self.cancel, received_at=self.received):
                self.out.put(event)
        except Exception as exc:
            log.exception("SpeakText %s failed", request.request_id)
            self.out.put(DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                                     f"internal error ({type(exc).__name__})"))
        finally:
            self.out.put(_END)

    def _messages(self, item, encoding: int) -> Iterator[pb.SpeechEvent]:
        if isinstance(item, list):  # a cancel's events
            yield from (_session_message(e) for e in item)
        elif isinstance(item, AudioChunk):
            with self.lock:
                events = self.tracker.audio(len(item.samples))
            yield from (_session_message(e) for e in events)
            yield event_message(item, encoding)
        elif isinstance(item, Progress):
            if item.segment is not None:
                with self.lock:
                    events = self.tracker.segment_ended(item.segment)
                yield from (_session_message(e) for e in events)
        elif isinstance(item, SpeechFailed):
            self.failed(item.error, time.monotonic() - self.received)
            abort(self.context, item.error)
        else:
            if isinstance(item, SpeechCompleted):
                self.completed(item, time.monotonic() - self.received)
                self.hooks.session_ended(self.feed.segments_taken, self.tracker.cancellations)
            yield event_message(item, encoding)


def _session_message(event) -> pb.SpeechEvent:
    if isinstance(event, SegmentStarted):
        return pb.SpeechEvent(segment=pb.Segment(index=event.index, text=event.text, done=False,
                                                 audio_start_ms=event.audio_start_ms,
                                                 text_to_audio_ms=event.text_to_audio_ms))
    if isinstance(event, SegmentDone):
        return pb.SpeechEvent(segment=pb.Segment(index=event.index, text=event.text, done=True,
                                                 audio_start_ms=event.audio_start_ms,
                                                 audio_end_ms=event.audio_end_ms))
    assert isinstance(event, Cancelled)
    cancelled = pb.Cancelled(audio_end_ms=event.audio_end_ms, dropped_text=event.dropped_text)
    if event.index is not None:
        cancelled.index = event.index
    return pb.SpeechEvent(cancelled=cancelled)


def _bad(message: str) -> DomainError:
    return validation_error(ErrorCode.INVALID_INPUT, message, field="input", constraint="session_protocol")
