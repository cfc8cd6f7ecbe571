"""The one bounded wait in front of the engine, for every face: as many requests generate at
once as the engine decodes together, up to `max_queue` more wait in arrival order, and the next
is refused at once (QUEUE_FULL) rather than left waiting for a deadline it would miss. A face
reserves a place when the request arrives (so a refusal is its answer before anything starts)
and the use case waits on it for a free slot."""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

from core.domain.errors import DomainError, ErrorCode, ErrorType

MAX_QUEUE = 8  # requests that may wait beyond the ones the engine decodes together (HIGGS_MAX_QUEUE)


class Reservation:
    """A request's place: `wait` until it may generate, `release` when it is over (both once;
    release also for a place never waited on)."""

    def __init__(self, admission: "Admission") -> None:
        self._admission = admission
        self.running = False
        self.released = False

    def wait(self, cancel: threading.Event | None = None) -> float:
        """Blocks until a slot is free (or `cancel` is set: then it never runs); the seconds it waited."""
        return self._admission._wait(self, cancel or threading.Event())

    def release(self) -> None:
        self._admission._release(self)


class Admission:
    def __init__(self, capacity: Callable[[], int], max_queue: int = MAX_QUEUE) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be at least 0")
        self.capacity, self.max_queue = capacity, max_queue
        self._changed = threading.Condition()
        self._admitted = 0  # reserved and not released: running or waiting
        self._running = 0
        self._order: collections.deque[Reservation] = collections.deque()

    @property
    def running(self) -> int:
        """Requests generating now (the in-flight metric)."""
        with self._changed:
            return self._running

    @property
    def waiting(self) -> int:
        """Requests admitted that do not generate yet (the queue-depth metric)."""
        with self._changed:
            return self._admitted - self._running

    def reserve(self) -> Reservation:
        with self._changed:
            if self._admitted >= self.capacity() + self.max_queue:
                raise DomainError(ErrorType.SYSTEM, ErrorCode.QUEUE_FULL,
                                  f"{self.max_queue} requests are already waiting; retry later",
                                  {"max_queue": self.max_queue})
            self._admitted += 1
            return Reservation(self)

    def _wait(self, place: Reservation, cancel: threading.Event) -> float:
        started = time.monotonic()
        with self._changed:
            if place.running or place.released:
                return 0.0
            self._order.append(place)
            while not cancel.is_set() and not (self._order[0] is place and self._running < self.capacity()):
                self._changed.wait(0.1)  # a cancel is seen within 0.1 s
            self._order.remove(place)
            if not cancel.is_set():
                place.running = True
                self._running += 1
            self._changed.notify_all()
        return time.monotonic() - started

    def _release(self, place: Reservation) -> None:
        with self._changed:
            if place.released:
                return
            place.released = True
            self._admitted -= 1
            if place.running:
                self._running -= 1
            self._changed.notify_all()
