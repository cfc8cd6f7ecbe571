"""What the reference implementation does to a transcript before it reaches the model
(its generation example's rules): full-width punctuation to ASCII, parentheses to spaces,
temperature units spelled out, `[laugh]`-style tags to its sound-effect markup, whitespace
collapsed within lines, blank lines dropped, and a final period when the text ends without
punctuation. The model was trained on text shaped like this."""

from __future__ import annotations

import re

SPEAKER_TAG = re.compile(r"\[(SPEAKER\d+)\]")

_FULL_WIDTH = {
    "，": ", ", "。": ".", "：": ":", "；": ";", "？": "?", "！": "!", "（": "(", "）": ")",
    "【": "[", "】": "]", "《": "<", "》": ">", "“": '"', "”": '"', "‘": "'", "’": "'",
    "、": ",", "—": "-", "…": "...", "·": ".", "「": '"', "」": '"', "『": '"', "』": '"',
}
_UNITS = (("°F", " degrees Fahrenheit"), ("°C", " degrees Celsius"))
# a sound event: one marker (<SE>), or its start and end (<SE_s>, <SE_e>)
_SOUND_EVENTS = (
    ("[laugh]", "SE", "Laughter"),
    ("[humming start]", "SE", "Humming"),
    ("[humming end]", "SE_e", "Humming"),
    ("[music start]", "SE_s", "Music"),
    ("[music end]", "SE_e", "Music"),
    ("[music]", "SE", "Music"),
    ("[sing start]", "SE_s", "Singing"),
    ("[sing end]", "SE_e", "Singing"),
    ("[applause]", "SE", "Applause"),
    ("[cheering]", "SE", "Cheering"),
    ("[cough]", "SE", "Cough"),
)
_FINAL = (".", "!", "?", ",", ";", '"', "'", "</SE_e>", "</SE>")


def speaker_tags(text: str) -> list[str]:
    """The distinct `SPEAKERn` tags of a text, sorted as strings (SPEAKER10 before SPEAKER2),
    which is the order the reference implementation assigns default voices in."""
    return sorted(set(SPEAKER_TAG.findall(text)))


def normalize_transcript(text: str) -> str:
    for wide, narrow in _FULL_WIDTH.items():
        text = text.replace(wide, narrow)
    text = text.replace("(", " ").replace(")", " ")
    for unit, words in _UNITS:
        text = text.replace(unit, words)
    for tag, marker, name in _SOUND_EVENTS:
        text = text.replace(tag, f"<{marker}>[{name}]</{marker}>")
    text = "\n".join(" ".join(line.split()) for line in text.split("\n") if line.strip()).strip()
    if text and not text.endswith(_FINAL):
        text += "."
    return text
