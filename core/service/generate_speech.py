"""The use case: one SpeechRequest in, one ordered stream of domain events out.

Event order: SpeechStarted, then AudioChunk and Progress as the engine produces them, then
AudioStored (only when the audio is stored) and SpeechCompleted. A request that fails yields
SpeechFailed instead of what is left, and never raises past the caller. Failures found before
any work (bad format, unknown voice) yield SpeechFailed before SpeechStarted.

The generator must be consumed from one thread (spans are entered and left around yields).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from array import array
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Generator, Iterator, Mapping

from core.domain.audio import FRAME_RATE, EncodedAudio, max_encoded_bytes
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import (
    AudioChunk,
    AudioStored,
    Progress,
    SpeechCompleted,
    SpeechEvent,
    SpeechFailed,
    SpeechStarted,
    Timings,
)
from core.domain.request import InlineVoice, NamedVoice, SpeechRequest
from core.domain.result_cache import CachedResult, ResultCache
from core.domain.voice import VoicePrompt
from core.ports.audio_encoder import AudioEncoder
from core.ports.object_store import ObjectStore, StoredObject
from core.ports.speech_engine import EngineAudio, EngineDone, EngineEvent, EngineProgress, SpeechEngine
from core.ports.tracer import NoopTracer, Span, Tracer
from core.ports.voice_library import VoiceLibrary

log = logging.getLogger(__name__)

# what producing the audio returns: the samples, the engine's summary, seconds to the first
# audio (None when there was none) and seconds of generation
Synthesized = tuple["array[float]", EngineDone, float | None, float]

_EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "mp3": "mp3"}


def default_key(prefix: str, request_id: str, fmt: str, now: datetime) -> str:
    """`{prefix}/{yyyy}/{mm}/{dd}/{request_id}.{ext}`"""
    stem = f"{now:%Y}/{now:%m}/{now:%d}/{request_id}.{_EXTENSIONS[fmt]}"
    return f"{prefix.strip('/')}/{stem}" if prefix.strip("/") else stem


def record_key(audio_key: str) -> str:
    return f"{audio_key}.json"


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
    ) -> None:
        self._engine = engine
        self._voices = voices
        self._encoder = encoder
        self._store = store
        self._tracer = tracer or NoopTracer()
        self._default_bucket = default_bucket
        self._results = result_cache
        self._key_prefix = key_prefix
        self._clock = clock
        self._now = now

    def inline_bound(self, request: SpeechRequest) -> int | None:
        """When the request's audio will come back inline (no output target, no default
        bucket): the most bytes it can be, from the engine's stop bounds. None when stored."""
        if request.output is not None or self._default_bucket is not None:
            return None
        seconds = self._engine.max_frames(request) / FRAME_RATE
        return max_encoded_bytes(seconds, self._engine.sample_rate, request.output_format.value)

    def __call__(
        self,
        request: SpeechRequest,
        cancel: threading.Event | None = None,
        received_at: float | None = None,
    ) -> Iterator[SpeechEvent]:
        cancel = cancel or threading.Event()
        started_at = self._clock()
        attributes = {
            "request.id": request.request_id,
            "speech.voice": ",".join(request.voice_names),
            "speech.text_length": len(request.text),
            "speech.output_format": request.output_format.value,
        }
        with self._tracer.span("speech.generate", attributes) as span:
            try:
                yield from self._run(request, cancel, started_at, received_at, span)
            except DomainError as error:
                span.record_error(error)
                span.set_attribute("error.code", error.code)
                yield SpeechFailed(request.request_id, error)

    def _run(self, request: SpeechRequest, cancel: threading.Event, started_at: float, received_at: float | None,
             span: Span) -> Iterator[SpeechEvent]:
        rid = request.request_id
        fmt = request.output_format.value
        if fmt not in self._encoder.formats:
            raise validation_error(
                ErrorCode.INVALID_OUTPUT_FORMAT,
                f"output_format {fmt} is not available here; available: "
                + ", ".join(sorted(self._encoder.formats)),
                field="output_format", constraint="enum", actual=fmt, allowed=sorted(self._encoder.formats),
            )
        target = self._target(request)
        with self._tracer.span("speech.resolve_voices", {"speech.voice_count": len(request.voices)}):
            voices = [self._resolve(v) for v in request.voices]

        cache_key, hit = self._cached(request, voices)
        sample_rate = hit.sample_rate if hit is not None else self._engine.sample_rate
        yield SpeechStarted(rid, sample_rate, 1, tuple(v.name for v in voices), cached=hit is not None)
        if hit is not None:
            samples, done, first_audio, generation_seconds = yield from self._replay(rid, hit, request.text)
        else:
            samples, done, first_audio, generation_seconds = yield from self._synthesize(request, voices, cancel)
            if cache_key is not None and self._results is not None:
                with self._tracer.span("speech.result_cache.save"):
                    self._results.save(cache_key, samples, sample_rate, rid, done.frames, done.stop_reason)

        duration = len(samples) / sample_rate
        rtf = generation_seconds / duration if duration > 0 else 0.0
        span.set_attribute("speech.frames", done.frames)
        span.set_attribute("speech.audio_seconds", round(duration, 3))
        span.set_attribute("speech.rtf", round(rtf, 4))

        with self._tracer.span("speech.encode", {"audio.format": fmt}):
            audio = self._encode(samples, sample_rate, fmt)

        t = done.timings
        timings = Timings(
            # waiting for the use case, then for a free slot in the engine's batch
            queue=(max(0.0, started_at - received_at) if received_at is not None else 0.0) + t.get("queue", 0.0),
            load=t.get("load", 0.0),
            prefill=t.get("prefill", 0.0),
            decode=t.get("decode", 0.0),
            vocode=t.get("vocode", 0.0),
            first_audio=first_audio,
        )
        metadata: dict[str, Any] = {
            "request_id": rid,
            "trace_id": span.trace_id(),
            "voices": [v.name for v in voices],
            "frames": done.frames,
            "stop_reason": done.stop_reason,
            "model": self._engine.describe(),
            **done.metadata,
        }
        if self._results is not None:  # hit (with the original request's id), miss, or off (no seed)
            metadata.setdefault("cache", "miss" if cache_key is not None else "off")

        audio_url = None
        if target is not None:
            bucket, key = target
            with self._tracer.span("speech.store", {"s3.bucket": bucket, "s3.key": key}):
                stored, timings = self._store_audio(
                    request, bucket, key, audio, duration, sample_rate, done, timings, rtf, metadata, started_at
                )
            audio_url = stored.url
            metadata["audio_uri"] = stored.uri
            yield stored

        timings = _replace(timings, total=self._clock() - started_at)
        metadata["timings"] = timings.to_dict()
        yield SpeechCompleted(
            request_id=rid,
            duration_seconds=duration,
            sample_rate=sample_rate,
            timings=timings,
            real_time_factor=rtf,
            frames=done.frames,
            stop_reason=done.stop_reason,
            audio=audio,
            audio_url=audio_url,
            text_output=done.text_output,
            metadata=metadata,
        )

    def _synthesize(self, request: SpeechRequest, voices: list[VoicePrompt],
                    cancel: threading.Event) -> Generator[SpeechEvent, None, Synthesized]:
        """The engine's events as domain events; returns (samples, done, first_audio, seconds)."""
        rid = request.request_id
        sample_rate = self._engine.sample_rate
        samples = array("f")
        sequence = 0
        done: EngineDone | None = None
        first_audio: float | None = None
        engine_started = self._clock()
        with self._tracer.span("speech.synthesize") as synth_span:
            for event in self._engine_events(request, voices, cancel):
                if isinstance(event, EngineAudio):
                    if first_audio is None:
                        first_audio = self._clock() - engine_started
                    samples.extend(event.samples)
                    yield AudioChunk(rid, sequence, event.samples, sample_rate, event.frame_index)
                    sequence += 1
                elif isinstance(event, EngineProgress):
                    yield Progress(rid, event.frames_done, event.chunks_done, event.chunks_total)
                elif isinstance(event, EngineDone):
                    done = event
            generation_seconds = self._clock() - engine_started
            if cancel.is_set():
                raise DomainError(ErrorType.SYSTEM, ErrorCode.CANCELLED, "request was cancelled")
            if done is None:
                raise DomainError(
                    ErrorType.INFERENCE,
                    ErrorCode.INFERENCE_FAILED,
                    "engine stopped without finishing the request",
                )
            synth_span.set_attribute("speech.frames", done.frames)
            synth_span.set_attribute("speech.stop_reason", done.stop_reason)
            if done.metadata.get("prefix_cache"):  # per text chunk: did the voice prompt come from the cache
                synth_span.set_attribute("speech.prefix_cache", ",".join(map(str, done.metadata["prefix_cache"])))
        return samples, done, first_audio, generation_seconds

    def _cached(self, request: SpeechRequest,
                voices: list[VoicePrompt]) -> tuple[str | None, CachedResult | None]:
        """The result-cache key (None when the request or the setup does not qualify) and the
        entry found under it."""
        if self._results is None or not ResultCache.eligible(request):
            return None, None
        model = self._engine.describe()
        if not model.get("loaded", True):  # not loaded yet: the description lacks the revision
            return None, None
        key = self._results.key(request, voices, model)
        with self._tracer.span("speech.result_cache.lookup") as lookup:
            hit = self._results.load(key)
            lookup.set_attribute("speech.result_cache", "hit" if hit else "miss")
        return key, hit

    def _replay(self, rid: str, hit: CachedResult, text: str) -> Generator[SpeechEvent, None, Synthesized]:
        """A cached result as the engine would have streamed it, one second a chunk."""
        started = self._clock()
        step = hit.sample_rate
        for sequence, start in enumerate(range(0, len(hit.samples), step)):
            frame = start * FRAME_RATE // hit.sample_rate
            yield AudioChunk(rid, sequence, hit.samples[start:start + step], hit.sample_rate, frame)
        done = EngineDone(frames=hit.frames, stop_reason=hit.stop_reason, text_output=text,
                          metadata={"cache": "hit", "original_request_id": hit.request_id})
        return hit.samples, done, (0.0 if len(hit.samples) else None), self._clock() - started

    def _target(self, request: SpeechRequest) -> tuple[str, str] | None:
        output = request.output
        bucket = (output.bucket if output else None) or self._default_bucket
        if output is None and bucket is None:
            return None
        if bucket is None:
            raise validation_error(
                ErrorCode.INVALID_S3_BUCKET,
                "s3_key was given but no s3_bucket, and no default bucket is configured",
                field="s3_bucket", constraint="required_with=s3_key",
            )
        if self._store is None:
            raise DomainError(
                ErrorType.S3_UPLOAD,
                ErrorCode.S3_UPLOAD_FAILED,
                "an output target was requested but no object store is configured",
            )
        fmt = request.output_format.value
        key = output.key if output and output.key else None
        if key and output is not None and not output.overwrite:
            self._refuse_taken_key(bucket, key)
        return bucket, key or default_key(self._key_prefix, request.request_id, fmt, self._now())

    def _refuse_taken_key(self, bucket: str, key: str) -> None:
        """Before any GPU work: a caller-chosen key that already holds audio (or its record) is
        refused unless overwrite was asked for. The write itself is conditional too."""
        store = self._store
        assert store is not None  # _target refused the request before
        try:
            taken = store.exists(bucket, key) or store.exists(bucket, record_key(key))
        except DomainError:
            raise
        except Exception:  # the store is unreachable or forbids HEAD: the write will tell
            log.warning("could not check whether %s/%s exists", bucket, key, exc_info=True)
            return
        if taken:
            raise validation_error(
                ErrorCode.OBJECT_EXISTS,
                f"s3://{bucket}/{key} already exists; choose another s3_key or set overwrite",
                field="s3_key", constraint="absent_unless_overwrite", actual=key,
            )

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

    def _engine_events(self, request: SpeechRequest, voices: list[VoicePrompt],
                       cancel: threading.Event) -> Iterator[EngineEvent]:
        try:
            yield from self._engine.stream(request, voices, cancel)
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

    def _encode(self, samples: array[float], sample_rate: int, fmt: str) -> EncodedAudio:
        try:
            return self._encoder.encode(samples, sample_rate, fmt)
        except Exception as exc:
            log.exception("could not encode %s", fmt)
            raise DomainError(
                ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, f"could not encode {fmt} ({type(exc).__name__})"
            ) from exc

    def _store_audio(
        self, request: SpeechRequest, bucket: str, key: str, audio: EncodedAudio, duration: float,
        sample_rate: int, done: EngineDone, timings: Timings, rtf: float, metadata: dict[str, Any],
        started_at: float,
    ) -> tuple[AudioStored, Timings]:
        """The audio, then its event record, whose timings are the real ones up to the record
        (upload: the audio's; total: from the start to the record's write)."""
        store = self._store
        assert store is not None
        user_metadata = {
            "request-id": request.request_id,
            "voice": ",".join(request.voice_names) or "none",
            "duration-seconds": f"{duration:.3f}",
            "sample-rate": str(sample_rate),
            "model-revision": str(metadata["model"].get("revision") or "unknown"),
            "trace-id": metadata.get("trace_id") or "",
        }
        upload_started = self._clock()
        overwrite = bool(request.output and request.output.overwrite)
        stored = _put(store, bucket, key, audio.data, audio.content_type, user_metadata, overwrite)
        now = self._clock()
        timings = _replace(timings, upload=now - upload_started, total=now - started_at)
        record = {
            "event": "speech.completed",
            "created_at": self._now().isoformat(),
            "request_id": request.request_id,
            "trace_id": metadata.get("trace_id"),
            "request": request_record(request),
            "audio": {
                "bucket": bucket,
                "key": key,
                "uri": stored.uri,
                "bytes": stored.size,
                "etag": stored.etag,
                "format": audio.format,
                "content_type": audio.content_type,
                "duration_seconds": round(duration, 4),
                "sample_rate": sample_rate,
            },
            "frames": done.frames,
            "stop_reason": done.stop_reason,
            "real_time_factor": round(rtf, 4),
            "timings": timings.to_dict(),
            "model": metadata["model"],
        }
        if "cache" in metadata:  # served from the result cache: the request whose audio this is
            record["cache"] = {"result": metadata["cache"], "original_request_id": metadata.get("original_request_id")}
        rkey = record_key(key)
        try:
            _put(
                store,
                bucket,
                rkey,
                json.dumps(record, sort_keys=True).encode("utf-8"),
                "application/json",
                {"request-id": request.request_id},
                overwrite,
            )
        except DomainError:
            # the event record is what consumers subscribe to: audio without it is half-stored
            try:
                store.delete(bucket, key)
            except Exception:  # the caller needs the first error; say what was left behind
                log.exception("could not remove %s/%s after its record failed", bucket, key)
            raise
        return AudioStored(
            request.request_id, stored.url, stored.uri, bucket, key, stored.size, stored.etag, rkey
        ), timings


