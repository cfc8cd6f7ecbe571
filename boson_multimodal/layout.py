"""Where things live on the model volume, and what to tell a user when they are missing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GENERATION_SUBDIR = "bosonai/higgs-audio-v2-generation-3B-base"
TOKENIZER_SUBDIR = "bosonai/higgs-audio-v2-tokenizer"
VOICES_SUBDIR = "voice_prompts"
DEMO_MARKER = "DEMO_BUNDLE.txt"
# RunPod "cached models" put hub repos here (with HF_HUB_OFFLINE=1)
RUNPOD_HUB_CACHE = "/runpod-volume/huggingface-cache/hub"


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


def hub_caches() -> list[Path]:
    """Hugging Face hub caches to look in, in order: HF_HUB_CACHE, HF_HOME/hub, RunPod's cached
    models, the default (~/.cache/huggingface/hub)."""
    candidates = [os.environ.get("HF_HUB_CACHE"),
                  os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None,
                  RUNPOD_HUB_CACHE, os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")]
    return list(dict.fromkeys(Path(c) for c in candidates if c))


def from_hub_cache(
    generation_repo: str,
    tokenizer_repo: str,
    voices: Path,
    generation_revision: str | None = None,
    tokenizer_revision: str | None = None,
    caches: list[Path] | None = None,
) -> ModelPaths | None:
    """Both repos' snapshots from the first hub cache that holds them, with no network (the
    cache's refs resolve a branch name; a commit names its snapshot). None when none does."""
    for cache in caches if caches is not None else hub_caches():
        generation = cached_snapshot(generation_repo, cache, generation_revision)
        tokenizer = cached_snapshot(tokenizer_repo, cache, tokenizer_revision) if generation else None
        if generation is None or tokenizer is None:
            continue
        paths = ModelPaths(root=cache, generation=generation, tokenizer=tokenizer, voices=voices)
        if paths.has_weights():
            return paths
    return None


def cached_snapshot(repo: str, cache: Path, revision: str | None = None) -> Path | None:
    """A repo's snapshot in one hub cache, with no network; None when that cache does not hold
    it (or `repo` is not a repo id)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not cache.is_dir():
        return None
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _has_weights(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any(
        directory.glob(pattern) for pattern in ("*.safetensors", "*.bin", "*.pth")
    )


def read_revision(directory: Path) -> str | None:
    """The hub commit a snapshot came from, when the download tool left a record of it (a hub
    cache's snapshot is named after its commit)."""
    if directory.parent.name == "snapshots" and directory.parent.parent.name.startswith("models--"):
        return directory.name
    for candidate in (
        directory / ".cache" / "huggingface" / "download" / "config.json.metadata",
        directory / "REVISION",
    ):
        if candidate.is_file():
            first = candidate.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if first and first[0].strip():
                return first[0].strip()
    return None
