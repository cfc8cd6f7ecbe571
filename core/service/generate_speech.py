"""The use case: one SpeechRequest in, one ordered stream of domain events out.

Event order: SpeechStarted, then AudioChunk and Progress as the engine produces them, then
AudioStored (only when the audio is stored) and SpeechCompleted. A request that fails yields
SpeechFailed instead of what is left, and never raises past the caller. Failures found before
any work (bad format, unknown voice) yield SpeechFailed before SpeechStarted.

The generator must be consumed from one thread (spans are entered and left around yields).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Generator, Iterator, TypeVar

from core.domain.audio import FRAME_RATE, EncodedAudio, Samples, max_encoded_bytes
from core.domain.captions import to_vtt
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import (
    AudioChunk,
    AudioStored,
    ChunkVerified,
    Progress,
    SpeechCompleted,
    SpeechEvent,
    SpeechFailed,
    SpeechStarted,
    Timings,
)
from core.domain.records import SpeechSummary
from core.domain.request import InlineVoice, NamedVoice, SpeechRequest
from core.domain.verification import Timestamps, Verification, Word
from core.domain.voice import VoicePrompt
from core.ports.audio_encoder import AudioEncoder
from core.ports.object_store import ObjectStore
from core.ports.speech_engine import EngineAudio, EngineDone, EngineEvent, EngineProgress, EngineTimings, SpeechEngine
from core.ports.time_stretcher import TimeStretcher
from core.ports.tracer import NoopTracer, Span, Tracer
from core.ports.voice_library import VoiceLibrary
from core.service.archive import AudioArchive
from core.service.audio_out import AudioOut
from core.service.result_cache import CachedResult, ResultCache
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


class GenerateSpeech:
    def __init__(
        self,
        engine: SpeechEngine,
        voices: VoiceLibrary,
        encoder: AudioEncoder,
        store: ObjectStore | None = None,
        tracer: Tracer | None = None,
        default_bucket: str | None = None,
        key_prefix: str = "higgs-tts",
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        result_cache: ResultCache | None = None,
        stretcher: TimeStretcher | None = None,
        asr: Asr | None = None,
        verification: Verification | None = None,
    ) -> None:
        self._engine = engine
        self._stretcher = stretcher
        self._asr = asr
        self._verification = (verification or Verification()).with_defaults()  # for requests that leave it
        self._voices = voices
        self._encoder = encoder
        self._tracer = tracer or NoopTracer()
        self._archive = AudioArchive(store, default_bucket, key_prefix, self._tracer, clock, now)
        self._results = result_cache
        self._clock = clock

    @property
    def output_formats(self) -> frozenset[str]:
        return frozenset(self._encoder.formats)

    def inline_bound(self, request: SpeechRequest) -> int | None:
        """When the request's audio will come back inline (no output target, no default
        bucket): the most bytes it can be, from the engine's stop bounds. None when stored."""
        return self.audio_bound(request) if self._archive.returns_inline(request) else None

    def audio_bound(self, request: SpeechRequest) -> int:
        """The most bytes the request's audio can be in its format, from the engine's stop bounds."""
        seconds = self._engine.max_frames(request.synthesis) / FRAME_RATE / request.speed
        return max_encoded_bytes(seconds, self._engine.sample_rate, request.output_format.value)

    def __call__(
        self,
        request: SpeechRequest,
        cancel: threading.Event | None = None,
        received_at: float | None = None,
    ) -> Iterator[SpeechEvent]:
        started_at = self._clock()
        queued = max(0.0, started_at - received_at) if received_at is not None else 0.0
        request = replace(request, verification=request.verification.with_defaults(self._verification))
        attributes = {
            "request.id": request.request_id,
            "speech.voice": ",".join(request.voice_names),
            "speech.text_length": len(request.text),
            "speech.output_format": request.output_format.value,
        }
        with self._tracer.span("speech.generate", attributes) as span:
            try:
                yield from self._run(request, cancel or threading.Event(), started_at, queued, span)
            except DomainError as error:
                span.record_error(error)
                span.set_attribute("error.code", error.code)
                yield SpeechFailed(request.request_id, error)

    def _run(self, request: SpeechRequest, cancel: threading.Event, started_at: float, queued: float,
             span: Span) -> Iterator[SpeechEvent]:
        self._check_format(request)
        target = self._archive.target(request)
        voices = self._resolve_voices(request)
        cache_key, hit = self._cached(request, voices)
        load_seconds = 0.0
        if hit is None:
            load_seconds = self._prepare(request, voices)
            if cache_key is None:  # looked up before the model was loaded (a CLI's first request): now it is
                cache_key, hit = self._cached(request, voices)
        rate = hit.sample_rate if hit is not None else self._engine.sample_rate
        yield SpeechStarted(request.request_id, rate, 1, tuple(v.name for v in voices), cached=hit is not None)
        if hit is not None:
            result = yield from self._replay(request, hit)
        else:
            result = yield from self._synthesize(request, voices, cancel, load_seconds)
            self._remember(cache_key, request, result)
        summary = self._summarize(request, voices, result, span, queued, cache_key)
        with self._tracer.span("speech.encode", {"audio.format": request.output_format.value}):
            audio = self._encode(result.samples, result.sample_rate, request.output_format.value)
        stored = None
        if target is not None:
            captions = to_vtt(result.words, summary.duration_seconds) if result.words is not None else None
            stored, summary = self._archive.store(request, target, audio, summary, started_at, captions)
            yield stored
        yield self._completed(summary, audio, stored, result.text_output, started_at)

    # -- before any work --------------------------------------------------------------------

    def _check_format(self, request: SpeechRequest) -> None:
        fmt = request.output_format.value
        if fmt not in self._encoder.formats:
            raise validation_error(
                ErrorCode.INVALID_OUTPUT_FORMAT,
                f"output_format {fmt} is not available here; available: " + ", ".join(sorted(self._encoder.formats)),
                field="output_format", constraint="enum", actual=fmt, allowed=sorted(self._encoder.formats),
            )
        if request.needs_asr and self._asr is None:
            raise asr_not_configured(request)
        if request.speed != 1.0 and self._stretcher is None:
            raise validation_error(ErrorCode.INVALID_SPEED, "speed other than 1.0 is not available here",
                                   field="speed", constraint="equals=1.0", actual=request.speed)

    def _resolve_voices(self, request: SpeechRequest) -> list[VoicePrompt]:
        with self._tracer.span("speech.resolve_voices", {"speech.voice_count": len(request.voices)}):
            return [self._resolve(v) for v in request.voices]

    def _resolve(self, voice: NamedVoice | InlineVoice) -> VoicePrompt:
        if isinstance(voice, InlineVoice):
            return VoicePrompt(voice.name, voice.transcript, bytes(voice.audio))
        try:
            return self._voices.get(voice.name)
        except DomainError:
            raise
        except Exception as exc:  # the log has the exception; the caller gets no internals
            log.exception("voice library failed to read voice %r", voice.name)
            raise DomainError(
                ErrorType.SYSTEM,
                ErrorCode.INTERNAL_ERROR,
                f"the voice library could not read voice {voice.name!r} ({type(exc).__name__})",
                {"voice": voice.name},
            ) from exc

    def _prepare(self, request: SpeechRequest, voices: list[VoicePrompt]) -> float:
        """The engine's own checks (model loaded, voice clips readable, the text fits as it is
        chunked) and the ASR model loaded when the request needs it, before the first byte goes
        out; the seconds it spent loading the models."""
        with self._tracer.span("speech.prepare"):
            seconds = self._engine_call(request, lambda: self._engine.prepare(request.synthesis, voices))
            if self._asr is not None and request.needs_asr:
                started = self._clock()
                self._engine_call(request, self._asr.transcriber.warm_up)
                seconds += self._clock() - started
            return seconds

    # -- the result cache -------------------------------------------------------------------

    def _cached(self, request: SpeechRequest, voices: list[VoicePrompt]) -> tuple[str | None, CachedResult | None]:
        """The result-cache key (None when the request or the setup does not qualify) and the
        entry found under it."""
        if self._results is None or not ResultCache.eligible(request):
            return None, None
        model = self._engine.describe()
        if not model.loaded:  # not loaded yet: the description lacks the revision
            return None, None
        key = self._results.key(request, voices, model)
        with self._tracer.span("speech.result_cache.lookup") as lookup:
            hit = self._results.load(key)
            lookup.set_attribute("speech.result_cache", "hit" if hit else "miss")
        return key, hit

    def _remember(self, key: str | None, request: SpeechRequest, result: Synthesized) -> None:
        if key is not None and self._results is not None:
            with self._tracer.span("speech.result_cache.save"):
                self._results.save(key, result.samples, result.sample_rate, request.request_id, result.frames,
                                   result.stop_reason)

    def _replay(self, request: SpeechRequest, hit: CachedResult) -> Generator[SpeechEvent, None, Synthesized]:
        """A cached result as the engine would have streamed it, one second a chunk."""
        started = self._clock()
        step = hit.sample_rate
        for sequence, start in enumerate(range(0, len(hit.samples), step)):
            frame = start * FRAME_RATE // hit.sample_rate
            yield AudioChunk(request.request_id, sequence, hit.samples[start:start + step], hit.sample_rate, frame)
        return Synthesized(hit.samples, hit.sample_rate, hit.frames, hit.stop_reason, request.text, EngineTimings(),
                           {"cache": "hit", "original_request_id": hit.request_id},
                           0.0 if len(hit.samples) else None, self._clock() - started)

    # -- generating -------------------------------------------------------------------------

    def _synthesize(self, request: SpeechRequest, voices: list[VoicePrompt], cancel: threading.Event,
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
        events = self._engine.stream(request.synthesis, voices, cancel, check)
        try:
            while (event := self._engine_call(request, lambda: next(events, None))) is not None:
                yield event
        finally:  # a consumer that stops early frees the engine's slot now, not when collected
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _engine_call(self, request: SpeechRequest, call: Callable[[], T]) -> T:
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

    # -- after generating -------------------------------------------------------------------

    def _summarize(self, request: SpeechRequest, voices: list[VoicePrompt], result: Synthesized, span: Span,
                   queued: float, cache_key: str | None) -> SpeechSummary:
        duration = len(result.samples) / result.sample_rate
        rtf = result.seconds / duration if duration > 0 else 0.0
        span.set_attribute("speech.frames", result.frames)
        span.set_attribute("speech.audio_seconds", round(duration, 3))
        span.set_attribute("speech.rtf", round(rtf, 4))
        t = result.timings
        # queued: waiting for the use case, then (the engine's queue) for a free slot in its batch
        timings = Timings(queue=queued + t.queue, load=t.load, prefill=t.prefill, decode=t.decode, vocode=t.vocode,
                          asr=t.asr, first_audio=result.first_audio)
        metadata: dict[str, Any] = {
            "request_id": request.request_id,
            "trace_id": span.trace_id(),
            "voices": [v.name for v in voices],
            "frames": result.frames,
            "stop_reason": result.stop_reason,
            "model": self._engine.describe().to_dict(),
            **result.metadata,
        }
        if self._results is not None:  # hit (with the original request's id), miss, or off (no seed)
            metadata.setdefault("cache", "miss" if cache_key is not None else "off")
        return SpeechSummary(request.request_id, duration, result.sample_rate, result.frames, result.stop_reason,
                             rtf, timings, metadata)

    def _encode(self, samples: Samples, sample_rate: int, fmt: str) -> EncodedAudio:
        try:
            return self._encoder.encode(samples, sample_rate, fmt)
        except Exception as exc:
            log.exception("could not encode %s", fmt)
            raise DomainError(
                ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, f"could not encode {fmt} ({type(exc).__name__})"
            ) from exc

    def _completed(self, summary: SpeechSummary, audio: EncodedAudio, stored: AudioStored | None, text_output: str,
                   started_at: float) -> SpeechCompleted:
        timings = replace(summary.timings, total=self._clock() - started_at)
        metadata = dict(summary.metadata)
        if stored is not None:
            metadata["audio_uri"] = stored.uri
        metadata["timings"] = timings.to_dict()
        return SpeechCompleted(
            request_id=summary.request_id,
            duration_seconds=summary.duration_seconds,
            sample_rate=summary.sample_rate,
            timings=timings,
            real_time_factor=summary.real_time_factor,
            frames=summary.frames,
            stop_reason=summary.stop_reason,
            audio=audio,
            audio_url=stored.url if stored is not None else None,
            text_output=text_output,
            metadata=metadata,
        )


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
