"""Captions from word timings: SubRip (.srt) and WebVTT (.vtt). Pure text, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from core.domain.verification import Word

MAX_CUE_CHARS = 42  # a subtitle line a reader takes in at once (the BBC's and Netflix's guides)
MAX_CUE_SECONDS = 6.0
MIN_CUE_SECONDS = 0.05
PAUSE_SECONDS = 0.8  # a silence this long between words starts a new cue
CAPTION_FORMATS = ("srt", "vtt")
CONTENT_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def cues(words: Sequence[Word], duration: float) -> list[Cue]:
    """Words grouped into cues of at most MAX_CUE_CHARS characters and MAX_CUE_SECONDS, broken
    at pauses; every cue inside [0, duration], each starting where the one before ended or later."""
    out: list[Cue] = []
    group: list[Word] = []

    def close() -> None:
        if group:
            start = max(group[0].start, out[-1].end if out else 0.0)
            end = max(group[-1].end, start + MIN_CUE_SECONDS)
            start, end = min(start, duration), min(end, duration)
            if end <= start:  # heard at the very end: the last moment of the audio
                start = max(out[-1].end if out else 0.0, duration - MIN_CUE_SECONDS)
            if end > start:
                out.append(Cue(round(start, 3), round(end, 3), " ".join(w.word for w in group)))
            group.clear()

    for word in words:
        text = " ".join(word.word.split())
        if not text:
            continue
        word = Word(text, word.start, word.end)
        if group and (len(" ".join(w.word for w in group)) + 1 + len(text) > MAX_CUE_CHARS
                      or word.end - group[0].start > MAX_CUE_SECONDS or word.start - group[-1].end >= PAUSE_SECONDS):
            close()
        group.append(word)
    close()
    return out


def to_srt(words: Sequence[Word], duration: float) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_srt_text(c.text)}\n"
              for i, c in enumerate(cues(words, duration), start=1)]
    return "\n".join(blocks)


def to_vtt(words: Sequence[Word], duration: float) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{_vtt_text(c.text)}\n"
              for c in cues(words, duration)]
    return "\n".join(["WEBVTT\n", *blocks])


def render(fmt: str, words: Sequence[Word], duration: float) -> str:
    return to_srt(words, duration) if fmt == "srt" else to_vtt(words, duration)


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _vtt_text(text: str) -> str:
    """WebVTT cue text: `&` and `<` are markup, `-->` would end the cue's timing line."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _srt_text(text: str) -> str:
    return text.replace("-->", "->")
