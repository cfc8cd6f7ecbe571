from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from core.domain.audio import Samples
from core.domain.request import Synthesis
from core.domain.voice import VoicePrompt


@dataclass(frozen=True, repr=False)
class EngineAudio:
    """Waveform for frames [frame_index, frame_index + len(samples) / samples_per_frame)."""

    samples: Samples  # float32 mono at the engine's sample rate
    frame_index: int

    def __repr__(self) -> str:
        return f"EngineAudio(frame {self.frame_index}, {len(self.samples)} samples)"


@dataclass(frozen=True)
class EngineProgress:
    frames_done: int
    chunks_done: int
    chunks_total: int
    segment: int | None = None  # a speaking session's segment that has just ended


@dataclass(frozen=True)
class EngineTimings:
    """Seconds the engine spent on one request, by stage."""

    queue: float = 0.0  # waiting for a free slot in the batch
    load: float = 0.0  # loading the model (the first request only)
    prefill: float = 0.0
    decode: float = 0.0
    vocode: float = 0.0
    asr: float = 0.0  # the chunk check's transcriptions (filled by the use case, which makes them)


@dataclass(frozen=True)
class EngineWork:
    """What the engine did for one request, for the response's metadata."""

    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens computed (the rest came from the prefix cache)
    decode_steps: int = 0
    chunk_stop_reasons: tuple[str, ...] = ()  # per text chunk
    chunk_frames: tuple[int, ...] = ()  # audio frames per text chunk
    prefix_cache: tuple[str, ...] = ()  # per text chunk: hit, miss or off

    def to_metadata(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EngineDone:
    frames: int
    stop_reason: str  # e.g. "end_token", "max_new_tokens", "silence", "duration_bound"
    timings: EngineTimings = EngineTimings()
    text_output: str = ""
    work: EngineWork = EngineWork()


EngineEvent = EngineAudio | EngineProgress | EngineDone


class ChunkCheck(Protocol):
    """Judges each text chunk's audio once it is vocoded (an ASR pass). With `hold`, the engine
    keeps a chunk's audio back until it is judged, generates a chunk whose score is above
    `max_score` again (up to `attempts` times in all, each attempt with the next seed of the
    request's random stream) and sends the attempt with the lowest score; without it, audio
    streams at once and each chunk is judged once, after it was sent."""

    hold: bool
    attempts: int
    max_score: float

    def judge(self, chunk: int, attempt: int, text: str, samples: Samples) -> float | None:
        """The chunk's error rate (lower is better); None when it could not be judged (kept as it is)."""
        ...

    def kept(self, chunk: int, attempt: int, start_sample: int) -> None:
        """Which attempt of the chunk went out, and the sample of the output it starts at."""


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
    # the decode step's CUDA graphs: buckets captured, and buckets decoded eagerly because their
    # capture failed (HIGGS_CUDA_GRAPHS=auto)
    graphs_captured: int = 0
    graphs_fallback: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """The model behind the engine. `details` are further facts that shape its output (they key
    the result cache); `sizing` only says how much it serves at once (they do not); `startup`
    how long the engine took to become ready (`load_s`, `warm_up_s`: for the logs, never in
    responses)."""

    engine: str
    loaded: bool = True
    layout: str | None = None
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    sizing: Mapping[str, Any] = field(default_factory=dict)
    startup: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Flat, for metadata, event records and /ready."""
        return {"engine": self.engine, "loaded": self.loaded, "layout": self.layout, "revision": self.revision,
                "device": self.device, "dtype": self.dtype, **self.details, **self.sizing}

    def identity(self) -> dict[str, Any]:
        """What decides the audio: everything but whether it is loaded and how much it serves."""
        return {k: v for k, v in self.to_dict().items() if k != "loaded" and k not in self.sizing}


@runtime_checkable
class SpeechEngine(Protocol):
    """Turns text into audio, streaming it as frames are decoded.

    `stream` yields EngineAudio and EngineProgress events and ends with exactly one EngineDone;
    with a `check`, it judges each text chunk as ChunkCheck says.
    It checks `cancel` between decode steps and stops early once it is set. Up to
    `load().capacity` streams may run at once, each on its own thread. It raises
    DomainError for failures it can name (model_error, inference_error); anything else it
    raises is treated as an inference error. One failed request leaves the engine usable.
    """

    sample_rate: int

    def speak(
        self,
        synthesis: Synthesis,
        voices: Sequence[VoicePrompt],
        cancel: threading.Event,
        check: ChunkCheck | None = None,
    ) -> Iterator[EngineEvent]: ...

    def prepare(self, synthesis: Synthesis, voices: Sequence[VoicePrompt]) -> float:
        """Everything about the request that can fail before its first audio: loads the model
        (model_error), reads the voice clips and checks the text can be generated as asked
        (validation_error). Called before `stream`, which may then fail only while generating.
        Returns the seconds it spent loading the model (0 when it was loaded)."""
        ...

    def max_frames(self, synthesis: Synthesis) -> int:
        """The most audio frames the request can produce (all its stop bounds), known before
        generating and without the model."""
        ...

    def load(self) -> EngineLoad:
        """Capacity and occupancy now; known before the model is loaded."""
        ...

    def warm_up(self) -> None:
        """Load and warm the model now instead of on the first request."""

    def is_ready(self) -> bool: ...

    def describe(self) -> ModelInfo:
        """Model name, checkpoint layout and revision, device, dtype: goes into metadata."""
        ...

    def close(self) -> None: ...
