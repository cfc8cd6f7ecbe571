"""The end of one request's event stream, for callers that want the result rather than the
stream (a unary gRPC call, a non-streaming RunPod job, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.events import AudioStored, SpeechCompleted, SpeechEvent, SpeechFailed


@dataclass
class Outcome:
    """Fed every event in order: keeps the completion and where the audio was stored, raises
    the request's error when it fails."""

    completed: SpeechCompleted | None = None
    stored: AudioStored | None = None

    def add(self, event: SpeechEvent) -> None:
        if isinstance(event, SpeechFailed):
            raise event.error
        if isinstance(event, AudioStored):
            self.stored = event
        elif isinstance(event, SpeechCompleted):
            self.completed = event

    def result(self) -> SpeechCompleted:
        """The completion; a stream that ended without one is an internal error."""
        if self.completed is None:
            raise DomainError(ErrorType.SYSTEM, ErrorCode.INTERNAL_ERROR, "generation ended without a result")
        return self.completed


def collect(events: Iterable[SpeechEvent]) -> Outcome:
    """Every event of a request; raises DomainError when it failed or ended without a result."""
    outcome = Outcome()
    for event in events:
        outcome.add(event)
    outcome.result()
    return outcome
