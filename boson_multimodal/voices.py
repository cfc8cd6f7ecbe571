"""The sample voice prompts that ship with the project (see sample_voices/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE_VOICES = Path(__file__).with_name("sample_voices")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def sample_voice_names() -> list[str]:
    return sorted(p.stem for p in SAMPLE_VOICES.glob("*.txt"))


def install_sample_voices(target: Path) -> list[str]:
    """Copy the sample voices into `target`, leaving every voice already there untouched (a
    name that exists, with any clip format, is skipped). Returns the names written."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sample_voice_names():
        if (target / f"{name}.txt").exists() or any((target / f"{name}{s}").exists() for s in AUDIO_SUFFIXES):
            continue
        shutil.copyfile(SAMPLE_VOICES / f"{name}.flac", target / f"{name}.flac")
        shutil.copyfile(SAMPLE_VOICES / f"{name}.txt", target / f"{name}.txt")
        written.append(name)
    return written
