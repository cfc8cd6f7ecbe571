"""Judging each text chunk's audio as soon as it is vocoded (an ASR pass, say), and generating
a chunk again when it fails: the attempts of one chunk, their seeds, and which one is kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

import numpy as np

from boson_multimodal.sampling import DecodeStats, SamplingConfig
from boson_multimodal.streaming import Segment, StreamingVocoder

# attempt a of chunk i is sampled with seed + i + a * ATTEMPT_STRIDE: every attempt of every
# chunk has its own seed, and attempt 0 keeps the seed it has without a check
ATTEMPT_STRIDE = 2**32
SEED_SPACE = 2**63


class ChunkCheck(Protocol):
    """`hold`: a chunk's audio waits until it is judged, and one scored above `max_score` is
    generated again, `attempts` times at most, the lowest score kept; else audio streams at
    once and each chunk is judged once, after it went out. A score of None cannot be judged:
    the attempt is kept as it is."""

    hold: bool
    attempts: int
    max_score: float

    def judge(self, chunk: int, attempt: int, text: str, samples: np.ndarray) -> float | None: ...

    def kept(self, chunk: int, attempt: int, start_sample: int) -> None: ...


def attempt_sampling(sampling: SamplingConfig, chunk: int, attempt: int = 0) -> SamplingConfig:
    """The sampling of a chunk's attempt: a seed, when given, moves on by one per chunk and by
    ATTEMPT_STRIDE per attempt."""
    if sampling.seed is None:
        return sampling
    seed = (sampling.seed + chunk + attempt * ATTEMPT_STRIDE) % SEED_SPACE
    return SamplingConfig(**{**sampling.__dict__, "seed": seed})


@dataclass
class Take:
    """One attempt at a chunk: its decode, its vocoder, the audio it made (held back, or sent)."""

    attempt: int
    vocoder: StreamingVocoder
    hold: bool
    stats: DecodeStats = field(default_factory=DecodeStats)
    segments: list[Segment] = field(default_factory=list)
    reason: str = ""
    score: float | None = None

    def add(self, segment: Segment) -> Iterator[Segment]:
        """The segment, now when the take is not held (it is kept for judging either way)."""
        self.segments.append(segment)
        if not self.hold:
            yield segment

    def samples(self) -> np.ndarray:
        if not self.segments:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([s.samples for s in self.segments]).astype(np.float32, copy=False)

    def passed(self, check: ChunkCheck) -> bool:
        return self.score is None or self.score <= check.max_score

    def better_than(self, other: "Take | None") -> bool:
        if other is None or self.score is None:
            return True
        return other.score is not None and self.score < other.score
