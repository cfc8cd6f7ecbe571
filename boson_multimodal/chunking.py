"""Splitting text into the chunks that are generated one after another, and how much speech a
text takes.

`auto` keeps the text in one chunk when it fits (the KV cache and the per-chunk step budget, as
a predicate the runtime gives) and otherwise splits it where a reader would pause: at sentence
ends, then, for a sentence that alone is too long, at clauses, then between words, then between
characters (for text without spaces). Every split is lossless: the chunks, stripped, are the
text's pieces in order, none lost."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Callable

FRAME_RATE = 25
SLOW_WORDS_PER_SECOND = 2.0  # a slow reading: what chunks are sized for (most voices speak faster)
FAST_WORDS_PER_SECOND = 4.0  # a fast one: a text that needs more even so cannot fit
CJK_UNITS_PER_CHARACTER = 0.55  # a Chinese or Japanese character takes about half a word's time

_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n\s*\n")
_SPEAKER_TURN = re.compile(r"(?=\[SPEAKER\d+\])")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
# boundaries after which a chunk may end, coarsest first (each match's end is a cut point)
_SENTENCE = re.compile(r"[.!?…]+[\"')\]]*(?:\s+|(?=" + _CJK.pattern + "))|[。！？]+\\s*|\n+")
_CLAUSE = re.compile(r"[,;:\-–—]+\s+|[，；：、]+\s*")
_WORD = re.compile(r"\s+")
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}  # ZWJ, variation selectors, keycap


def chunk_text(text: str, method: str = "none", max_words: int = 100, max_turns: int = 1) -> list[str]:
    """The chunks of the fixed methods (`none`, `word`, `speaker`); `auto` needs `plan_chunks`."""
    text = text.strip()
    if method in ("none", "auto"):
        return [text]
    if method == "word":
        return chunk_by_words(text, max_words)
    if method == "speaker":
        return chunk_by_speaker(text, max_turns)
    raise ValueError(f"unknown chunk method {method!r}")


def plan_chunks(text: str, method: str, fits: Callable[[str], bool], max_words: int = 100,
                max_turns: int = 1) -> list[str]:
    """The chunks a request is generated in. `auto`: the whole text when `fits` says so, else
    the split described in the module docstring, each chunk as long as `fits` allows."""
    text = text.strip()
    if method != "auto":
        return chunk_text(text, method, max_words, max_turns)
    if not text or fits(text):
        return [text]
    pieces = _split(text, lambda chunk: fits(chunk.strip()), 0)  # a chunk is judged as it will be sent
    return [chunk for chunk in (c.strip() for c in pieces) if chunk]


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


# -- how long a text takes to say ----------------------------------------------------------------


def reading_units(text: str) -> float:
    """About how many words' time a text takes: its words (or, for long unspaced runs, one per
    6 characters), plus about half a word per Chinese or Japanese character."""
    cjk = len(_CJK.findall(text))
    rest = _CJK.sub(" ", text)
    return max(len(rest.split()), len(rest.replace(" ", "")) / 6.0) + CJK_UNITS_PER_CHARACTER * cjk


def speech_frames(text: str, words_per_second: float = SLOW_WORDS_PER_SECOND) -> int:
    """Frames a reading of `text` at this pace takes, plus a second."""
    return math.ceil(FRAME_RATE * (1.0 + reading_units(text) / words_per_second))


def duration_bound_frames(text: str) -> int:
    """Frames that no reading of `text` should need: about 3x a normal speaking rate, plus 3 s
    (a generation still running then has gone wrong)."""
    return math.ceil(FRAME_RATE * (3.0 + 0.8 * reading_units(text)))


# -- auto: cutting where a reader pauses -----------------------------------------------------


def _pieces(text: str, level: int) -> list[str]:
    """`text` cut after every boundary of `level` (sentence, clause, word, character); the
    pieces concatenate back to `text`."""
    if level == 3:
        cuts = [i for i in range(1, len(text)) if _may_cut(text, i)]
    else:
        pattern = (_SENTENCE, _CLAUSE, _WORD)[level]
        cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _may_cut(text: str, i: int) -> bool:
    """Whether a chunk may end between text[i-1] and text[i]: never inside a character's
    combining marks, an emoji's joined sequence, or a flag's pair of regional indicators."""
    before, after = text[i - 1], text[i]
    if unicodedata.combining(after) or after in _JOINERS or before == "\u200d":
        return False
    if _regional(before) and _regional(after):
        run = 0
        while i - 1 - run >= 0 and _regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 0
    return True


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _split(text: str, fits: Callable[[str], bool], level: int) -> list[str]:
    """Chunks of `text` that fit: from each piece on (at `level`), the most pieces that fit
    together (found by halving: `fits` grows monotonically with the text); a piece that does
    not fit alone is cut at the next level. A single character that does not fit stays as it
    is (the caller's check refuses it)."""
    if level > 3:
        return [text]
    pieces = _pieces(text, level)
    chunks: list[str] = []
    start = 0
    while start < len(pieces):
        if not fits(pieces[start]):
            chunks += _split(pieces[start], fits, level + 1)
            start += 1
            continue
        low, high = start + 1, len(pieces)  # pieces[start:low] fits; find the largest such end
        while low < high:
            middle = (low + high + 1) // 2
            if fits("".join(pieces[start:middle])):
                low = middle
            else:
                high = middle - 1
        chunks.append("".join(pieces[start:low]))
        start = low
    return chunks
