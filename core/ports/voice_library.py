from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.domain.voice import VoiceInfo, VoicePrompt


@runtime_checkable
class VoiceLibrary(Protocol):
    """Named voice prompts. `get` and `delete` raise DomainError UNKNOWN_VOICE for a name it
    lacks; `add` raises VOICE_EXISTS for a name it has, and INVALID_REFERENCE_AUDIO for a clip
    it cannot read (or longer than the reference limit). What one instance adds, every
    instance over the same storage sees."""

    def list(self) -> list[VoiceInfo]: ...

    def get(self, name: str) -> VoicePrompt: ...

    def add(self, voice: VoicePrompt) -> VoiceInfo: ...

    def delete(self, name: str) -> None: ...
