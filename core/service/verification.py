"""One request's ASR pass, as the engine's ChunkCheck: each text chunk's audio is transcribed,
scored against the chunk's text, and its words put on the output's clock.

A transcriber that fails never fails the request: the chunk is kept unverified, with a warning
in the log and an `error` in its result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from core.domain.audio import Samples
from core.domain.errors import ErrorCode, validation_error
from core.domain.request import SpeechRequest
from core.domain.verification import ChunkVerification, Timestamps, Verification, VerifyMode, Word
from core.ports.tracer import Span
from core.ports.transcriber import ErrorRate, Transcriber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Heard:
    text: str  # the chunk's text
    transcript: str
    wer: float | None
    seconds: float  # of audio
    words: tuple[Word, ...] = ()
    error: str | None = None


class ChunkVerifier:
    """Built per request. `results` and `words` fill in as chunks are kept; `take()` hands out
    the results not yet sent, for the request's event stream."""

    def __init__(self, transcriber: Transcriber, error_rate: ErrorRate, verification: Verification, words: bool,
                 sample_rate: int, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        verification = verification.with_defaults()
        self.hold = verification.mode is VerifyMode.ON
        self.attempts = (verification.max_attempts or 1) if self.hold else 1
        self.max_score = verification.max_wer if verification.max_wer is not None else 1.0
        self.scored = verification.active
        self._transcriber, self._error_rate, self._words = transcriber, error_rate, words
        self._rate, self._speed, self._clock = sample_rate, speed, clock
        self._heard: dict[int, list[_Heard]] = {}
        self.results: list[ChunkVerification] = []
        self.words: list[Word] = []
        self.asr_seconds = 0.0
        self._sent = 0

    def judge(self, chunk: int, attempt: int, text: str, samples: Samples) -> float | None:
        seconds = len(samples) / self._rate
        started = self._clock()
        try:
            heard = self._transcriber.transcribe(samples, self._rate, words=self._words)
            wer = self._error_rate(text, heard.text) if self.scored else None
        except Exception as exc:  # unverified, never failed: the audio is what was asked for
            log.warning("chunk %d could not be transcribed (%s: %s); it is kept unverified", chunk,
                        type(exc).__name__, exc)
            self._heard.setdefault(chunk, []).append(
                _Heard(text, "", None, seconds, error=f"the transcriber failed ({type(exc).__name__})"))
            return None
        finally:
            self.asr_seconds += self._clock() - started
        self._heard.setdefault(chunk, []).append(_Heard(text, heard.text, wer, seconds, heard.words))
        return wer

    def kept(self, chunk: int, attempt: int, start_sample: int) -> None:
        heard = self._heard.get(chunk, [])
        if attempt >= len(heard):  # cut short before it was judged (a cancel, a barge-in)
            return
        h = heard[attempt]
        offset = start_sample / self._rate
        words = tuple(Word(w.word, min(max(w.start, 0.0), h.seconds), min(max(w.end, w.start, 0.0), h.seconds))
                      .shifted(offset, self._speed) for w in h.words)
        self.words.extend(words)
        passed = h.error is None and (h.wer is None or h.wer <= self.max_score)
        self.results.append(ChunkVerification(chunk, h.text, h.transcript, h.wer, len(heard), attempt + 1, passed,
                                              words, h.error))

    def take(self) -> list[ChunkVerification]:
        new = self.results[self._sent:]
        self._sent = len(self.results)
        return new

    def describe(self, span: Span) -> None:
        """What the pass did, on the request's synthesis span."""
        span.set_attribute("speech.asr_seconds", round(self.asr_seconds, 4))
        if self.scored:
            span.set_attribute("speech.verify.chunks", len(self.results))
            span.set_attribute("speech.verify.regenerated", sum(r.attempts - 1 for r in self.results))
            span.set_attribute("speech.verify.failing", sum(not r.passed for r in self.results))

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.scored:
            out["verification"] = [r.to_dict() for r in self.results]
        if self._words:
            out["words"] = [w.to_dict() for w in self.words]
        return out


@dataclass(frozen=True)
class Asr:
    """The ASR pass's parts: a transcriber and the error rate it is scored with."""

    transcriber: Transcriber
    error_rate: ErrorRate

    def verifier(self, request: SpeechRequest, sample_rate: int,
                 clock: Callable[[], float] = time.monotonic) -> ChunkVerifier:
        return ChunkVerifier(self.transcriber, self.error_rate, request.verification,
                             request.timestamps is Timestamps.WORD, sample_rate, request.speed, clock)


def asr_not_configured(request: SpeechRequest) -> Exception:
    field = "verify" if request.verification.active else "timestamps"
    return validation_error(ErrorCode.ASR_NOT_CONFIGURED,
                            f"{field} needs an ASR model and this server has none (set HIGGS_ASR_MODEL)",
                            field=field, constraint="asr_configured")
