"""The speech request and its parts. Each part validates itself when it is built, so a
request that exists is a request the engine can run."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from enum import Enum

from core.domain.errors import ErrorCode, validation_error

MAX_TRANSCRIPT_CHARS = 10_000
MAX_SCENE_PROMPT_CHARS = 2_000
MAX_REFERENCE_TRANSCRIPT_CHARS = 2_000
MAX_REFERENCE_AUDIO_BYTES = 12 * 1024 * 1024
MAX_NEW_TOKENS = 8192
MAX_VOICES = 8
MAX_S3_KEY_BYTES = 1024

_VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# S3 bucket naming rules (also a safe directory name for the local store)
_BUCKET = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class ChunkMethod(str, Enum):
    NONE = "none"
    WORD = "word"
    SPEAKER = "speaker"


class OutputFormat(str, Enum):
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.3
    top_k: int = 50
    top_p: float = 0.95
    max_new_tokens: int = 2048
    seed: int | None = None
    ras_win_len: int = 7
    ras_win_max_num_repeat: int = 2

    def __post_init__(self) -> None:
        t = self.temperature
        if not _is_number(t) or not (0 < t <= 2):
            raise validation_error(
                ErrorCode.INVALID_TEMPERATURE, "temperature must be in (0, 2]", value=t
            )
        if not _is_int(self.top_k) or self.top_k < 1:
            raise validation_error(
                ErrorCode.INVALID_TOP_K, "top_k must be an integer >= 1", value=self.top_k
            )
        p = self.top_p
        if not _is_number(p) or not (0 < p <= 1):
            raise validation_error(ErrorCode.INVALID_TOP_P, "top_p must be in (0, 1]", value=p)
        n = self.max_new_tokens
        if not _is_int(n) or not (1 <= n <= MAX_NEW_TOKENS):
            raise validation_error(
                ErrorCode.INVALID_MAX_NEW_TOKENS,
                f"max_new_tokens must be an integer in [1, {MAX_NEW_TOKENS}]",
                value=n,
            )
        if self.seed is not None and (not _is_int(self.seed) or not (0 <= self.seed < 2**63)):
            raise validation_error(
                ErrorCode.INVALID_SEED, "seed must be an integer in [0, 2^63)", value=self.seed
            )
        if not _is_int(self.ras_win_len) or not (0 <= self.ras_win_len <= 256):
            raise validation_error(
                ErrorCode.INVALID_RAS,
                "ras_win_len must be an integer in [0, 256] (0 turns RAS off)",
                value=self.ras_win_len,
            )
        if not _is_int(self.ras_win_max_num_repeat) or self.ras_win_max_num_repeat < 1:
            raise validation_error(
                ErrorCode.INVALID_RAS,
                "ras_win_max_num_repeat must be an integer >= 1",
                value=self.ras_win_max_num_repeat,
            )


@dataclass(frozen=True)
class Chunking:
    method: ChunkMethod = ChunkMethod.NONE
    max_word_num: int = 100
    max_num_turns: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", ChunkMethod(self.method))
        except ValueError:
            raise validation_error(
                ErrorCode.INVALID_CHUNKING,
                "chunk_method must be one of none, word, speaker",
                value=self.method,
            ) from None
        if not _is_int(self.max_word_num) or not (1 <= self.max_word_num <= 1000):
            raise validation_error(
                ErrorCode.INVALID_CHUNKING,
                "chunk_max_word_num must be an integer in [1, 1000]",
                value=self.max_word_num,
            )
        if not _is_int(self.max_num_turns) or not (1 <= self.max_num_turns <= 100):
            raise validation_error(
                ErrorCode.INVALID_CHUNKING,
                "chunk_max_num_turns must be an integer in [1, 100]",
                value=self.max_num_turns,
            )


def validate_s3_key(key: str) -> str:
    def bad(reason: str) -> Exception:
        return validation_error(ErrorCode.INVALID_S3_KEY, f"s3_key {reason}", value=key)

    if not isinstance(key, str) or not key:
        raise bad("must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_S3_KEY_BYTES:
        raise bad(f"must be at most {MAX_S3_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise bad("must not contain control characters")
    if key.startswith("/") or key.startswith("\\") or _WINDOWS_DRIVE.match(key):
        raise bad("must be relative (no leading '/' or drive)")
    if "\\" in key:
        raise bad("must use '/' as separator")
    if any(part in ("..", ".") for part in key.split("/")):
        raise bad("must not contain '.' or '..' path segments")
    if "//" in key or key.endswith("/"):
        raise bad("must not contain empty path segments")
    return key


def validate_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
        raise validation_error(
            ErrorCode.INVALID_S3_BUCKET,
            "s3_bucket must be a valid bucket name (3-63 chars: a-z, 0-9, '.', '-')",
            value=bucket,
        )
    return bucket


@dataclass(frozen=True)
class OutputTarget:
    """Where the finished audio goes. A missing key is named by the use case."""

    bucket: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.bucket is not None:
            validate_bucket(self.bucket)
        if self.key is not None:
            validate_s3_key(self.key)


@dataclass(frozen=True)
class NamedVoice:
    """A voice prompt stored in the voice library."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _VOICE_NAME.fullmatch(self.name):
            raise validation_error(
                ErrorCode.INVALID_VOICE_NAME,
                "voice names match [A-Za-z0-9_-]{1,64}",
                value=self.name,
            )