def _put(store: ObjectStore, bucket: str, key: str, data: bytes, content_type: str,
         metadata: Mapping[str, str], overwrite: bool) -> StoredObject:
    try:
        return store.put(bucket, key, data, content_type, metadata, overwrite=overwrite)
    except DomainError:
        raise
    except Exception as exc:
        log.exception("could not store %s in %s", key, bucket)
        raise DomainError(
            ErrorType.S3_UPLOAD,
            ErrorCode.S3_UPLOAD_FAILED,
            f"could not store {key} in {bucket} ({type(exc).__name__})",
            {"bucket": bucket, "key": key},
        ) from exc


def request_record(request: SpeechRequest) -> dict[str, Any]:
    """The request's parameters for the event record: no audio bytes, nothing secret."""
    s, c = request.sampling, request.chunking
    return {
        "text": request.text,
        "voices": request.voice_names,
        "inline_voice": any(isinstance(v, InlineVoice) for v in request.voices),
        "scene_prompt": request.scene_prompt,
        "output_format": request.output_format.value,
        "sampling": {
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens,
            "seed": s.seed,
            "ras_win_len": s.ras_win_len,
            "ras_win_max_num_repeat": s.ras_win_max_num_repeat,
        },
        "chunking": {
            "method": c.method.value,
            "max_word_num": c.max_word_num,
            "max_num_turns": c.max_num_turns,
        },
    }


def _replace(timings: Timings, **changes: float) -> Timings:
    return replace(timings, **changes)
