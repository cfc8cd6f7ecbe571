"""The calls that generate now and the ones that wait: as many generate at once as the engine
decodes together (its batch), the rest wait in arrival order up to a bound."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from core.domain.errors import DomainError, ErrorCode, ErrorType

log = logging.getLogger(__name__)

Job = Callable[[], None]


class GenerationQueue:
    """Runs jobs on `workers` threads, in arrival order. Up to `max_waiting` jobs wait behind
    the running ones; a job over that bound is refused at once (QUEUE_FULL) instead of waiting
    for a deadline it would miss.

    Each job's use-case generator is consumed by one thread from start to end, as it must be
    (it enters spans around its yields), and never abandoned half-way when a caller goes away."""

    def __init__(self, max_waiting: int, workers: int = 1) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.max_waiting = max_waiting
        self.workers = workers
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._admitted = 0  # the running job and the waiting ones
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"generation-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def admitted(self) -> int:
        with self._lock:
            return self._admitted

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise DomainError(
                    ErrorType.MODEL, ErrorCode.MODEL_NOT_READY, "the server is shutting down"
                )
            if self._admitted >= self.workers + self.max_waiting:
                raise DomainError(
                    ErrorType.SYSTEM,
                    ErrorCode.QUEUE_FULL,
                    f"{self.max_waiting} requests are already waiting; retry later",
                    {"max_queue": self.max_waiting},
                )
            self._admitted += 1
        self._jobs.put(job)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, let the admitted ones run (cancelled ones end within a step);
        True when every thread has finished."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._jobs.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job reports its own failures; this keeps the line moving
                log.exception("generation job failed")
            finally:
                with self._lock:
                    self._admitted -= 1
