"""The engine's side of generating speech: getting the engine (and the ASR model) ready for a
request, and turning the engine's events into the request's events (audio through the stretcher,
each chunk's verification), ending in what they added up to (`Synthesized`). A result-cache hit
is replayed as the engine would have streamed it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Iterator, TypeVar

from core.domain.audio import FRAME_RATE, Samples
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import AudioChunk, ChunkVerified, Progress, SpeechEvent
from core.domain.request import SpeechRequest
from core.domain.verification import Timestamps, Word
from core.domain.voice import VoicePrompt
from core.ports.speech_engine import EngineAudio, EngineDone, EngineEvent, EngineProgress, EngineTimings, SpeechEngine
from core.ports.time_stretcher import TimeStretcher
from core.ports.tracer import Span, Tracer
from core.service.audio_out import AudioOut
from core.service.result_cache import CachedResult
from core.service.verification import Asr, ChunkVerifier, asr_not_configured

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Synthesized:
    """One request's audio and how it was made: by the engine, or replayed from the result cache."""

    samples: Samples
    sample_rate: int
    frames: int
    stop_reason: str
    text_output: str
    timings: EngineTimings
    metadata: dict[str, Any]  # the engine's work, or which request the cached audio came from
    first_audio: float | None  # seconds from the start of generation; None: no audio
    seconds: float  # of generation
    words: list[Word] | None = None  # the words heard, when the request asked for their timings


class Synthesizer:
    """The engine, with the parts that act on its audio: the stretcher (`speed`) and the ASR pass."""

    def __init__(self, engine: SpeechEngine, tracer: Tracer, clock: Callable[[], float],
                 stretcher: TimeStretcher | None = None, asr: Asr | None = None) -> None:
        self._engine, self._tracer, self._clock = engine, tracer, clock
        self._stretcher, self._asr = stretcher, asr

    def check(self, request: SpeechRequest) -> None:
        """Before any work: what the request asks of the parts this deployment has."""
        if request.needs_asr and self._asr is None:
            raise asr_not_configured(request)
        if request.speed != 1.0 and self._stretcher is None:
            raise validation_error(ErrorCode.INVALID_SPEED, "speed other than 1.0 is not available here",
                                   field="speed", constraint="equals=1.0", actual=request.speed)

    def prepare(self, request: SpeechRequest, voices: list[VoicePrompt]) -> float:
        """The engine's own checks (model loaded, voice clips readable, the text fits as it is
        chunked) and the ASR model loaded when the request needs it, before the first byte goes
        out; the seconds it spent loading the models."""
        with self._tracer.span("speech.prepare"):
            seconds = _engine_call(request, lambda: self._engine.prepare(request.synthesis, voices))
            if self._asr is not None and request.needs_asr:
                started = self._clock()
                _engine_call(request, self._asr.transcriber.warm_up)
                seconds += self._clock() - started
            return seconds

    def synthesize(self, request: SpeechRequest, voices: list[VoicePrompt], cancel: threading.Event,
                    load_seconds: float = 0.0) -> Generator[SpeechEvent, None, Synthesized]:
        """The engine's events as domain events, and what they added up to."""
        rid = request.request_id
        stretch = self._stretcher.open(request.speed, self._engine.sample_rate) \
            if request.speed != 1.0 and self._stretcher else None
        audio = AudioOut(rid, self._engine.sample_rate, stretch, self._clock)
        check = self._asr.verifier(request, self._engine.sample_rate, self._clock) \
            if self._asr is not None and request.needs_asr else None
        done: EngineDone | None = None
        with self._tracer.span("speech.synthesize") as span:
            for event in self._engine_events(request, voices, cancel, check):
                for result in check.take() if check is not None else ():
                    yield ChunkVerified(rid, result)
                if isinstance(event, EngineAudio):
                    yield from audio.add(event.samples, event.frame_index)
                elif isinstance(event, EngineProgress):
                    if event.segment is not None:  # a session's segment ends with all of its audio
                        yield from audio.drain(event.frames_done)
                    yield Progress(rid, event.frames_done, event.chunks_done, event.chunks_total, event.segment)
                else:
                    done = event
            for result in check.take() if check is not None else ():
                yield ChunkVerified(rid, result)
            yield from audio.drain(done.frames if done else 0)
            seconds = self._clock() - audio.started
            done = _finished(done, cancel, session=request.feed is not None)
            _describe(span, done)
            if check is not None:
                check.describe(span)
        timings = replace(done.timings, load=done.timings.load + load_seconds,
                          asr=check.asr_seconds if check is not None else 0.0)
        metadata = {**done.work.to_metadata(), **(check.metadata() if check is not None else {})}
        words = check.words if check is not None and request.timestamps is Timestamps.WORD else None
        return Synthesized(audio.samples, audio.rate, done.frames, done.stop_reason, done.text_output, timings,
                           metadata, audio.first_audio, seconds, words)

    def _engine_events(self, request: SpeechRequest, voices: list[VoicePrompt], cancel: threading.Event,
                       check: ChunkVerifier | None) -> Iterator[EngineEvent]:
        events = self._engine.speak(request.synthesis, voices, cancel, check)
        try:
            while (event := _engine_call(request, lambda: next(events, None))) is not None:
                yield event
        finally:  # a consumer that stops early frees the engine's slot now, not when collected
            close = getattr(events, "close", None)
            if close is not None:
                close()


