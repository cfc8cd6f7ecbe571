"""A transcriber that hears what it is told to: transcripts scripted per call, words spread
evenly over the audio. For the ASR pass's policy tests and the contract suite."""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Sequence

from core.domain.audio import Samples
from core.domain.verification import Word
from core.ports.transcriber import Transcript


class FakeTranscriber:
    """`heard`: the transcript of the n-th call (a list, cycled, or a function of n); `fail`
    raises on the calls whose index it holds (every call when it is an exception alone)."""

    def __init__(self, heard: Sequence[str] | Callable[[int], str] = ("",),
                 fail: BaseException | Mapping[int, BaseException] | None = None) -> None:
        self.heard, self.fail = heard, fail
        self.calls: list[float] = []  # seconds of audio per call, in order
        self.ready = False
        self._lock = threading.Lock()

    def transcribe(self, samples: Samples, sample_rate: int, words: bool = False) -> Transcript:
        seconds = len(samples) / sample_rate
        with self._lock:
            n = len(self.calls)
            self.calls.append(seconds)
        failure = self.fail.get(n) if isinstance(self.fail, Mapping) else self.fail
        if failure is not None:
            raise failure
        text = self.heard(n) if callable(self.heard) else self.heard[n % len(self.heard)]
        return Transcript(text, spread(text, seconds) if words else ())

    def warm_up(self) -> None:
        self.ready = True

    def is_ready(self) -> bool:
        return self.ready

    def describe(self) -> Mapping[str, Any]:
        return {"asr_model": "fake"}


def spread(text: str, seconds: float) -> tuple[Word, ...]:
    """The words of `text` one after another, sharing `seconds` equally."""
    names = text.split()
    if not names:
        return ()
    step = seconds / len(names)
    return tuple(Word(w, round(i * step, 3), round((i + 1) * step, 3)) for i, w in enumerate(names))
