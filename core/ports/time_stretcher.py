"""Changing the pace of speech without changing its pitch (a request's `speed`), on audio that
streams: chunks go in as they are made, and come out as soon as they can."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.domain.audio import Samples


class StretchStream(Protocol):
    def push(self, samples: Samples) -> Samples:
        """Audio that can go out now (possibly none yet)."""
        ...

    def finish(self) -> Samples:
        """The rest: in all, the input's length divided by the speed, to the sample."""
        ...


@runtime_checkable
class TimeStretcher(Protocol):
    def open(self, speed: float, sample_rate: int) -> StretchStream: ...
