"""The speech request and its parts. Each part validates itself when it is built, so a
request that exists is a request the engine can run."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field, fields
from enum import Enum

from core.domain.errors import ErrorCode, validation_error
from core.domain.ranges import is_int as _is_int
from core.domain.ranges import is_number as _is_number
from core.domain.ranges import out_of_range as _out_of_range
from core.domain.segmenter import TextSource
from core.domain.verification import Timestamps, Verification, parse_timestamps

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range for `speed`

MAX_TRANSCRIPT_CHARS = 10_000
MAX_SCENE_PROMPT_CHARS = 2_000
MAX_REFERENCE_TRANSCRIPT_CHARS = 2_000
MAX_REFERENCE_AUDIO_BYTES = 12 * 1024 * 1024
MAX_NEW_TOKENS = 8192
MAX_TOP_K = 1024  # the codebook: a larger k keeps every code anyway
MAX_RAS_WINDOW = 256
MAX_VOICES = 8
MAX_S3_KEY_BYTES = 1024
RECORD_SUFFIX = ".json"  # an audio key + this suffix names its event record

_VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# S3 bucket naming rules (also a safe directory name for the local store)
_BUCKET = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Unicode's control characters (category Cc: C0, DEL and C1, U+0085 NEL included: line breaks
# are \n and \r), the one rule for every text field
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # \t \n \r allowed
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_VOICE_SEPARATOR = re.compile(r" *, *")


class ChunkMethod(str, Enum):
    AUTO = "auto"  # one chunk when the text fits, else split at sentences (then clauses, words)
    NONE = "none"
    WORD = "word"
    SPEAKER = "speaker"


class OutputFormat(str, Enum):
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"


def check_text(value: object, field: str, code: ErrorCode, max_chars: int, multiline: bool = True) -> str:
    """The one rule for free text (transcripts, scene prompts): a string of valid Unicode (no
    lone surrogates), no control characters but tab and line breaks (none at all when not
    `multiline`), at most `max_chars` characters."""
    if not isinstance(value, str):
        raise validation_error(code, f"{field} must be a string", field=field, constraint="type=string",
                               actual_type=type(value).__name__)
    if len(value) > max_chars:
        raise validation_error(code, f"{field} must be at most {max_chars} characters", field=field,
                               constraint=f"max_length={max_chars}", actual_length=len(value))
    if _SURROGATE.search(value):
        raise validation_error(code, f"{field} is not valid Unicode text (it holds a lone surrogate)",
                               field=field, constraint="valid_unicode")
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        raise validation_error(code, f"{field} must not contain control characters", field=field,
                               constraint="no_control_characters")
    return value


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
            raise _out_of_range(ErrorCode.INVALID_TEMPERATURE, "temperature", "range=(0,2]", t)
        if not _is_int(self.top_k) or not (1 <= self.top_k <= MAX_TOP_K):
            raise _out_of_range(ErrorCode.INVALID_TOP_K, "top_k", f"range=[1,{MAX_TOP_K}] integer", self.top_k)
        p = self.top_p
        if not _is_number(p) or not (0 < p <= 1):
            raise _out_of_range(ErrorCode.INVALID_TOP_P, "top_p", "range=(0,1]", p)
        n = self.max_new_tokens
        if not _is_int(n) or not (1 <= n <= MAX_NEW_TOKENS):
            raise _out_of_range(ErrorCode.INVALID_MAX_NEW_TOKENS, "max_new_tokens",
                                f"range=[1,{MAX_NEW_TOKENS}] integer", n)
        if self.seed is not None and (not _is_int(self.seed) or not (0 <= self.seed < 2**63)):
            raise _out_of_range(ErrorCode.INVALID_SEED, "seed", "range=[0,2^63) integer", self.seed)
        if not _is_int(self.ras_win_len) or not (0 <= self.ras_win_len <= MAX_RAS_WINDOW):
            raise _out_of_range(ErrorCode.INVALID_RAS, "ras_win_len",
                                f"range=[0,{MAX_RAS_WINDOW}] integer (0 turns RAS off)", self.ras_win_len)
        if not _is_int(self.ras_win_max_num_repeat) or not (1 <= self.ras_win_max_num_repeat <= MAX_RAS_WINDOW):
            raise _out_of_range(ErrorCode.INVALID_RAS, "ras_win_max_num_repeat",
                                f"range=[1,{MAX_RAS_WINDOW}] integer", self.ras_win_max_num_repeat)


# the sampling parameters, by name: the fields every face of the service maps one to one
SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sampling))


@dataclass(frozen=True)
class Chunking:
    method: ChunkMethod = ChunkMethod.AUTO
    max_word_num: int = 100
    max_num_turns: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", ChunkMethod(self.method))
        except (ValueError, TypeError):
            raise validation_error(
                ErrorCode.INVALID_CHUNKING, "chunk_method must be one of auto, none, word, speaker",
                field="chunk_method", constraint="enum", actual=self.method,
                allowed=[m.value for m in ChunkMethod],
            ) from None
        if not _is_int(self.max_word_num) or not (1 <= self.max_word_num <= 1000):
            raise _out_of_range(ErrorCode.INVALID_CHUNKING, "chunk_max_word_num", "range=[1,1000] integer",
                                self.max_word_num)
        if not _is_int(self.max_num_turns) or not (1 <= self.max_num_turns <= 100):
            raise _out_of_range(ErrorCode.INVALID_CHUNKING, "chunk_max_num_turns", "range=[1,100] integer",
                                self.max_num_turns)


def validate_s3_key(key: str) -> str:
    def bad(reason: str, constraint: str) -> Exception:
        return validation_error(ErrorCode.INVALID_S3_KEY, f"s3_key {reason}", field="s3_key",
                                constraint=constraint, actual=key)

    if not isinstance(key, str) or not key:
        raise validation_error(ErrorCode.INVALID_S3_KEY, "s3_key must be a non-empty string", field="s3_key",
                               constraint="type=string", actual_type=type(key).__name__)
    check_text(key, "s3_key", ErrorCode.INVALID_S3_KEY, MAX_S3_KEY_BYTES, multiline=False)
    if len(key.encode("utf-8")) > MAX_S3_KEY_BYTES:
        raise validation_error(ErrorCode.INVALID_S3_KEY, f"s3_key must be at most {MAX_S3_KEY_BYTES} bytes",
                               field="s3_key", constraint=f"max_bytes={MAX_S3_KEY_BYTES}",
                               actual_bytes=len(key.encode("utf-8")))
    if key.startswith("/") or key.startswith("\\") or _WINDOWS_DRIVE.match(key):
        raise bad("must be relative (no leading '/' or drive)", "relative")
    if "\\" in key:
        raise bad("must use '/' as separator", "separator=/")
    if any(part in ("..", ".") for part in key.split("/")):
        raise bad("must not contain '.' or '..' path segments", "no_dot_segments")
    if "//" in key or key.endswith("/"):
        raise bad("must not contain empty path segments", "no_empty_segments")
    if key.lower().endswith(RECORD_SUFFIX):
        raise bad(f"must not end with {RECORD_SUFFIX!r}: such keys hold the event records", "not_record_key")
    return key


def validate_bucket(bucket: str) -> str:
    """S3's bucket naming rules: 3-63 of a-z 0-9 . -, starting and ending with a letter or
    digit, not an IP address, none of the reserved prefixes and suffixes."""
    if (
        not isinstance(bucket, str)
        or not _BUCKET.fullmatch(bucket)
        or _IP_ADDRESS.fullmatch(bucket)
        or bucket.startswith(("sthree-", "amzn-s3-demo-"))
        or bucket.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
    ):
        raise validation_error(
            ErrorCode.INVALID_S3_BUCKET,
            "s3_bucket must be a valid bucket name (3-63 chars: a-z, 0-9, '.', '-'; not an IP address)",
            field="s3_bucket", constraint="s3_bucket_name", actual=bucket,
        )
    return bucket


@dataclass(frozen=True)
class OutputTarget:
    """Where the finished audio goes. A missing key is named by the use case. An existing
    object is never replaced unless `overwrite` is asked for."""

    bucket: str | None = None
    key: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.bucket is not None:
            validate_bucket(self.bucket)
        if self.key is not None:
            validate_s3_key(self.key)
        if not isinstance(self.overwrite, bool):
            raise validation_error(ErrorCode.INVALID_INPUT, "overwrite must be true or false", field="overwrite",
                                   constraint="type=boolean", actual_type=type(self.overwrite).__name__)


def invalid_voice_name(name: object, field: str = "ref_audio") -> Exception:
    return validation_error(ErrorCode.INVALID_VOICE_NAME, "voice names match [A-Za-z0-9_-]{1,64}", field=field,
                            constraint="pattern=[A-Za-z0-9_-]{1,64}", actual=name)


@dataclass(frozen=True)
class NamedVoice:
    """A voice prompt stored in the voice library."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _VOICE_NAME.fullmatch(self.name):
            raise invalid_voice_name(self.name)


