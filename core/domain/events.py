"""What happens during one request, in order. Every driving adapter maps this one stream onto
its protocol (gRPC messages, RunPod stream output, the CLI's progress bar)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.domain.audio import EncodedAudio, Samples
from core.domain.errors import DomainError
from core.domain.verification import ChunkVerification


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage of one request."""

    queue: float = 0.0
    load: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    vocode: float = 0.0
    upload: float = 0.0
    asr: float = 0.0  # transcribing the audio (verification, word timings), inside generation
    first_audio: float | None = None  # from the start of generation to the first chunk
    total: float = 0.0

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class SpeechStarted:
    request_id: str
    sample_rate: int
    channels: int = 1
    voices: tuple[str, ...] = ()
    cached: bool = False  # the audio comes from the result cache (an earlier identical request)


@dataclass(frozen=True, repr=False)
class AudioChunk:
    request_id: str
    sequence: int
    samples: Samples  # float32 mono
    sample_rate: int
    frame_index: int  # index of the first audio frame (25 per second) in this chunk

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    def __repr__(self) -> str:
        return f"AudioChunk(#{self.sequence}, frame {self.frame_index}, {len(self.samples)} samples)"


@dataclass(frozen=True)
class Progress:
    request_id: str
    frames_done: int
    chunks_done: int
    chunks_total: int
    segment: int | None = None  # a speaking session's segment that has just ended (all its audio sent)


@dataclass(frozen=True)
class ChunkVerified:
    """A text chunk went out and the ASR pass says what was heard in it (after its audio when
    the request only reports, before it when the chunk had to pass first)."""

    request_id: str
    result: ChunkVerification


@dataclass(frozen=True)
class AudioStored:
    request_id: str
    url: str  # fetchable (presigned for S3, file:// for the local store)
    uri: str  # canonical location, e.g. s3://bucket/key
    bucket: str
    key: str
    bytes: int
    etag: str | None
    record_key: str  # the JSON event record written next to the audio
    captions_key: str | None = None  # the WebVTT captions beside it (when word timings were asked for)


@dataclass(frozen=True, repr=False)
class SpeechCompleted:
    request_id: str
    duration_seconds: float
    sample_rate: int
    timings: Timings
    real_time_factor: float  # seconds of generation per second of audio: below 1 beats real time
    frames: int
    stop_reason: str
    audio: EncodedAudio
    audio_url: str | None = None
    text_output: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SpeechCompleted({self.request_id}, {self.duration_seconds:.2f}s, "
            f"rtf={self.real_time_factor:.2f}, stop={self.stop_reason})"
        )


@dataclass(frozen=True)
class SpeechFailed:
    request_id: str
    error: DomainError


SpeechEvent = SpeechStarted | AudioChunk | Progress | ChunkVerified | AudioStored | SpeechCompleted | SpeechFailed
