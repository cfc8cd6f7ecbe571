"""The ASR pass over a request's audio, as the request asks for it: verify each text chunk
(and generate it again when too much of it was not said), report only, or just the word timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from core.domain.errors import ErrorCode, validation_error
from core.domain.ranges import is_int, is_number, out_of_range

MAX_VERIFY_ATTEMPTS = 5
DEFAULT_MAX_WER = 0.25
DEFAULT_MAX_ATTEMPTS = 2


class VerifyMode(str, Enum):
    OFF = "off"
    ON = "on"  # each text chunk is transcribed; one above max_wer is generated again, the best kept
    REPORT = "report"  # each chunk is transcribed and its error rate reported; audio streams at once


class Timestamps(str, Enum):
    NONE = "none"
    WORD = "word"  # the words heard, with start and end seconds on the output's clock


@dataclass(frozen=True)
class Verification:
    """The ASR pass over a request's audio. `mode` takes true (on) and false (off) too. A field
    left None is the server's default (HIGGS_VERIFY, HIGGS_MAX_WER, HIGGS_VERIFY_ATTEMPTS),
    filled in by `with_defaults` before the request runs."""

    mode: VerifyMode | None = None
    max_wer: float | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        mode = {True: "on", False: "off"}.get(self.mode, self.mode) if isinstance(self.mode, bool) else self.mode
        try:
            object.__setattr__(self, "mode", None if mode is None else VerifyMode(mode))
        except (ValueError, TypeError):
            raise validation_error(
                ErrorCode.INVALID_VERIFICATION, "verify must be true, false, or one of off, on, report",
                field="verify", constraint="enum", actual=self.mode, allowed=[m.value for m in VerifyMode],
            ) from None
        w = self.max_wer
        if w is not None and (not is_number(w) or not (0 <= w <= 1)):
            raise out_of_range(ErrorCode.INVALID_VERIFICATION, "max_wer", "range=[0,1]", w)
        n = self.max_attempts
        if n is not None and (not is_int(n) or not (1 <= n <= MAX_VERIFY_ATTEMPTS)):
            raise out_of_range(ErrorCode.INVALID_VERIFICATION, "max_attempts",
                               f"range=[1,{MAX_VERIFY_ATTEMPTS}] integer", n)

    def with_defaults(self, default: "Verification | None" = None) -> "Verification":
        """Every field set: this one's, else `default`'s, else off / DEFAULT_MAX_WER / 2 attempts."""
        d = default or Verification()
        return Verification(
            self.mode if self.mode is not None else d.mode if d.mode is not None else VerifyMode.OFF,
            self.max_wer if self.max_wer is not None else d.max_wer if d.max_wer is not None else DEFAULT_MAX_WER,
            self.max_attempts if self.max_attempts is not None else d.max_attempts or DEFAULT_MAX_ATTEMPTS)

    @property
    def active(self) -> bool:
        return self.mode not in (None, VerifyMode.OFF)


def parse_timestamps(value: object) -> Timestamps:
    try:
        return Timestamps(value)
    except (ValueError, TypeError):
        raise validation_error(ErrorCode.INVALID_VERIFICATION, "timestamps must be one of none, word",
                               field="timestamps", constraint="enum", actual=value,
                               allowed=[t.value for t in Timestamps]) from None


@dataclass(frozen=True)
class Word:
    """One word heard, with its start and end in seconds from the start of the audio it was in."""

    word: str
    start: float
    end: float

    def shifted(self, seconds: float, scale: float = 1.0) -> "Word":
        """The word on another clock: `seconds` later, then divided by `scale` (a speed-up)."""
        return Word(self.word, round((self.start + seconds) / scale, 3), round((self.end + seconds) / scale, 3))

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> "Word":
        return cls(value["word"], value["start"], value["end"])


@dataclass(frozen=True)
class ChunkVerification:
    """What the ASR pass found in one text chunk: the transcript and error rate of the attempt
    kept (1-based among `attempts`), whether it passed, and the words heard on the output's clock.
    `error` says why a chunk went unverified (the transcriber failed): its audio is kept as it is."""

    chunk: int
    text: str
    transcript: str
    wer: float | None
    attempts: int
    kept: int
    passed: bool
    words: tuple[Word, ...] = field(default=(), compare=False)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chunk": self.chunk, "text": self.text, "transcript": self.transcript,
                               "wer": None if self.wer is None else round(self.wer, 4), "attempts": self.attempts,
                               "kept": self.kept, "passed": self.passed}
        if self.error is not None:
            out["error"] = self.error
        return out
