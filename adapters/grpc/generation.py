"""The threads gRPC calls generate on: one per request the service admits (the engine's batch and
the admission queue behind it), so an admitted call never waits for a thread; the order and the
bound are the service's (core/service/admission.py)."""

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
    """Runs jobs on `workers` threads. Each job's use-case generator is consumed by one thread
    from start to end, as it must be (it enters spans around its yields), and never abandoned
    half-way when a caller goes away."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"generation-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise DomainError(ErrorType.MODEL, ErrorCode.MODEL_NOT_READY, "the server is shutting down")
        self._jobs.put(job)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, let the submitted ones run (cancelled ones end within a step);
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
