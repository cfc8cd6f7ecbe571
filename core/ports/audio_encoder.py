from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.domain.audio import EncodedAudio, Samples


@runtime_checkable
class AudioEncoder(Protocol):
    """Writes finished audio in a container format (wav always; others when available)."""

    formats: frozenset[str]

    def encode(self, samples: Samples, sample_rate: int, fmt: str) -> EncodedAudio: ...
