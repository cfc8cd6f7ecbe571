from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

from core.domain.request import SpeechRequest
from core.domain.voice import VoicePrompt


@dataclass(frozen=True, repr=False)
class EngineAudio:
    """Waveform for frames [frame_index, frame_index + len(samples) / samples_per_frame)."""

    samples: array[float]  # float32 mono at the engine's sample rate
    frame_index: int

    def __repr__(self) -> str:
        return f"EngineAudio(frame {self.frame_index}, {len(self.samples)} samples)"


@dataclass(frozen=True)
class EngineProgress:
    frames_done: int
    chunks_done: int
    chunks_total: int


@dataclass(frozen=True)
class EngineDone:
    frames: int
    stop_reason: str  # e.g. "end_token", "max_new_tokens", "silence", "duration_bound"
    # seconds: load, prefill, decode, vocode, first_audio (from the start of stream())
    timings: dict[str, float] = field(default_factory=dict)
    text_output: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


EngineEvent = EngineAudio | EngineProgress | EngineDone


@dataclass(frozen=True)
class EngineLoad:
    """How busy the engine is: `capacity` requests generate at once, more wait in order."""

    capacity: int
    active: int = 0
    waiting: int = 0
    # the prompt-prefix cache (system and voice turns whose KV is reused), when the engine has one
    prefix_hits: int = 0
    prefix_misses: int = 0
    prefix_evictions: int = 0
    prefix_bytes: int = 0


@runtime_checkable
class SpeechEngine(Protocol):
    """Turns text into audio, streaming it as frames are decoded.

    `stream` yields EngineAudio and EngineProgress events and ends with exactly one EngineDone.
    It checks `cancel` between decode steps and stops early once it is set. Up to
    `load().capacity` streams may run at once, each on its own thread. It raises
    DomainError for failures it can name (model_error, inference_error); anything else it
    raises is treated as an inference error. One failed request leaves the engine usable.
    """

    sample_rate: int

    def stream(
        self,
        request: SpeechRequest,
        voices: Sequence[VoicePrompt],
        cancel: threading.Event,
    ) -> Iterator[EngineEvent]: ...

    def max_frames(self, request: SpeechRequest) -> int:
        """The most audio frames the request can produce (all its stop bounds), known before
        generating and without the model."""
        ...

    def load(self) -> EngineLoad:
        """Capacity and occupancy now; known before the model is loaded."""
        ...

    def warm_up(self) -> None:
        """Load and warm the model now instead of on the first request."""

    def is_ready(self) -> bool: ...

    def describe(self) -> dict[str, Any]:
        """Model name, checkpoint layout and revision, device, dtype: goes into metadata."""
        ...

    def close(self) -> None: ...
