"""What the worker has done, in Prometheus text: requests and errors, real-time factor and
time to first audio, queue wait, the engine's batch occupancy, audio-seconds per second, GPU
memory."""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core.domain.errors import DomainError
from core.domain.events import SpeechCompleted
from core.ports.speech_engine import EngineLoad

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 50.0)
_TTFA_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
_DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _MemoryCollector:
    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self):
        family = GaugeMetricFamily(
            "higgs_tts_gpu_memory_bytes", "GPU memory held by the worker", labels=["kind"]
        )
        try:
            values = self._read()
        except Exception:  # a scrape never fails because the device could not be asked
            values = {}
        for kind, value in values.items():
            family.add_metric([kind], float(value))
        yield family


# What an autoscaler reads (KEDA's query in deploy/kubernetes, docs/deploy.md): the same names on
# every face (HTTP, gRPC, the RunPod worker's health port)
REQUESTS_WAITING = "higgs_tts_requests_waiting"
SLOTS_BUSY = "higgs_tts_slots_busy"
SLOTS_CAPACITY = "higgs_tts_slots_capacity"
AUDIO_RATE = "higgs_tts_audio_seconds_per_second"
SCALING_METRICS = (REQUESTS_WAITING, SLOTS_BUSY, SLOTS_CAPACITY, AUDIO_RATE)


class _LoadCollector:
    """The engine's batch: capacity, busy slots, requests waiting for one (in the engine, and in
    the service's admission queue: `waiting()`)."""

    def __init__(self, read: Callable[[], EngineLoad], waiting: Callable[[], int]) -> None:
        self._read = read
        self._waiting = waiting

    def collect(self):
        try:
            load = self._read()
            queued = self._waiting()
        except Exception:  # a scrape never fails because the engine could not be asked
            return
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        for kind, name, value, text in (
            (gauge, SLOTS_CAPACITY, load.capacity, "Requests the engine decodes together (KV-cache slots)"),
            (gauge, SLOTS_BUSY, load.active, "Requests decoding now (busy slots)"),
            (gauge, REQUESTS_WAITING, load.waiting + queued, "Requests admitted and waiting for a free slot"),
            (gauge, "higgs_tts_prefix_cache_bytes", load.prefix_bytes, "Bytes of prompt-prefix KV kept"),
            (counter, "higgs_tts_prefix_cache_hits", load.prefix_hits, "Prefills that reused a cached prompt prefix"),
            (counter, "higgs_tts_prefix_cache_misses", load.prefix_misses, "Prefills that computed their prefix"),
            (counter, "higgs_tts_prefix_cache_evictions", load.prefix_evictions,
             "Prefixes dropped for the memory budget"),
        ):
            family = kind(name, text)
            family.add_metric([], float(value))
            yield family
        graphs = GaugeMetricFamily("higgs_cuda_graphs", "Decode-step buckets by CUDA graph state", labels=["state"])
        graphs.add_metric(["captured"], float(load.graphs_captured))
        graphs.add_metric(["fallback"], float(load.graphs_fallback))
        yield graphs


class _Throughput:
    """Seconds of audio finished per second of wall time over the last `window` seconds."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._done: collections.deque[tuple[float, float]] = collections.deque()
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._done.append((time.monotonic(), seconds))

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._done and self._done[0][0] < now - self.window:
                self._done.popleft()
            total = sum(seconds for _, seconds in self._done)
        return total / max(1e-9, min(self.window, now - self._started))


class _AsrMetrics:
    """The ASR pass: chunks scored, chunks generated again, chunks that still failed, its time."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.verified = Counter("higgs_tts_chunks_verified", "Text chunks the ASR pass scored", registry=r)
        self.regenerated = Counter("higgs_tts_chunks_regenerated",
                                   "Generations of a chunk beyond its first (verify on)", registry=r)
        self.failing = Counter("higgs_tts_chunks_failing",
                               "Chunks kept above max_wer after their last attempt, or unverified", registry=r)
        self.seconds = Counter("higgs_tts_asr_seconds", "Seconds spent transcribing audio", registry=r)

    def completed(self, event: SpeechCompleted) -> None:
        self.seconds.inc(event.timings.asr)
        for chunk in event.metadata.get("verification", ()):
            self.verified.inc()
            self.regenerated.inc(max(0, int(chunk.get("attempts", 1)) - 1))
            if not chunk.get("passed", True):
                self.failing.inc()


