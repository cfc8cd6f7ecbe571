"""Splitting long text into chunks that are generated one after another."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n\s*\n")
_SPEAKER_TURN = re.compile(r"(?=\[SPEAKER\d+\])")


def chunk_text(text: str, method: str = "none", max_words: int = 100, max_turns: int = 1) -> list[str]:
    text = text.strip()
    if method == "none":
        return [text]
    if method == "word":
        return chunk_by_words(text, max_words)
    if method == "speaker":
        return chunk_by_speaker(text, max_turns)
    raise ValueError(f"unknown chunk method {method!r}")


def chunk_by_words(text: str, max_words: int) -> list[str]:
    """Whole sentences, packed up to `max_words` words a chunk; a longer sentence is cut by words."""
    chunks: list[str] = []
    current: list[str] = []
    for sentence in filter(None, (s.strip() for s in _SENTENCE_END.split(text))):
        words = sentence.split()
        while len(words) > max_words:  # a sentence longer than a chunk
            if current:
                chunks.append(" ".join(current))
                current = []
            chunks.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if current and len(current) + len(words) > max_words:
            chunks.append(" ".join(current))
            current = []
        current += words
    if current:
        chunks.append(" ".join(current))
    return chunks or [text]


def chunk_by_speaker(text: str, max_turns: int) -> list[str]:
    """`max_turns` speaker turns (`[SPEAKERn] ...`) a chunk; text before the first tag is a turn."""
    turns = [t.strip() for t in _SPEAKER_TURN.split(text) if t.strip()]
    return ["\n".join(turns[i : i + max_turns]) for i in range(0, len(turns), max_turns)] or [text]