@dataclass(frozen=True, repr=False)
class InlineVoice:
    """A reference clip sent with the request (WAV, FLAC or OGG bytes) and its transcript."""

    audio: bytes
    transcript: str
    name: str = "inline"

    def __post_init__(self) -> None:
        if not isinstance(self.audio, (bytes, bytearray)) or len(self.audio) == 0:
            raise validation_error(
                ErrorCode.INVALID_REFERENCE_AUDIO, "reference audio must be non-empty bytes"
            )
        if len(self.audio) > MAX_REFERENCE_AUDIO_BYTES:
            raise validation_error(
                ErrorCode.INVALID_REFERENCE_AUDIO,
                f"reference audio must be at most {MAX_REFERENCE_AUDIO_BYTES} bytes",
                size=len(self.audio),
            )
        if not isinstance(self.transcript, str) or not self.transcript.strip():
            raise validation_error(
                ErrorCode.INVALID_REFERENCE_AUDIO,
                "reference audio needs the transcript of what is said in it",
            )
        if len(self.transcript) > MAX_REFERENCE_TRANSCRIPT_CHARS:
            raise validation_error(
                ErrorCode.INVALID_REFERENCE_AUDIO,
                f"reference transcript must be at most {MAX_REFERENCE_TRANSCRIPT_CHARS} chars",
            )
        if not _VOICE_NAME.fullmatch(self.name):
            raise validation_error(
                ErrorCode.INVALID_VOICE_NAME, "voice names match [A-Za-z0-9_-]{1,64}"
            )

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.audio).hexdigest()

    def __repr__(self) -> str:
        return f"InlineVoice(name={self.name!r}, bytes={len(self.audio)})"


VoiceRef = NamedVoice | InlineVoice


def parse_voice_list(value: str) -> tuple[NamedVoice, ...]:
    """`"belinda,broom_salesman"` -> one named voice per speaker, in speaker order."""
    names = [part.strip() for part in value.split(",")]
    if not value.strip() or any(not name for name in names):
        raise validation_error(
            ErrorCode.INVALID_VOICE_NAME, "voice list must be comma-separated names", value=value
        )
    return tuple(NamedVoice(name) for name in names)


def is_valid_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class SpeechRequest:
    """One text to speak, in zero or more cloned voices (one per [SPEAKERn]), steered by a scene."""

    text: str
    voices: tuple[VoiceRef, ...] = ()
    scene_prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    chunking: Chunking = field(default_factory=Chunking)
    output: OutputTarget | None = None
    output_format: OutputFormat = OutputFormat.WAV
    request_id: str = field(default_factory=new_request_id)

    def __post_init__(self) -> None:
        text = self.text
        if not isinstance(text, str) or not text.strip():
            raise validation_error(ErrorCode.INVALID_TRANSCRIPT, "transcript must not be empty")
        if len(text) > MAX_TRANSCRIPT_CHARS:
            raise validation_error(
                ErrorCode.INVALID_TRANSCRIPT,
                f"transcript must be at most {MAX_TRANSCRIPT_CHARS} characters",
                length=len(text),
                limit=MAX_TRANSCRIPT_CHARS,
            )
        if _CONTROL.search(text.replace("\n", "").replace("\t", "").replace("\r", "")):
            raise validation_error(
                ErrorCode.INVALID_TRANSCRIPT, "transcript must not contain control characters"
            )
        if self.scene_prompt is not None:
            if not isinstance(self.scene_prompt, str):
                raise validation_error(ErrorCode.INVALID_SCENE_PROMPT, "scene_prompt must be text")
            if len(self.scene_prompt) > MAX_SCENE_PROMPT_CHARS:
                raise validation_error(
                    ErrorCode.INVALID_SCENE_PROMPT,
                    f"scene_prompt must be at most {MAX_SCENE_PROMPT_CHARS} characters",
                    length=len(self.scene_prompt),
                )
        voices = tuple(self.voices)
        object.__setattr__(self, "voices", voices)
        if len(voices) > MAX_VOICES:
            raise validation_error(
                ErrorCode.INVALID_VOICE_NAME, f"at most {MAX_VOICES} voices", count=len(voices)
            )
        if not all(isinstance(v, (NamedVoice, InlineVoice)) for v in voices):
            raise validation_error(ErrorCode.INVALID_VOICE_NAME, "voices must be voice refs")
        try:
            object.__setattr__(self, "output_format", OutputFormat(self.output_format))
        except ValueError:
            raise validation_error(
                ErrorCode.INVALID_OUTPUT_FORMAT,
                "output_format must be one of " + ", ".join(f.value for f in OutputFormat),
                value=self.output_format,
            ) from None
        if not is_valid_request_id(self.request_id):
            raise validation_error(
                ErrorCode.INVALID_REQUEST_ID,
                "request_id must match [A-Za-z0-9_.:-]{1,128}",
                value=self.request_id,
            )

    @property
    def voice_names(self) -> list[str]:
        return [v.name for v in self.voices]