class WorkerMetrics:
    def __init__(
        self,
        gpu_memory: Callable[[], Mapping[str, int]] | None = None,
        engine_load: Callable[[], EngineLoad] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "higgs_tts_requests", "Jobs handled, by outcome", ["outcome"], registry=r
        )
        self.errors = Counter(
            "higgs_tts_errors", "Failed jobs, by error type and code", ["type", "code"], registry=r
        )
        self.rtf = Histogram(
            "higgs_tts_real_time_factor",
            "Seconds of generation per second of audio (below 1 is faster than real time)",
            buckets=_RTF_BUCKETS, registry=r,
        )
        self.ttfa = Histogram(
            "higgs_tts_time_to_first_audio_seconds",
            "From the start of generation to the first audio chunk",
            buckets=_TTFA_BUCKETS, registry=r,
        )
        self.duration = Histogram(
            "higgs_tts_request_duration_seconds", "Whole job, queue included",
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.audio_seconds = Counter(
            "higgs_tts_audio_seconds", "Seconds of audio generated", registry=r
        )
        self.queue_wait = Histogram(
            "higgs_tts_queue_wait_seconds", "From arrival until the request's prefill began",
            buckets=_TTFA_BUCKETS, registry=r,
        )
        self.throughput = _Throughput()
        Gauge(AUDIO_RATE, "Audio finished per second over the last minute",
              registry=r).set_function(self.throughput.rate)
        # the service's one queue in front of the engine (watch_queue): waiting, and generating
        self._queue: tuple[Callable[[], int], Callable[[], int]] = (lambda: 0, lambda: 0)
        self.queue_depth = Gauge("higgs_tts_queue_depth", "Requests waiting for the engine", registry=r)
        self.queue_depth.set_function(lambda: self._queue[0]())
        self.in_flight = Gauge("higgs_tts_in_flight", "Requests generating now", registry=r)
        self.in_flight.set_function(lambda: self._queue[1]())
        # speaking sessions (WebSocket): text-to-audio latency per segment, segments, barge-ins
        self.segment_first_audio = Histogram(
            "higgs_tts_segment_first_audio_seconds",
            "From a session segment's last text character to its first audio", buckets=_TTFA_BUCKETS, registry=r)
        self.sessions = Counter("higgs_tts_sessions", "Speaking sessions finished", registry=r)
        self.session_segments = Counter("higgs_tts_session_segments", "Segments spoken in sessions", registry=r)
        self.session_cancellations = Counter("higgs_tts_session_cancellations",
                                             "Barge-ins (response.cancel) in sessions", registry=r)
        self.ready = Gauge("higgs_tts_ready", "1 when the model is loaded and warmed", registry=r)
        self.asr = _AsrMetrics(r)
        if gpu_memory is not None:
            r.register(_MemoryCollector(gpu_memory))
        if engine_load is not None:
            r.register(_LoadCollector(engine_load, lambda: self._queue[0]()))

    def watch_queue(self, waiting: Callable[[], int], running: Callable[[], int]) -> None:
        """The service's admission queue: requests admitted and waiting (queue_depth, and in
        higgs_tts_requests_waiting), and generating (in_flight)."""
        self._queue = (waiting, running)

    def completed(self, event: SpeechCompleted, seconds: float) -> None:
        self.requests.labels("success").inc()
        self.rtf.observe(event.real_time_factor)
        if event.timings.first_audio is not None:
            self.ttfa.observe(event.timings.first_audio)
        self.audio_seconds.inc(event.duration_seconds)
        self.throughput.add(event.duration_seconds)
        self.queue_wait.observe(event.timings.queue)
        self.duration.observe(seconds)
        self.asr.completed(event)

    def session_ended(self, segments: int, cancellations: int) -> None:
        self.sessions.inc()
        self.session_segments.inc(segments)
        self.session_cancellations.inc(cancellations)

    def failed(self, error: DomainError, seconds: float) -> None:
        self.requests.labels("error").inc()
        self.errors.labels(error.type.value, error.code).inc()
        self.duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
