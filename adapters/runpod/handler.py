"""The RunPod handlers: one job in, the design's GenerationResponse out (or, in streaming
mode, audio chunks and progress, then that response).

The use case is a blocking generator that must be consumed on one thread, so each job runs it
on a worker thread and hands its events to the event loop; the loop stays free for the SDK's
heartbeats, progress updates and the local API. The engine decodes up to `capacity` requests
together (its batch); `concurrency` tells the SDK to take that many jobs at once, and a job
over it waits its turn in the service's admission queue (the queue depth metric counts them).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate

from adapters.runpod.metrics import WorkerMetrics
from adapters.runpod.schema import (
    JobInput,
    JobOutput,
    error_response,
    read_input,
    success_response,
)
from core.domain.audio import FRAME_RATE, pcm16_bytes
from core.domain.errors import DomainError, ErrorCode, ErrorType, validation_error
from core.domain.events import (
    AudioChunk,
    AudioStored,
    Progress,
    SpeechCompleted,
    SpeechEvent,
    SpeechFailed,
    SpeechStarted,
)
from core.domain.request import SpeechRequest, is_valid_request_id
from core.ports.tracer import NoopTracer, Tracer
from core.service.outcome import Outcome
from core.service.speech_service import SpeechService, formats_within
from core.service.threads import iterate_in_thread

log = logging.getLogger(__name__)

MB = 1_000_000
ProgressReporter = Callable[[Mapping[str, Any], dict[str, Any]], None]


@dataclass(frozen=True)
class WorkerOptions:
    # RunPod caps a job's payload (/run 10 MB, /runsync 20 MB); base64 grows audio by 4/3,
    # so 7 MB of audio keeps an inline answer under the smaller cap
    inline_audio_limit: int = 7 * MB
    # a streaming job's chunks are also returned together (return_aggregate_stream): stop a
    # stream before that sum passes /runsync's cap
    stream_output_limit: int = 19 * MB
    progress_interval: float = 2.0  # seconds between progress updates of one job


def _no_progress(job: Mapping[str, Any], progress: dict[str, Any]) -> None:
    pass


class RunpodWorker:
    def __init__(
        self,
        service: SpeechService,
        metrics: WorkerMetrics,
        options: WorkerOptions = WorkerOptions(),
        progress: ProgressReporter = _no_progress,
        tracer: Tracer | None = None,
    ) -> None:
        self._service = service
        self.capacity = service.capacity
        self._metrics = metrics
        self._options = options
        self._progress = progress
        self._tracer = tracer or NoopTracer()
        metrics.watch_queue(lambda: service.admission.waiting, lambda: service.admission.running)
        # each job's generator runs on its own thread for the whole job
        self._threads = ThreadPoolExecutor(max_workers=self.capacity + 4, thread_name_prefix="job")

    # -- the two handler shapes runpod accepts ----------------------------------------------

    async def handle(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Non-streaming: the whole response once the audio is finished."""
        received = time.monotonic()
        last_report = [received]
        outcome = Outcome()
        try:
            work = self._read(job)
            self._refuse_if_it_cannot_come_back(work.request)
            async with aclosing(self._events(job, work, received)) as events:
                async for event in events:
                    if isinstance(event, Progress):
                        self._report(job, event, received, last_report)
                    outcome.add(event)
            completed = outcome.result()
            response = success_response(completed, outcome.stored, self._options.inline_audio_limit)
        except DomainError as error:
            return self._failed(error, received)
        except Exception as exc:  # a bug in one job never takes the worker down
            log.exception("job %s failed", job.get("id"))
            return self._failed(_internal(exc), received)
        self._metrics.completed(completed, time.monotonic() - received)
        return response

    async def handle_stream(self, job: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Streaming: `started`, then `audio` chunks (base64 PCM s16le, numbered) and
        `progress` as they are produced, and last a `result` (the GenerationResponse,
        without the audio, which already went out in chunks)."""
        received = time.monotonic()
        stream = _Stream(job, received)
        try:
            work = self._read(job)
            async with aclosing(self._events(job, work, received, stream.cancel)) as events:
                async for event in events:
                    message = self._stream_message(stream, event)
                    if message is not None:
                        yield message
                    if isinstance(event, (SpeechCompleted, SpeechFailed)):
                        return
            raise DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, "generation ended without a result")
        except DomainError as error:
            yield self._result(self._failed(error, received))
        except Exception as exc:
            log.exception("job %s failed", job.get("id"))
            yield self._result(self._failed(_internal(exc), received))

    def _stream_message(self, stream: _Stream, event: SpeechEvent) -> dict[str, Any] | None:
        """What a streaming job sends for one event (None: nothing)."""
        if isinstance(event, SpeechStarted):
            return {"type": "started", "request_id": event.request_id, "sample_rate": event.sample_rate,
                    "channels": event.channels, "encoding": "pcm_s16le", "voices": list(event.voices)}
        if isinstance(event, AudioChunk):
            return self._audio_message(stream, event)
        if isinstance(event, Progress):
            self._report(stream.job, event, stream.received, stream.last_report)
            return {"type": "progress", "frames_done": event.frames_done, "chunks_done": event.chunks_done,
                    "chunks_total": event.chunks_total}
        if isinstance(event, AudioStored):
            stream.stored = event
        elif isinstance(event, SpeechFailed):
            return self._result(self._failed(event.error, stream.received))
        elif isinstance(event, SpeechCompleted):
            self._metrics.completed(event, time.monotonic() - stream.received)
            return self._result(success_response(event, stream.stored, 0, include_audio=False))
        return None

    def _audio_message(self, stream: _Stream, event: AudioChunk) -> dict[str, Any]:
        data = base64.b64encode(pcm16_bytes(event.samples)).decode("ascii")
        stream.sent += len(data)
        limit = self._options.stream_output_limit
        if stream.sent > limit:
            stream.cancel.set()
            raise DomainError(  # work was done: not a validation error
                ErrorType.SYSTEM, ErrorCode.PAYLOAD_TOO_LARGE,
                f"the streamed audio passed {limit} bytes, the most a streaming job may return; generation "
                "stopped there: split the text into several jobs",
                {"stream_output_limit_bytes": limit, "streamed_bytes": stream.sent, "audio_seconds_streamed": round(
                    event.frame_index / FRAME_RATE + len(event.samples) / event.sample_rate, 2)},
            )
        return {"type": "audio", "sequence": event.sequence, "frame_index": event.frame_index,
                "samples": len(event.samples), "audio_base64": data}

    def _refuse_if_it_cannot_come_back(self, request: SpeechRequest) -> None:
        """Before any work: audio that is returned inline and whose bound (the request's stop
        bounds) passes the payload limit is refused now, not after generating it."""
        size = self._service.inline_bound(request)
        limit = self._options.inline_audio_limit
        if size is not None and size > limit:
            fits = formats_within(self._service, request, limit)
            advice = f"output_format {' or '.join(fits)} fits under it (compressed); or " if fits else ""
            raise validation_error(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"this request can produce up to {size} bytes of {request.output_format.value}, over the "
                f"{limit}-byte limit for returning audio inline (RunPod caps a job's payload): {advice}give "
                "s3_bucket (or set S3_BUCKET) to receive a URL, lower max_new_tokens, split the text into several "
                "jobs or use the streaming worker",
                field="s3_bucket", constraint=f"inline_audio_max_bytes={limit}", actual_max_bytes=size,
                formats_that_fit=fits,
            )

    def concurrency(self, current: int) -> int:
        """runpod's concurrency_modifier: as many jobs as the engine decodes together."""
        return self.capacity

    # -- one job ----------------------------------------------------------------------------

    @staticmethod
    def _read(job: Mapping[str, Any]) -> JobInput:
        job_id = job.get("id")  # the job's id names the request, when it is a usable one
        return read_input(job.get("input"), job_id if is_valid_request_id(job_id) else None)

    def _events(self, job: Mapping[str, Any], work: JobInput, received: float,
                cancel: threading.Event | None = None) -> AsyncIterator[SpeechEvent]:
        """The use case's events, produced on a worker thread, delivered on the event loop.
        Closing the iterator early (the stream's reader is gone) cancels the generation and
        waits for its thread."""
        cancel = cancel or threading.Event()
        return iterate_in_thread(lambda: self._job_events(job.get("id"), work, received, cancel), self._threads,
                                 cancel)

    def _job_events(self, job_id: Any, work: JobInput, received: float,
                    cancel: threading.Event) -> Iterator[SpeechEvent]:
        """On the job's thread: the use case (which waits for a slot of the engine's batch) in
        the caller's trace."""
        parent = propagate.extract({"traceparent": work.traceparent}) if work.traceparent else None
        token = otel_context.attach(parent) if parent is not None else None
        request = work.request
        try:
            with self._tracer.span("runpod.job", {"runpod.job_id": job_id, "request.id": request.request_id}):
                yield from self._service.speak(request, cancel, received_at=received)  # waits its turn there
        finally:
            if token is not None:
                otel_context.detach(token)

    def _report(self, job: Mapping[str, Any], event: Progress, received: float, last: list[float]) -> None:
        """At most one progress update per interval; `last` holds this job's previous one."""
        now = time.monotonic()
        if now - last[0] < self._options.progress_interval:
            return
        last[0] = now
        try:
            self._progress(job, {"frames_done": event.frames_done,
                                 "audio_seconds": round(event.frames_done / 25.0, 2),
                                 "chunks_done": event.chunks_done,
                                 "chunks_total": event.chunks_total,
                                 "elapsed_seconds": round(now - received, 2)})
        except Exception:  # progress is a courtesy: never fail the job for it
            log.warning("progress update for job %s failed", job.get("id"), exc_info=True)

    def _failed(self, error: DomainError, received: float) -> dict[str, Any]:
        self._metrics.failed(error, time.monotonic() - received)
        log.info("job failed: %s: %s", error.code, error.message)
        return error_response(error)

    @staticmethod
    def _result(response: dict[str, Any]) -> dict[str, Any]:
        return JobOutput({"type": "result", **response})


@dataclass
class _Stream:
    """One streaming job's state."""

    job: Mapping[str, Any]
    received: float
    sent: int = 0  # base64 bytes of audio so far
    stored: AudioStored | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    last_report: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_report.append(self.received)


def _internal(exc: Exception) -> DomainError:
    """The log has the traceback; the caller gets the kind of failure, no internals."""
    return DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                       f"internal error ({type(exc).__name__}); the worker's log has the details",
                       {"exception": type(exc).__name__})
