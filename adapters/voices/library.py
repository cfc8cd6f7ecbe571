"""Voice prompts on the model volume: `<dir>/<name>.wav` (or .flac/.ogg) + `<name>.txt`."""

from __future__ import annotations

import re
from pathlib import Path

from core.domain.errors import DomainError, ErrorCode, ErrorType
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
            raise DomainError(
                ErrorType.VALIDATION,
                ErrorCode.UNKNOWN_VOICE,
                f"unknown voice {name!r}",
                {"voice": name, "available": [v.name for v in self.list()]},
            )
        return VoicePrompt(name, transcript.read_text(encoding="utf-8").strip(), audio.read_bytes())


def _duration(path: Path) -> float | None:
    try:
        import soundfile

        return round(soundfile.info(str(path)).duration, 3)
    except Exception:
        return None
