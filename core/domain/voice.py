"""Voice prompts: a reference clip and its transcript, the material a voice is cloned from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, repr=False)
class VoicePrompt:
    name: str
    transcript: str
    audio: bytes  # an audio file (WAV, FLAC or OGG); the engine decodes and resamples it

    @property
    def content_hash(self) -> str:
        """Identifies the clip, so an engine can cache its audio codes."""
        return hashlib.sha256(self.audio).hexdigest()

    def __repr__(self) -> str:
        return f"VoicePrompt({self.name!r}, {len(self.audio)} bytes)"


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    transcript: str
    duration_seconds: float | None = None
