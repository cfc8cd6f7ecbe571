from __future__ import annotations

import math
from array import array

from core.domain.audio import SAMPLE_RATE, wav_bytes
from core.domain.errors import ErrorCode, unknown_voice, validation_error, voice_exists
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
        except (KeyError, TypeError):
            raise unknown_voice(name, sorted(self.voices)) from None

    def add(self, voice: VoicePrompt) -> VoiceInfo:
        if not _looks_like_audio(voice.audio):
            raise validation_error(ErrorCode.INVALID_REFERENCE_AUDIO, "the clip is not WAV, FLAC or OGG",
                                   field="file", constraint="format=wav|flac|ogg")
        if voice.name in self.voices:
            raise voice_exists(voice.name)
        self.voices[voice.name] = VoicePrompt(voice.name, voice.transcript.strip(), voice.audio)
        return VoiceInfo(voice.name, voice.transcript.strip())

    def delete(self, name: str) -> None:
        if self.voices.pop(name, None) is None:
            raise unknown_voice(name, sorted(self.voices))


def _looks_like_audio(data: bytes) -> bool:
    """The fake decodes no audio: a WAV must parse (standard library) and hold frames; FLAC and
    OGG must start with their magic."""
    import io
    import wave

    if data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data)) as clip:
                return clip.getnframes() > 0
        except (wave.Error, EOFError):
            return False
    return data[:4] in (b"fLaC", b"OggS") and len(data) > 64
