"""A speaking session's bookkeeping, the same for every face (the WebSocket, gRPC SpeakText):
which segment the audio belongs to, where each one starts and ends on the stream's clock, and
what a barge-in stopped. The faces turn these events into their own messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from core.service.text_feed import TextFeed


@dataclass(frozen=True)
class SegmentStarted:
    index: int
    text: str
    audio_start_ms: float
    text_to_audio_ms: float  # from the segment's last character to its first audio


@dataclass(frozen=True)
class SegmentDone:
    index: int
    text: str
    audio_start_ms: float
    audio_end_ms: float


@dataclass(frozen=True)
class Cancelled:
    index: int | None  # the segment it cut short; None when nothing was being spoken
    audio_end_ms: float
    dropped_text: str


SessionEvent = SegmentStarted | SegmentDone | Cancelled


@dataclass
class SessionHooks:
    """What the metrics hear: a segment's text-to-first-audio seconds, a session's end."""

    segment_latency: Callable[[float], None] = lambda seconds: None
    session_ended: Callable[[int, int], None] = lambda segments, cancellations: None


class SessionTracker:
    def __init__(self, feed: TextFeed, sample_rate: int, clock: Callable[[], float] = time.monotonic,
                 latency: Callable[[float], None] = lambda seconds: None, index_base: int = 0,
                 samples: int = 0) -> None:
        """`index_base` and `samples`: where an earlier part of the session (before a
        session.update between segments) left the indices and the clock."""
        self.feed, self.sample_rate, self._clock, self._latency = feed, sample_rate, clock, latency
        self.index_base = index_base
        self.samples = samples  # audio so far: the session's clock
        self.cancellations = 0
        self._announced = -1  # the last segment announced
        self._current = 0  # the segment whose audio comes now (segments done so far)
        self._segment_start = 0
        self._pending: list[str] | None = None  # a cancel waiting for its segment's end

    def ms(self, samples: int | None = None) -> float:
        return round((self.samples if samples is None else samples) * 1000 / self.sample_rate, 3)

    def audio(self, samples: int) -> list[SessionEvent]:
        """Before `samples` more audio goes out: the start of its segment, when it is new."""
        events: list[SessionEvent] = [self._start()] if self._announced < self._current else []
        self.samples += samples
        return events

    def segment_ended(self, index: int) -> list[SessionEvent]:
        """The engine says segment `index` has sent all its audio."""
        events: list[SessionEvent] = [self._start()] if self._announced < index else []
        segment = self.feed.segment(index)
        self._current = index + 1
        events.append(SegmentDone(self.index_base + index, segment.text, self.ms(self._segment_start), self.ms()))
        if self._pending is not None:
            events.append(Cancelled(self.index_base + index, self.ms(), " ".join(self._pending)))
            self._pending = None
        return events

    def cancel(self) -> list[SessionEvent]:
        """Barge-in: what was queued is dropped now; the segment being spoken (if any) reports
        its end, then the cancel, when the engine has stopped it."""
        self.cancellations += 1
        dropped = self.feed.cancel()
        if self._announced < self._current:  # nothing being spoken now
            return [Cancelled(None, self.ms(), " ".join(dropped))]
        self._pending = dropped
        return []

    def _start(self) -> SegmentStarted:
        self._announced = self._current
        segment = self.feed.segment(self._current)
        self._segment_start = self.samples
        latency = max(0.0, self._clock() - segment.ready_at)
        self._latency(latency)
        return SegmentStarted(self.index_base + segment.index, segment.text, self.ms(), round(latency * 1000, 1))

    @property
    def idle(self) -> bool:
        """Every segment the engine took has ended, and no text waits: the session is between segments."""
        return self._current == self.feed.segments_taken and self.feed.idle()
