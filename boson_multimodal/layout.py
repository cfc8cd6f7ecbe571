"""Where things live on the model volume, and what to tell a user when they are missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GENERATION_SUBDIR = "bosonai/higgs-audio-v2-generation-3B-base"
TOKENIZER_SUBDIR = "bosonai/higgs-audio-v2-tokenizer"
VOICES_SUBDIR = "voice_prompts"
DEMO_MARKER = "DEMO_BUNDLE.txt"


@dataclass(frozen=True)
class ModelPaths:
    root: Path
    generation: Path
    tokenizer: Path
    voices: Path

    @classmethod
    def under(
        cls,
        root: str | Path,
        generation: str | Path | None = None,
        tokenizer: str | Path | None = None,
        voices: str | Path | None = None,
    ) -> "ModelPaths":
        """Sub-paths default to the published layout; relative overrides are under root."""
        root = Path(root)
        return cls(
            root=root,
            generation=root / (generation or GENERATION_SUBDIR),
            tokenizer=root / (tokenizer or TOKENIZER_SUBDIR),
            voices=root / (voices or VOICES_SUBDIR),
        )

    @property
    def is_demo(self) -> bool:
        return (self.root / DEMO_MARKER).is_file()

    def has_weights(self) -> bool:
        return _has_weights(self.generation) and _has_weights(self.tokenizer)


def _has_weights(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any(
        directory.glob(pattern) for pattern in ("*.safetensors", "*.bin", "*.pth")
    )


def read_revision(directory: Path) -> str | None:
    """The hub commit a snapshot came from, when the download tool left a record of it."""
    for candidate in (
        directory / ".cache" / "huggingface" / "download" / "config.json.metadata",
        directory / "REVISION",
    ):
        if candidate.is_file():
            first = candidate.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if first and first[0].strip():
                return first[0].strip()
    return None
