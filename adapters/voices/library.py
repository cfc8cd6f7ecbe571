"""Voice prompts on the model volume: `<dir>/<name>.wav` (or .flac/.ogg) + `<name>.txt`."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.voices.clips import inspect_clip
from core.domain.errors import unknown_voice, voice_exists
from core.domain.voice import VoiceInfo, VoicePrompt

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class VolumeVoiceLibrary:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _audio_path(self, name: str) -> Path | None:
        for suffix in AUDIO_SUFFIXES:
            path = self.directory / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def list(self) -> list[VoiceInfo]:
        if not self.directory.is_dir():
            return []
        infos = []
        for transcript in sorted(self.directory.glob("*.txt")):
            name = transcript.stem
            audio = self._audio_path(name) if _NAME.fullmatch(name) else None
            if audio is not None:
                infos.append(VoiceInfo(name, transcript.read_text(encoding="utf-8").strip(), _duration(audio)))
        return infos

    def get(self, name: str) -> VoicePrompt:
        # names are checked before any path is built: nothing outside the directory is reachable
        audio = self._audio_path(name) if isinstance(name, str) and _NAME.fullmatch(name) else None
        transcript = self.directory / f"{name}.txt"
        if audio is None or not transcript.is_file():
            raise unknown_voice(name, [v.name for v in self.list()])
        return VoicePrompt(name, transcript.read_text(encoding="utf-8").strip(), audio.read_bytes())

    def add(self, voice: VoicePrompt) -> VoiceInfo:
        """The clip, then its transcript (the voice exists once both do), each created
        exclusively: two workers adding one name never both succeed."""
        suffix, seconds = inspect_clip(voice.audio)
        if self._audio_path(voice.name) is not None or (self.directory / f"{voice.name}.txt").exists():
            raise voice_exists(voice.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        audio = self.directory / f"{voice.name}{suffix}"
        try:
            with open(audio, "xb") as out:
                out.write(voice.audio)
            with open(self.directory / f"{voice.name}.txt", "x", encoding="utf-8") as out:
                out.write(voice.transcript.strip() + "\n")
        except FileExistsError:
            raise voice_exists(voice.name) from None
        return VoiceInfo(voice.name, voice.transcript.strip(), seconds)

    def delete(self, name: str) -> None:
        audio = self._audio_path(name) if isinstance(name, str) and _NAME.fullmatch(name) else None
        transcript = self.directory / f"{name}.txt"
        if audio is None or not transcript.is_file():
            raise unknown_voice(name, [v.name for v in self.list()])
        transcript.unlink(missing_ok=True)  # the voice is gone once its transcript is
        audio.unlink(missing_ok=True)


def _duration(path: Path) -> float | None:
    try:
        import soundfile

        return round(soundfile.info(str(path)).duration, 3)
    except Exception:
        return None
