"""The RunPod handlers: one job in, the design's GenerationResponse out (or, in streaming
mode, audio chunks and progress, then that response).

The use case is a blocking generator that must be consumed on one thread, so each job runs it
on a worker thread and hands its events to the event loop; the loop stays free for the SDK's
heartbeats, progress updates and the local API. The engine decodes up to `capacity` requests
together (its batch); `concurrency` tells the SDK to take that many jobs at once, and a job
over it waits its turn (the queue depth metric counts the waiting ones).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate

from adapters.runpod.metrics import WorkerMetrics
from adapters.runpod.schema import (
    JobOutput,
    error_response,
    request_from_input,
    success_response,
    traceparent_of,
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
        generate: Callable[..., Iterator[SpeechEvent]],
        metrics: WorkerMetrics,
        options: WorkerOptions = WorkerOptions(),
        progress: ProgressReporter = _no_progress,
        tracer: Tracer | None = None,
        capacity: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._generate = generate
        self.capacity = capacity
        self._metrics = metrics
        self._options = options
        self._progress = progress
        self._tracer = tracer or NoopTracer()
        self._engine_slots = threading.BoundedSemaphore(capacity)
        # each job's generator runs on its own thread for the whole job
        self._threads = ThreadPoolExecutor(max_workers=capacity + 4, thread_name_prefix="job")

    # -- the two handler shapes runpod accepts ----------------------------------------------

    async def handle(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Non-streaming: the whole response once the audio is finished."""
        received = time.monotonic()
        try:
            request = self._request(job)
            self._refuse_if_it_cannot_come_back(request)
        except DomainError as error:
            return self._failed(error, received)
        completed = stored = None
        last_report = [received]
        try:
            async with aclosing(self._events(job, request, received)) as events:
                async for event in events:
                    if isinstance(event, AudioStored):
                        stored = event
                    elif isinstance(event, SpeechCompleted):
                        completed = event
                    elif isinstance(event, SpeechFailed):
                        return self._failed(event.error, received)
                    elif isinstance(event, Progress):
                        self._report(job, event, received, last_report)
            if completed is None:
                raise DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                                  "generation ended without a result")
            response = success_response(completed, stored, self._options.inline_audio_limit)
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
        try:
            request = self._request(job)
        except DomainError as error:
            yield self._result(self._failed(error, received))
            return
        sent = 0
        stored = None
        last_report = [received]
        cancel = threading.Event()
        try:
            async with aclosing(self._events(job, request, received, cancel)) as events:
                async for event in events:
                    if isinstance(event, SpeechStarted):
                        yield {"type": "started", "request_id": event.request_id,
                               "sample_rate": event.sample_rate, "channels": event.channels,
                               "encoding": "pcm_s16le", "voices": list(event.voices)}
                    elif isinstance(event, AudioChunk):
                        data = base64.b64encode(pcm16_bytes(event.samples)).decode("ascii")
                        sent += len(data)
                        if sent > self._options.stream_output_limit:
                            cancel.set()
                            raise DomainError(  # work was done: not a validation error
                                ErrorType.SYSTEM, ErrorCode.PAYLOAD_TOO_LARGE,
                                f"the streamed audio passed {self._options.stream_output_limit} "
                                "bytes, the most a streaming job may return; generation stopped there: "
                                "split the text into several jobs",
                                {"stream_output_limit_bytes": self._options.stream_output_limit,
                                 "streamed_bytes": sent, "audio_seconds_streamed": round(
                                     event.frame_index / FRAME_RATE + len(event.samples) / event.sample_rate, 2)},
                            )
                        yield {"type": "audio", "sequence": event.sequence,
                               "frame_index": event.frame_index, "samples": len(event.samples),
                               "audio_base64": data}
                    elif isinstance(event, Progress):
                        self._report(job, event, received, last_report)
                        yield {"type": "progress", "frames_done": event.frames_done,
                               "chunks_done": event.chunks_done, "chunks_total": event.chunks_total}
                    elif isinstance(event, AudioStored):
                        stored = event
                    elif isinstance(event, SpeechFailed):
                        yield self._result(self._failed(event.error, received))
                        return
                    elif isinstance(event, SpeechCompleted):
                        response = success_response(event, stored, 0, include_audio=False)
                        self._metrics.completed(event, time.monotonic() - received)
                        yield self._result(response)
                        return
            raise DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                              "generation ended without a result")
        except DomainError as error:
            yield self._result(self._failed(error, received))
        except Exception as exc:
            log.exception("job %s failed", job.get("id"))
            yield self._result(self._failed(_internal(exc), received))

    def _refuse_if_it_cannot_come_back(self, request: SpeechRequest) -> None:
        """Before any work: audio that is returned inline and whose bound (the request's stop
        bounds) passes the payload limit is refused now, not after generating it."""
        bound = getattr(self._generate, "inline_bound", None)
        size = bound(request) if bound is not None else None
        limit = self._options.inline_audio_limit
        if size is not None and size > limit:
            raise validation_error(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"this request can produce up to {size} bytes of {request.output_format.value}, over the "
                f"{limit}-byte limit for returning audio inline (RunPod caps a job's payload): give s3_bucket "
                "(or set S3_BUCKET) to receive a URL, lower max_new_tokens, split the text into several jobs "
                "or use the streaming worker",
                field="s3_bucket", constraint=f"inline_audio_max_bytes={limit}", actual_max_bytes=size,
            )

    def concurrency(self, current: int) -> int:
        """runpod's concurrency_modifier: as many jobs as the engine decodes together."""
        return self.capacity

    # -- one job ----------------------------------------------------------------------------

    def _request(self, job: Mapping[str, Any]) -> SpeechRequest:
        job_id = job.get("id")  # the job's id names the request, when it is a usable one
        return request_from_input(job.get("input"), job_id if is_valid_request_id(job_id) else None)

    async def _events(
        self,
        job: Mapping[str, Any],
        request: SpeechRequest,
        received: float,
        cancel: threading.Event | None = None,
    ) -> AsyncIterator[SpeechEvent]:
        """The use case's events, produced on a worker thread, delivered on the event loop.
        Leaving early (the stream's reader is gone) cancels the generation."""
        cancel = cancel or threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        end = object()
        parent = _parent_context(job.get("input"))

        def produce() -> None:
            token = otel_context.attach(parent) if parent is not None else None
            try:
                self._metrics.queue_depth.inc()
                with self._engine_slots:
                    self._metrics.queue_depth.dec()
                    self._metrics.in_flight.inc()
                    try:
                        with self._tracer.span("runpod.job", {"runpod.job_id": job.get("id"),
                                                              "request.id": request.request_id}):
                            for event in self._generate(request, cancel=cancel, received_at=received):
                                loop.call_soon_threadsafe(queue.put_nowait, event)
                    finally:
                        self._metrics.in_flight.dec()
            except BaseException as exc:  # handed to the loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                if token is not None:
                    otel_context.detach(token)
                loop.call_soon_threadsafe(queue.put_nowait, end)

        worker = loop.run_in_executor(self._threads, produce)
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()  # no-op once the use case has finished
            await asyncio.shield(worker)

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


def _parent_context(job_input: Any):
    traceparent = traceparent_of(job_input)
    return propagate.extract({"traceparent": traceparent}) if traceparent else None


def _internal(exc: Exception) -> DomainError:
    """The log has the traceback; the caller gets the kind of failure, no internals."""
    return DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR,
                       f"internal error ({type(exc).__name__}); the worker's log has the details",
                       {"exception": type(exc).__name__})
