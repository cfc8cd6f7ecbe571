"""What was said in a stretch of audio: the Transcriber port (an ASR model) and its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from core.domain.audio import Samples
from core.domain.verification import Word


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = ()


@runtime_checkable
class Transcriber(Protocol):
    """Speech to text. `transcribe` may be called from many threads at once (an adapter may
    batch the calls that overlap); it raises on failure, and one failure leaves it usable."""

    def transcribe(self, samples: Samples, sample_rate: int, words: bool = False) -> Transcript:
        """The text of float32 mono `samples`; with `words`, each word and its timing."""
        ...

    def warm_up(self) -> None:
        """Load the model now instead of on the first call; raises DomainError (model_error)."""

    def is_ready(self) -> bool: ...

    def describe(self) -> Mapping[str, Any]:
        """The model's name, device and dtype: goes into metadata."""
        ...


# reference text, what was heard -> the error rate (0: every word right), both normalised alike
ErrorRate = Callable[[str, str], float]