def replay(request: SpeechRequest, hit: CachedResult,
           clock: Callable[[], float]) -> Generator[SpeechEvent, None, Synthesized]:
    """A cached result as the engine would have streamed it, one second a chunk."""
    started = clock()
    step = hit.sample_rate
    for sequence, start in enumerate(range(0, len(hit.samples), step)):
        frame = start * FRAME_RATE // hit.sample_rate
        yield AudioChunk(request.request_id, sequence, hit.samples[start:start + step], hit.sample_rate, frame)
    return Synthesized(hit.samples, hit.sample_rate, hit.frames, hit.stop_reason, request.text, EngineTimings(),
                       {"cache": "hit", "original_request_id": hit.request_id},
                       0.0 if len(hit.samples) else None, clock() - started)


def _finished(done: EngineDone | None, cancel: threading.Event, session: bool = False) -> EngineDone:
    """The engine's end, or why it is a failure. A speaking session may end with no audio (no
    text came, or every segment was cut short): its segment events say so, one by one."""
    if cancel.is_set():
        raise DomainError(ErrorType.SYSTEM, ErrorCode.CANCELLED, "request was cancelled")
    if done is None:
        raise DomainError(ErrorType.INFERENCE, ErrorCode.INFERENCE_FAILED,
                          "engine stopped without finishing the request")
    if done.frames == 0 and not session:  # never an empty success
        raise DomainError(ErrorType.INFERENCE, ErrorCode.INFERENCE_FAILED,
                          f"the model ended without producing any audio ({done.stop_reason}); retry, with another "
                          "seed or voice clip", {"frames": 0, "stop_reason": done.stop_reason})
    return done


def _describe(span: Span, done: EngineDone) -> None:
    span.set_attribute("speech.frames", done.frames)
    span.set_attribute("speech.stop_reason", done.stop_reason)
    if done.work.prefix_cache:  # per text chunk: did the voice prompt come from the cache
        span.set_attribute("speech.prefix_cache", ",".join(done.work.prefix_cache))


def _engine_call(request: SpeechRequest, call: Callable[[], T]) -> T:
    """An engine call whose failures other than DomainErrors become inference errors."""
    try:
        return call()
    except DomainError:
        raise
    except MemoryError as exc:
        raise DomainError(
            ErrorType.INFERENCE, ErrorCode.OUT_OF_MEMORY, "out of memory during generation"
        ) from exc
    except Exception as exc:  # the log has the exception; the caller gets no internals
        log.exception("generation of %s failed", request.request_id)
        raise DomainError(
            ErrorType.INFERENCE,
            ErrorCode.INFERENCE_FAILED,
            f"generation failed ({type(exc).__name__}); the worker's log has the details",
            {"exception": type(exc).__name__},
        ) from exc
