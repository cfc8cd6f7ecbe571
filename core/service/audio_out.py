"""A request's audio as it goes out of the use case."""

from __future__ import annotations

from array import array
from typing import Callable, Iterator

from core.domain.audio import Samples
from core.domain.events import AudioChunk
from core.ports.time_stretcher import StretchStream


class AudioOut:
    """The request's audio as it goes out: numbered chunks, through the stretcher when the
    request has a `speed` (which holds audio back until it has a block: `drain` sends the rest)."""

    def __init__(self, request_id: str, rate: int, stretch: StretchStream | None, clock: Callable[[], float]) -> None:
        self.request_id, self.rate, self.stretch, self.clock = request_id, rate, stretch, clock
        self.samples: Samples = array("f")
        self.first_audio: float | None = None
        self.sequence = 0
        self.started = clock()

    def add(self, samples: Samples, frame_index: int) -> Iterator[AudioChunk]:
        out = samples if self.stretch is None else self.stretch.push(samples)
        if out:
            if self.first_audio is None:
                self.first_audio = self.clock() - self.started
            self.samples.extend(out)
            yield AudioChunk(self.request_id, self.sequence, out, self.rate, frame_index)
            self.sequence += 1

    def drain(self, frame_index: int) -> Iterator[AudioChunk]:
        if self.stretch is not None:
            tail = self.stretch.finish()
            self.stretch, stretch = None, self.stretch
            yield from self.add(tail, frame_index)
            self.stretch = stretch
