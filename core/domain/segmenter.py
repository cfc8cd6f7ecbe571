"""Text that arrives in pieces (an LLM's reply, token by token), cut into the segments that are
spoken one after another.

A cut is decided by the text alone, never by how it was split into pieces: a sentence ends at
`.`, `!`, `?` or `…` (and any closing quotes or brackets after it) followed by a space and the
next sentence's first character, which must not be lower case (`e.g. this`, `approx. five`);
`.` after a known abbreviation (`Dr.`, `etc.`, `U.S.`) or a single letter (an initial) ends
nothing; `。！？` end a sentence with no space. So a sentence is released when the first
character of the next one arrives, or at `flush` / `done`.

Segments: the first is the first sentence (spoken as soon as possible), cut earlier at a clause
(`, ; : —`) once it runs past `first_max` characters without an end; later ones gather whole
sentences up to at least `min_chars` (a segment is then ready well before the last one has
been played); any segment past `max_chars` without a sentence end is cut at its last clause or
word boundary."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Protocol

ABBREVIATIONS = frozenset("""
mr mrs ms dr prof sr jr st mt vs etc eg ie cf al inc ltd co corp dept est fig figs no nos vol vols
approx appt apt ave blvd capt col gen gov lt maj rep rev sen sgt jan feb mar apr jun jul aug sep
sept oct nov dec mon tue wed thu fri sat sun am pm us uk eu un ph
""".split())
_ENDS = ".!?…"
_WIDE_ENDS = "。！？"
_CLOSERS = "\"'”’)]}»"
_CLAUSE = re.compile(r"[,;:—–]\s")


@dataclass
class Segmenter:
    first_max: int = 120  # the first segment is cut at a clause once it is this long
    min_chars: int = 60  # later segments gather sentences up to at least this much
    max_chars: int = 300  # no segment waits past this for a sentence end
    _buffer: str = ""
    _emitted: int = 0  # segments released so far
    _pending: list[str] = field(default_factory=list)  # whole sentences not yet released

    def append(self, text: str) -> list[str]:
        """The segments this text completes (often none)."""
        self._buffer += text
        return self._release(final=False)

    def flush(self) -> list[str]:
        """Everything buffered, now, even without a sentence end."""
        return self._release(final=True)

    @property
    def buffered(self) -> int:
        return len(self._buffer) + sum(len(s) for s in self._pending)

    def _release(self, final: bool) -> list[str]:
        while (end := _sentence_end(self._buffer)) is not None:
            self._pending.append(self._buffer[:end])
            self._buffer = self._buffer[end:]
        out: list[str] = []
        while True:
            segment = self._next_segment(final)
            if segment is None:
                return out
            if segment.strip():
                out.append(" ".join(segment.split()))
                self._emitted += 1

    def _next_segment(self, final: bool) -> str | None:
        limit = self.first_max if self._emitted == 0 else self.max_chars
        head = self._pending[0] if self._pending else self._buffer
        if len(head) >= limit:  # a sentence too long to wait for (ended or not): cut inside it
            cut = _cut_point(head[:limit], first=self._emitted == 0)
            if self._pending:
                self._pending[0] = head[cut:]
                if not self._pending[0].strip():
                    self._pending.pop(0)
            else:
                self._buffer = head[cut:]
            return head[:cut]
        if self._pending:
            taken, size = 0, 0
            for sentence in self._pending:
                if taken and len(sentence) >= limit:
                    break  # a long one next: what is gathered goes now, it is cut on its own
                taken, size = taken + 1, size + len(sentence)
                if self._emitted == 0 or size >= self.min_chars:
                    break
            whole = taken < len(self._pending) or len(self._buffer) >= limit
            if self._emitted == 0 or size >= self.min_chars or whole or final:
                segment = "".join(self._pending[:taken])
                del self._pending[:taken]
                return segment
            return None  # gather more sentences
        if final and self._buffer.strip():
            segment, self._buffer = self._buffer, ""
            return segment
        return None


def _cut_point(head: str, first: bool) -> int:
    """Inside a long sentence's first characters: the first clause after a third of them for
    the first segment (speak soon), else the last clause; else the last word boundary."""
    start = len(head) // 3 if first else 0
    clauses = [m.end() for m in _CLAUSE.finditer(head) if m.end() > start]
    if clauses:
        return clauses[0] if first else clauses[-1]
    spaces = [m.end() for m in re.finditer(r"\s+", head) if m.end() > start]
    return spaces[-1] if spaces else len(head)


def _sentence_end(text: str) -> int | None:
    """Where the first complete sentence of `text` ends (after its trailing space), when what
    follows is already there to tell; None otherwise."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _WIDE_ENDS:
            j = i + 1
            while j < len(text) and text[j] in _CLOSERS + _WIDE_ENDS:
                j += 1
            if j < len(text):
                while j < len(text) and text[j].isspace():
                    j += 1
                return j if j < len(text) else None
            return None
        if ch in _ENDS:
            j = i + 1
            while j < len(text) and text[j] in _ENDS + _CLOSERS:
                j += 1
            k = j
            while k < len(text) and text[k].isspace():
                k += 1
            if k == j:  # no space after it (3.14, example.com, or not arrived yet)
                i = j
                continue
            if k == len(text):
                return None  # the next sentence has not started: cannot tell yet
            if _ends_sentence(text, i, text[k]):
                return k
            i = k
            continue
        i += 1
    return None


def _ends_sentence(text: str, at: int, following: str) -> bool:
    if text[at] != ".":
        return not following.islower()
    if following.islower():
        return False
    word = re.search(r"([\w.]+)$", text[:at])
    token = word.group(1).lower().replace(".", "") if word else ""
    if token in ABBREVIATIONS:
        return False
    if len(token) == 1 and token.isalpha():  # an initial: J. R. R. Tolkien
        return False
    return True


class TextSource(Protocol):
    """A session's text, segment by segment, for the engine: `next` blocks until a segment is
    ready (its text), the input is done (None), or `stop()` is true; `interrupted` is true while
    the session wants the segment being spoken cut short (barge-in); `more` says whether another
    segment may still come."""

    def next(self, stop: Callable[[], bool]) -> str | None: ...

    def interrupted(self) -> bool: ...

    def more(self) -> bool: ...

    def spoken(self) -> str: ...
