from __future__ import annotations

from array import array
from typing import Protocol, runtime_checkable

from core.domain.audio import EncodedAudio


@runtime_checkable
class AudioEncoder(Protocol):
    """Writes finished audio in a container format (wav always; others when available)."""

    formats: frozenset[str]

    def encode(self, samples: array[float], sample_rate: int, fmt: str) -> EncodedAudio: ...