@dataclass(frozen=True, repr=False)
class InlineVoice:
    """A reference clip sent with the request (WAV, FLAC or OGG bytes) and its transcript."""

    audio: bytes
    transcript: str
    name: str = "inline"

    def __post_init__(self) -> None:
        if not isinstance(self.audio, (bytes, bytearray)) or len(self.audio) == 0:
            raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "reference audio must be non-empty bytes",
                                   field="ref_audio_base64", constraint="min_bytes=1")
        if len(self.audio) > MAX_REFERENCE_AUDIO_BYTES:
            raise validation_error(
                ErrorCode.INVALID_REFERENCE_AUDIO,
                f"reference audio must be at most {MAX_REFERENCE_AUDIO_BYTES} bytes",
                field="ref_audio_base64", constraint=f"max_bytes={MAX_REFERENCE_AUDIO_BYTES}",
                actual_bytes=len(self.audio),
            )
        check_text(self.transcript, "ref_audio_transcript", ErrorCode.INVALID_REFERENCE_AUDIO,
                   MAX_REFERENCE_TRANSCRIPT_CHARS)
        if not self.transcript.strip():
            raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO,
                                   "reference audio needs the transcript of what is said in it",
                                   field="ref_audio_transcript", constraint="not_empty")
        if not isinstance(self.name, str) or not _VOICE_NAME.fullmatch(self.name):
            raise invalid_voice_name(self.name, "name")

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.audio).hexdigest()

    def __repr__(self) -> str:
        return f"InlineVoice(name={self.name!r}, bytes={len(self.audio)})"


