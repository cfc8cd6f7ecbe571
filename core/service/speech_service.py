"""What the driving adapters (gRPC, HTTP, RunPod, the CLI) call: the use case, the voice
library and the engine's state. They hold this, never the engine or the library itself."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Iterator, TypeVar

from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.events import SpeechEvent, SpeechFailed
from core.domain.request import OutputFormat, SpeechRequest
from core.domain.voice import VoiceInfo, VoicePrompt
from core.ports.speech_engine import EngineLoad, ModelInfo, SpeechEngine
from core.ports.transcriber import Transcriber
from core.ports.voice_library import VoiceLibrary
from core.service.admission import MAX_QUEUE, Admission, Reservation
from core.service.drain import Drain, shutting_down
from core.service.generate_speech import GenerateSpeech

log = logging.getLogger(__name__)

T = TypeVar("T")


class SpeechService:
    def __init__(self, generate: GenerateSpeech, engine: SpeechEngine, voices: VoiceLibrary,
                 drain: Drain | None = None, transcriber: Transcriber | None = None,
                 max_queue: int = MAX_QUEUE) -> None:
        self._generate = generate
        self._engine = engine
        self._transcriber = transcriber  # the ASR pass's model, when one is configured
        self._voices = voices
        self._drain = drain or Drain()
        self.admission = Admission(lambda: self.capacity, max_queue)

    # -- speech -----------------------------------------------------------------------------

    def speak(self, request: SpeechRequest, cancel: threading.Event | None = None,
              received_at: float | None = None, place: Reservation | None = None) -> Iterator[SpeechEvent]:
        """The use case's events (see GenerateSpeech): never raises, a failure is an event.
        It waits its turn in the admission queue (`place`, reserved by the face when the request
        arrived, or one reserved now: QUEUE_FULL when full). A speaking session (a request with
        a feed) does not: it is idle most of its life, its faces bound how many are open, and its
        segments take turns in the engine. Once the service is shutting down, a new request
        fails at once (SHUTTING_DOWN), and one the shutdown stops fails with that code too."""
        cancel = cancel or threading.Event()
        try:
            if place is None and request.feed is None:
                place = self.admission.reserve()
            ticket = self._drain.admit(cancel)
        except DomainError as error:
            if place is not None:
                place.release()
            yield SpeechFailed(request.request_id, error)
            return
        try:
            if place is not None:
                place.wait(cancel)
                if not place.running:  # cancelled while it waited: the slot goes to the next one
                    yield SpeechFailed(request.request_id, DomainError(
                        ErrorType.SYSTEM, ErrorCode.CANCELLED, "the request was cancelled while queued"))
                    return
            for event in self._generate(request, cancel, received_at):
                if isinstance(event, SpeechFailed) and self._drain.stopped(ticket):
                    event = SpeechFailed(event.request_id, shutting_down("the request was stopped"))
                yield event
        finally:
            if place is not None:
                place.release()
            self._drain.release(ticket)

    def shut_down(self, seconds: float) -> int:
        """Take no new request (readiness turns false at once), give the ones in flight
        `seconds` to finish, then stop the rest; how many were stopped."""
        return self._drain.close(seconds)

    @property
    def shutting_down(self) -> bool:
        return self._drain.closing

    @property
    def in_flight(self) -> int:
        return self._drain.in_flight

    @property
    def output_formats(self) -> frozenset[str]:
        """The formats audio can be encoded in here."""
        return self._generate.output_formats

    def inline_bound(self, request: SpeechRequest) -> int | None:
        """The most bytes the request's audio can be when it comes back inline; None if stored."""
        return self._generate.inline_bound(request)

    def audio_bound(self, request: SpeechRequest) -> int:
        """The most bytes the request's audio can be in its format, stored or not."""
        return self._generate.audio_bound(request)

    # -- the engine -------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Taking requests: not draining, the model warm, and the ASR model too when there is one."""
        asr_ready = self._transcriber is None or self._transcriber.is_ready()
        return not self._drain.closing and self._engine.is_ready() and asr_ready

    def warm_up(self) -> ModelInfo:
        """Load and warm the model (and the ASR model) now; raises DomainError (model_error)
        when it cannot."""
        self._engine.warm_up()
        if self._transcriber is not None:
            self._transcriber.warm_up()
        return self._engine.describe()

    def asr(self) -> dict[str, Any] | None:
        """The ASR model's facts (name, device, dtype), None when there is none."""
        return None if self._transcriber is None else dict(self._transcriber.describe())

    def model(self) -> ModelInfo:
        return self._engine.describe()

    def load(self) -> EngineLoad:
        return self._engine.load()

    @property
    def capacity(self) -> int:
        """Requests that generate at once (at least one)."""
        return max(1, self._engine.load().capacity)

    def close(self) -> None:
        self._engine.close()

    # -- voices -----------------------------------------------------------------------------

    def voices(self) -> list[VoiceInfo]:
        return _library("list voices", self._voices.list)

    def add_voice(self, voice: VoicePrompt) -> VoiceInfo:
        return _library(f"add voice {voice.name!r}", lambda: self._voices.add(voice))

    def delete_voice(self, name: str) -> None:
        _library(f"delete voice {name!r}", lambda: self._voices.delete(name))


def formats_within(service: SpeechService, request: SpeechRequest, limit: int) -> list[str]:
    """The other (compressed) formats whose bound for this request is within `limit` bytes: the
    advice when its own format's is not (RunPod's inline audio, gRPC's Synthesize)."""
    return [fmt for fmt in ("mp3", "ogg", "flac") if fmt != request.output_format.value
            and fmt in service.output_formats
            and service.audio_bound(replace(request, output_format=OutputFormat(fmt))) <= limit]


def _library(what: str, call: Callable[[], T]) -> T:
    """A voice library call whose unexpected failures become an internal error without internals."""
    try:
        return call()
    except DomainError:
        raise
    except Exception as exc:
        log.exception("could not %s", what)
        raise DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                          f"could not {what} ({type(exc).__name__})") from exc
