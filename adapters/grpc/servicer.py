"""SpeechService: each call becomes a SpeechRequest, runs on the generation thread, and its
domain events come back as stream messages (StreamSpeech) or one result (Synthesize)."""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from typing import Callable, Iterator, NoReturn

import grpc

from adapters.grpc.generation import GenerationQueue
from adapters.grpc.messages import (
    Undecodable,
    encoding_of,
    event_message,
    request_from_message,
    result_message,
    voices_message,
)
from adapters.grpc.speak_text import TextSession
from adapters.grpc.status import abort
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import SpeechCompleted, SpeechEvent, SpeechFailed
from core.domain.request import SpeechRequest
from core.service.admission import Reservation
from core.service.drain import shutting_down
from core.service.outcome import collect
from core.service.speaking import SessionHooks
from core.service.speech_service import SpeechService, formats_within
from higgs_tts.v1 import speech_pb2 as pb
from higgs_tts.v1 import speech_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_END = object()
GRPC_RECEIVE_DEFAULT = 4 * 1024 * 1024  # grpc.max_receive_message_length's default, in every client
RESULT_OVERHEAD = 64 * 1024  # a SpeechResult's metadata beside its audio, and 16 bytes per character


class SpeechServicer(pb_grpc.SpeechServiceServicer):
    def __init__(
        self,
        service: SpeechService,
        generation: GenerationQueue,
        poll_interval: float = 0.5,
        completed: Callable[[SpeechCompleted, float], None] = lambda event, seconds: None,
        failed: Callable[[DomainError, float], None] = lambda error, seconds: None,
        sessions: SessionHooks | None = None,
        max_sessions: int = 16,
    ) -> None:
        """`completed` and `failed` hear every request's end (the metrics), with its seconds."""
        self._service = service
        self._generation = generation
        self._poll_interval = poll_interval
        self._completed, self._failed = completed, failed
        self._sessions = sessions or SessionHooks()
        self._session_slots = threading.BoundedSemaphore(max_sessions)
        self._max_sessions = max_sessions

    def StreamSpeech(self, message: pb.SpeechRequest, context: grpc.ServicerContext):
        request, encoding = _parse(message, context)
        for event in self._run(request, context):
            if isinstance(event, SpeechFailed):
                abort(context, event.error)
            yield event_message(event, encoding)

    def Synthesize(self, message: pb.SpeechRequest, context: grpc.ServicerContext) -> pb.SpeechResult:
        request, _ = _parse(message, context)
        if not message.omit_audio:
            limit = message.max_result_bytes if message.HasField("max_result_bytes") else GRPC_RECEIVE_DEFAULT
            try:
                error = self._too_large(request, limit)
            except DomainError as refused:  # the engine's own refusal of the text
                error = refused
            if error is not None:
                self._refuse(context, error, time.monotonic())
        try:
            outcome = collect(self._run(request, context))
        except DomainError as error:
            abort(context, error)
        return result_message(outcome.result(), outcome.stored, omit_audio=message.omit_audio)

    def SpeakText(self, inputs: Iterator[pb.TextInput], context: grpc.ServicerContext):
        """A speaking session (adapters/grpc/speak_text.py): on the call's own threads, not the
        generation queue's (a session waits for its text most of the time)."""
        received = time.monotonic()
        self._admissible(context, received)
        if not self._session_slots.acquire(blocking=False):  # the server's threads stay free for the rest
            self._refuse(context, DomainError(ErrorType.SYSTEM, ErrorCode.QUEUE_FULL,
                                              f"{self._max_sessions} SpeakText sessions are open; retry later",
                                              {"max_sessions": self._max_sessions}), received)
        try:
            session = TextSession(self._service, context, self._sessions, self._completed, self._failed,
                                  self._poll_interval)
            yield from session.run(inputs)
        finally:
            self._session_slots.release()

    def ListVoices(self, message: pb.ListVoicesRequest, context: grpc.ServicerContext):
        try:
            return voices_message(self._service.voices())
        except DomainError as error:
            abort(context, error)

    def _too_large(self, request: SpeechRequest, limit: int) -> DomainError | None:
        """Before any work: a result whose audio could pass what the client receives (gRPC's
        clients refuse a message over 4 MiB by default, after all the work) is refused now."""
        bound = self._service.audio_bound(request)  # stored or not, the result carries the audio
        overhead = RESULT_OVERHEAD + 16 * len(request.text)  # metadata: chunks, transcripts, words
        if bound + overhead <= limit:
            return None
        fits = formats_within(self._service, request, limit - overhead)
        advice = f"output_format {' or '.join(f.upper() for f in fits)} fits (compressed); or " if fits else ""
        return validation_error(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"this request's audio can be up to {bound} bytes of {request.output_format.value}, over the {limit} "
            f"bytes a client receives in one message (max_result_bytes; gRPC's default is 4 MiB): {advice}use "
            "StreamSpeech, which sends the audio in pieces; or raise the channel's grpc.max_receive_message_length "
            "and send it as max_result_bytes; or store it (output, omit_audio)",
            field="max_result_bytes", constraint=f"max_bytes={limit}", actual_max_bytes=bound, formats_that_fit=fits)

    def _run(self, request: SpeechRequest, context: grpc.ServicerContext) -> Iterator[SpeechEvent]:
        """Queue the request for the generation thread and relay its events as they come.

        The call's end (client cancel, deadline, server shutdown) sets the request's cancel
        event, which the engine checks between decode steps."""
        received_at = time.monotonic()
        self._admissible(context, received_at)
        cancel = threading.Event()
        if not context.add_callback(cancel.set):
            return  # the call has already ended
        events: queue.SimpleQueue = queue.SimpleQueue()
        # the caller's trace (made current by the tracing interceptor) goes with the job
        trace_context = contextvars.copy_context()
        place = None
        try:
            place = self._service.admission.reserve()  # the service's one queue: QUEUE_FULL now
            self._generation.submit(
                lambda: trace_context.run(self._generate_into, request, cancel, received_at, events, place)
            )
        except DomainError as error:  # the queue is full, or the server is closing
            if place is not None:
                place.release()
            self._refuse(context, error, received_at)
        while True:
            try:
                event = events.get(timeout=self._poll_interval)
            except queue.Empty:
                if not context.is_active():  # the callback is the main path; this one is a net
                    cancel.set()
                    return
                continue
            if event is _END:
                return
            yield event

    def _generate_into(
        self,
        request: SpeechRequest,
        cancel: threading.Event,
        received_at: float,
        events: queue.SimpleQueue,
        place: Reservation,
    ) -> None:
        """On the generation thread: run the use case to its end, whether or not anyone is still
        listening (a cancelled request ends within a step)."""
        rid = request.request_id
        try:
            if cancel.is_set():  # gave up while waiting: the GPU goes to the next one
                log.info("request %s: cancelled while queued", rid)
                place.release()
                events.put(SpeechFailed(rid, DomainError(
                    ErrorType.SYSTEM, ErrorCode.CANCELLED, "request was cancelled while queued")))
                return
            for event in self._service.speak(request, cancel, received_at=received_at, place=place):
                events.put(event)
                if isinstance(event, (SpeechCompleted, SpeechFailed)):
                    self._observe(event, received_at)
                if isinstance(event, SpeechCompleted):
                    log.info(
                        "request %s: %.2fs of audio, %d frames, rtf %.3f, queued %.3fs, total %.3fs",
                        rid, event.duration_seconds, event.frames, event.real_time_factor,
                        event.timings.queue, event.timings.total,
                    )
                elif isinstance(event, SpeechFailed):
                    log.info("request %s failed: %s: %s", rid, event.error.code, event.error.message)
        except Exception as exc:
            log.exception("request %s: unexpected failure", rid)
            events.put(
                SpeechFailed(rid, DomainError(
                    ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                    f"internal error ({type(exc).__name__}); the server's log has the details"))
            )
        finally:
            events.put(_END)

    def _admissible(self, context: grpc.ServicerContext, received_at: float) -> None:
        """Refuses the call (UNAVAILABLE) while the server is closing or the model loading."""
        if self._service.shutting_down:
            self._refuse(context, shutting_down(), received_at)
        if not self._service.is_ready():
            self._refuse(context, DomainError(
                ErrorType.MODEL, ErrorCode.MODEL_NOT_READY,
                "the model is still loading; retry when the health service says SERVING"), received_at)

    def _refuse(self, context: grpc.ServicerContext, error: DomainError, received_at: float) -> NoReturn:
        self._observe(SpeechFailed("", error), received_at)
        abort(context, error)

    def _observe(self, event: SpeechCompleted | SpeechFailed, received_at: float) -> None:
        seconds = time.monotonic() - received_at
        try:
            if isinstance(event, SpeechCompleted):
                self._completed(event, seconds)
            else:
                self._failed(event.error, seconds)
        except Exception:  # the metrics never fail a request
            log.exception("could not record a request's end")


def _parse(message: pb.SpeechRequest | Undecodable, context: grpc.ServicerContext) -> tuple[SpeechRequest, int]:
    if isinstance(message, Undecodable):
        abort(context, message.error)
    try:
        return request_from_message(message), encoding_of(message)
    except DomainError as error:
        abort(context, error)
