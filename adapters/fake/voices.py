from __future__ import annotations

import math
from array import array

from core.domain.audio import SAMPLE_RATE, wav_bytes
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.voice import VoiceInfo, VoicePrompt


def tone_clip(pitch: float, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A short WAV clip: enough to stand in for a reference recording."""
    n = int(seconds * sample_rate)
    samples = array("f", (0.3 * math.sin(2 * math.pi * pitch * i / sample_rate) for i in range(n)))
    return wav_bytes(samples, sample_rate)


DEMO_VOICES = {
    "belinda": ("Twas the night before my birthday.", 220.0),
    "en_man": ("The quick brown fox jumps over the lazy dog.", 120.0),
}


class InMemoryVoiceLibrary:
    def __init__(self, voices: dict[str, VoicePrompt] | None = None) -> None:
        self.voices = dict(voices or {})

    @classmethod
    def with_demo_voices(cls) -> "InMemoryVoiceLibrary":
        return cls(
            {
                name: VoicePrompt(name, transcript, tone_clip(pitch))
                for name, (transcript, pitch) in DEMO_VOICES.items()
            }
        )

    def list(self) -> list[VoiceInfo]:
        return [VoiceInfo(v.name, v.transcript) for v in sorted(self.voices.values(), key=lambda v: v.name)]

    def get(self, name: str) -> VoicePrompt:
        try:
            return self.voices[name]
        except KeyError:
            raise DomainError(
                ErrorType.VALIDATION,
                ErrorCode.UNKNOWN_VOICE,
                f"unknown voice {name!r}",
                {"voice": name, "available": sorted(self.voices)},
            ) from None
