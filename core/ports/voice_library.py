from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.domain.voice import VoiceInfo, VoicePrompt


@runtime_checkable
class VoiceLibrary(Protocol):
    """Named voice prompts. `get` raises DomainError UNKNOWN_VOICE for a name it lacks."""

    def list(self) -> list[VoiceInfo]: ...

    def get(self, name: str) -> VoicePrompt: ...
