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
from dataclasses import replace
from typing import Any, Callable, Iterator, TypeVar

from core.domain.audio import FRAME_RATE, EncodedAudio, Samples, max_encoded_bytes
from core.domain.captions import to_vtt
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import (
    AudioStored,
    SpeechCompleted,
    SpeechEvent,
    SpeechFailed,
    SpeechStarted,
    Timings,
)
from core.domain.records import SpeechSummary
from core.domain.request import InlineVoice, NamedVoice, SpeechRequest
from core.domain.verification import Verification
from core.domain.voice import VoicePrompt
from core.ports.audio_encoder import AudioEncoder
from core.ports.speech_engine import ModelInfo, SpeechEngine
from core.ports.time_stretcher import TimeStretcher
from core.ports.tracer import NoopTracer, Span, Tracer
from core.ports.voice_library import VoiceLibrary
from core.service.archive import AudioArchive
from core.service.result_cache import CachedResult, ResultCache
from core.service.synthesizer import Synthesized, Synthesizer, replay
from core.service.verification import Asr

log = logging.getLogger(__name__)

T = TypeVar("T")


class GenerateSpeech:
    def __init__(
        self,
        engine: SpeechEngine,
        voices: VoiceLibrary,
        encoder: AudioEncoder,
        archive: AudioArchive | None = None,
        *,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        result_cache: ResultCache | None = None,
        stretcher: TimeStretcher | None = None,
        asr: Asr | None = None,
        verification: Verification | None = None,
    ) -> None:
        """`archive`: where finished audio goes (none: it comes back in the response). The rest
        are the request features a deployment may leave out: the result cache, `speed` (the
        stretcher), the ASR pass and its defaults for requests that leave them."""
        self._engine = engine
        self._voices = voices
        self._encoder = encoder
        self._archive = archive or AudioArchive()
        self._tracer = tracer or NoopTracer()
        self._clock = clock
        self._results = result_cache
        self._synthesizer = Synthesizer(engine, self._tracer, clock, stretcher, asr)
        self._verification = (verification or Verification()).with_defaults()

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
            load_seconds = self._synthesizer.prepare(request, voices)
            if cache_key is None:  # looked up before the model was loaded (a CLI's first request): now it is
                cache_key, hit = self._cached(request, voices)
        rate = hit.sample_rate if hit is not None else self._engine.sample_rate
        yield SpeechStarted(request.request_id, rate, 1, tuple(v.name for v in voices), cached=hit is not None)
        if hit is not None:
            result = yield from replay(request, hit, self._clock)
        else:
            result = yield from self._synthesizer.synthesize(request, voices, cancel, load_seconds)
            self._remember(cache_key, request, result)
        cache = None if self._results is None else "miss" if cache_key is not None else "off"
        summary = _summary(request, voices, result, span, queued, self._engine.describe(), cache)
        with self._tracer.span("speech.encode", {"audio.format": request.output_format.value}):
            audio = _encode(self._encoder, result.samples, result.sample_rate, request.output_format.value)
        stored = None
        if target is not None:
            captions = to_vtt(result.words, summary.duration_seconds) if result.words is not None else None
            stored, summary = self._archive.store(request, target, audio, summary, started_at, captions)
            yield stored
        yield _completed(summary, audio, stored, result.text_output, self._clock() - started_at)

    def _check_format(self, request: SpeechRequest) -> None:
        fmt = request.output_format.value
        if fmt not in self._encoder.formats:
            raise validation_error(
                ErrorCode.INVALID_OUTPUT_FORMAT,
                f"output_format {fmt} is not available here; available: " + ", ".join(sorted(self._encoder.formats)),
                field="output_format", constraint="enum", actual=fmt, allowed=sorted(self._encoder.formats),
            )
        self._synthesizer.check(request)

    def _resolve_voices(self, request: SpeechRequest) -> list[VoicePrompt]:
        with self._tracer.span("speech.resolve_voices", {"speech.voice_count": len(request.voices)}):
            return [_resolve(self._voices, v) for v in request.voices]

    def _cached(self, request: SpeechRequest, voices: list[VoicePrompt]) -> tuple[str | None, CachedResult | None]:
        if self._results is None:
            return None, None
        return self._results.lookup(request, voices, self._engine.describe, self._tracer)

    def _remember(self, key: str | None, request: SpeechRequest, result: Synthesized) -> None:
        if key is not None and self._results is not None:
            with self._tracer.span("speech.result_cache.save"):
                self._results.save(key, result.samples, result.sample_rate, request.request_id, result.frames,
                                   result.stop_reason)


def _completed(summary: SpeechSummary, audio: EncodedAudio, stored: AudioStored | None, text_output: str,
               total: float) -> SpeechCompleted:
    timings = replace(summary.timings, total=total)
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


def _resolve(library: VoiceLibrary, voice: NamedVoice | InlineVoice) -> VoicePrompt:
    if isinstance(voice, InlineVoice):
        return VoicePrompt(voice.name, voice.transcript, bytes(voice.audio))
    try:
        return library.get(voice.name)
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


def _summary(request: SpeechRequest, voices: list[VoicePrompt], result: Synthesized, span: Span, queued: float,
             model: ModelInfo, cache: str | None) -> SpeechSummary:
    """What the request came to; `cache`: the result cache's say (None: there is none)."""
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
        "model": model.to_dict(),
        **result.metadata,
    }
    if cache is not None:  # hit (with the original request's id), miss, or off (no seed)
        metadata.setdefault("cache", cache)
    return SpeechSummary(request.request_id, duration, result.sample_rate, result.frames, result.stop_reason,
                         rtf, timings, metadata)


def _encode(encoder: AudioEncoder, samples: Samples, sample_rate: int, fmt: str) -> EncodedAudio:
    try:
        return encoder.encode(samples, sample_rate, fmt)
    except Exception as exc:
        log.exception("could not encode %s", fmt)
        raise DomainError(
            ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, f"could not encode {fmt} ({type(exc).__name__})"
        ) from exc