VoiceRef = NamedVoice | InlineVoice


def parse_voice_list(value: str) -> tuple[NamedVoice, ...]:
    """`"belinda,broom_salesman"` (spaces around the commas allowed) -> one named voice per
    speaker, in speaker order. Names themselves hold no whitespace."""
    if not isinstance(value, str):
        raise invalid_voice_name(value)
    names = _VOICE_SEPARATOR.split(value)
    if not value or any(not name for name in names):
        raise validation_error(ErrorCode.INVALID_VOICE_NAME, "voice list must be comma-separated names",
                               field="ref_audio", constraint="comma_separated_names", actual=value)
    return tuple(NamedVoice(name) for name in names)


def is_valid_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Synthesis:
    """What the engine needs of a request: what to say and how, not where the audio goes."""

    text: str
    scene_prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    chunking: Chunking = field(default_factory=Chunking)
    feed: TextSource | None = None  # a speaking session: the text comes segment by segment


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
    speed: float = 1.0  # the pace, 0.25 to 4.0 (OpenAI's range): the audio is time-stretched, pitch kept
    verification: Verification = field(default_factory=Verification)
    timestamps: Timestamps = Timestamps.NONE
    # a speaking session (the WebSocket and SpeakText): the text arrives while it is spoken,
    # `text` stays empty, nothing is stored or cached
    feed: TextSource | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_text(self.text, "transcript", ErrorCode.INVALID_TRANSCRIPT, MAX_TRANSCRIPT_CHARS)
        if self.feed is not None:
            if self.text or self.output is not None:
                raise validation_error(ErrorCode.INVALID_TRANSCRIPT, "a speaking session takes its text as it comes",
                                       field="transcript", constraint="empty_with_feed")
        elif not self.text.strip():
            raise validation_error(ErrorCode.INVALID_TRANSCRIPT, "transcript must not be empty",
                                   field="transcript", constraint="not_empty")
        if not _is_number(self.speed) or not (MIN_SPEED <= self.speed <= MAX_SPEED):
            raise _out_of_range(ErrorCode.INVALID_SPEED, "speed", f"range=[{MIN_SPEED},{MAX_SPEED}]", self.speed)
        if self.scene_prompt is not None:
            check_text(self.scene_prompt, "scene_prompt", ErrorCode.INVALID_SCENE_PROMPT, MAX_SCENE_PROMPT_CHARS)
        voices = tuple(self.voices)
        object.__setattr__(self, "voices", voices)
        if len(voices) > MAX_VOICES:
            raise validation_error(ErrorCode.INVALID_VOICE_NAME, f"at most {MAX_VOICES} voices", field="ref_audio",
                                   constraint=f"max_items={MAX_VOICES}", actual_count=len(voices))
        if not all(isinstance(v, (NamedVoice, InlineVoice)) for v in voices):
            raise validation_error(ErrorCode.INVALID_VOICE_NAME, "voices must be voice refs", field="ref_audio",
                                   constraint="type=voice")
        try:
            object.__setattr__(self, "output_format", OutputFormat(self.output_format))
        except (ValueError, TypeError):
            raise validation_error(
                ErrorCode.INVALID_OUTPUT_FORMAT,
                "output_format must be one of " + ", ".join(f.value for f in OutputFormat),
                field="output_format", constraint="enum", actual=self.output_format,
                allowed=[f.value for f in OutputFormat],
            ) from None
        if not isinstance(self.verification, Verification):
            raise validation_error(ErrorCode.INVALID_VERIFICATION, "verification must be a Verification",
                                   field="verify", constraint="type=verification")
        object.__setattr__(self, "timestamps", parse_timestamps(self.timestamps))
        if not is_valid_request_id(self.request_id):
            raise validation_error(
                ErrorCode.INVALID_REQUEST_ID, "request_id must match [A-Za-z0-9_.:-]{1,128}",
                field="request_id", constraint="pattern=[A-Za-z0-9_.:-]{1,128}", actual=self.request_id,
            )

    @property
    def needs_asr(self) -> bool:
        """Whether its audio goes through the transcriber (to verify it, or for its word timings)."""
        return self.verification.active or self.timestamps is Timestamps.WORD

    @property
    def voice_names(self) -> list[str]:
        return [v.name for v in self.voices]

    @property
    def synthesis(self) -> Synthesis:
        return Synthesis(self.text, self.scene_prompt, self.sampling, self.chunking, self.feed)
