"""The requests a worker has in flight, and how it stops: told to stop (SIGTERM, what RunPod
and Kubernetes send when they scale a worker down), it takes no new request, lets the ones in
flight finish for a while, then stops what is left with an error that says why."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable

from core.domain.errors import DomainError, ErrorCode, ErrorType

log = logging.getLogger(__name__)


def shutting_down(detail: str = "") -> DomainError:
    return DomainError(ErrorType.SYSTEM, ErrorCode.SHUTTING_DOWN,
                       "the worker is shutting down" + (f" ({detail})" if detail else "") + "; retry on another worker")


class Drain:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._in_flight: dict[int, threading.Event] = {}
        self._stopped: set[int] = set()
        self._closing = False
        self._tickets = itertools.count()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def admit(self, cancel: threading.Event) -> int:
        """A request starts: a ticket for `release`, or SHUTTING_DOWN once closing."""
        with self._lock:
            if self._closing:
                raise shutting_down()
            ticket = next(self._tickets)
            self._in_flight[ticket] = cancel
            return ticket

    def release(self, ticket: int) -> None:
        with self._lock:
            self._in_flight.pop(ticket, None)
            self._lock.notify_all()

    def stopped(self, ticket: int) -> bool:
        """Whether the shutdown stopped this request (its cancel came from `close`)."""
        with self._lock:
            return ticket in self._stopped

    def close(self, seconds: float, stop_seconds: float = 10.0) -> int:
        """Take no new request; wait up to `seconds` for the ones in flight; cancel what is
        left and wait up to `stop_seconds` more for them to end (each ends within a decode
        step). Returns how many were stopped."""
        with self._lock:
            self._closing = True
            deadline = self._clock() + seconds
            while self._in_flight and self._clock() < deadline:
                self._lock.wait(min(0.1, max(0.0, deadline - self._clock())))
            left = dict(self._in_flight)
            self._stopped.update(left)
        if left:
            log.warning("shutdown: stopping %d request(s) still running after %.0f s", len(left), seconds)
        for cancel in left.values():
            cancel.set()
        with self._lock:
            end = self._clock() + stop_seconds
            while self._in_flight and self._clock() < end:
                self._lock.wait(min(0.1, max(0.0, end - self._clock())))
        return len(left)
