"""One speaking session's text: the session appends as it arrives, the engine takes segments one
at a time, in order (see core/domain/segmenter.py for where the cuts fall)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from core.domain.errors import ErrorCode, validation_error
from core.domain.segmenter import Segmenter

MAX_SESSION_CHARS = 200_000  # about four hours of speech in one session
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Segment:
    index: int
    text: str
    ready_at: float  # when its last character arrived (monotonic seconds)


class TextFeed:
    def __init__(self, segmenter: Segmenter | None = None, max_chars: int = MAX_SESSION_CHARS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._segmenter = segmenter or Segmenter()
        self._max_chars, self._clock = max_chars, clock
        self._ready: deque[Segment] = deque()
        self._taken: list[Segment] = []  # handed to the engine, in order
        self._count = 0
        self._received = 0
        self._done = False
        self._interrupt = threading.Event()
        self._lock = threading.Condition()

    # -- the session's side -----------------------------------------------------------------

    def append(self, text: str) -> None:
        with self._lock:
            if self._done:
                raise validation_error(ErrorCode.INVALID_TRANSCRIPT, "the input is done: no more text",
                                       field="text", constraint="after_done")
            if self._received + len(text) > self._max_chars:
                raise validation_error(ErrorCode.TEXT_TOO_LONG, f"a session takes at most {self._max_chars} characters",
                                       field="text", constraint=f"max_length={self._max_chars}")
            self._received += len(text)
            self._add(self._segmenter.append(text))

    def flush(self) -> None:
        with self._lock:
            self._add(self._segmenter.flush())

    def done(self) -> None:
        with self._lock:
            self._add(self._segmenter.flush())
            self._done = True
            self._lock.notify_all()

    def cancel(self) -> list[str]:
        """Barge-in: the segment being spoken stops within a decode block, the ones waiting and
        the text not yet cut are dropped (returned). Text appended after this starts afresh."""
        with self._lock:
            dropped = [s.text for s in self._ready]
            self._ready.clear()
            rest = self._segmenter.flush()
            self._interrupt.set()
            self._lock.notify_all()
            return dropped + rest

    def idle(self) -> bool:
        """Nothing waits to be spoken: no segment ready, no text short of a cut."""
        with self._lock:
            return not self._ready and self._segmenter.buffered == 0

    def segment(self, index: int) -> Segment:
        with self._lock:
            return self._taken[index]

    @property
    def segments_taken(self) -> int:
        with self._lock:
            return len(self._taken)

    # -- the engine's side (TextSource) -----------------------------------------------------

    def next(self, stop: Callable[[], bool]) -> str | None:
        with self._lock:
            while not self._ready:
                if self._done or stop():
                    return None
                self._lock.wait(POLL_SECONDS)
            segment = self._ready.popleft()
            self._taken.append(segment)
            self._interrupt.clear()  # text that came after a cancel starts afresh
            return segment.text

    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def more(self) -> bool:
        with self._lock:
            return bool(self._ready) or not self._done

    def spoken(self) -> str:
        with self._lock:
            return " ".join(s.text for s in self._taken)

    def _add(self, texts: list[str]) -> None:
        now = self._clock()
        for text in texts:
            self._ready.append(Segment(self._count, text, now))
            self._count += 1
        if texts:
            self._lock.notify_all()
