"""The error rate of what was heard against what was to be said: both sides normalised alike
(Whisper's own normalisers from transformers: case, punctuation, spelled and written numbers),
markup that is not spoken removed from the text, then jiwer's word error rate, or its character
error rate for scripts written without spaces between words."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import jiwer

# what the text holds that is not said: speaker tags, sound-event markup (with the event's
# name), the bracketed tags the text normaliser turns into sound events
_SPEAKER = re.compile(r"\[SPEAKER\d+\]")
_SOUND_EVENT = re.compile(r"<(SE(?:_s|_e)?)>.*?</\1>", re.DOTALL)
_TAG = re.compile(r"</?SE(?:_s|_e)?>|\[[^\]]*\]")
# scripts whose words are not separated by spaces: Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar
_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1780-\u17ff"
                       "\u1000-\u109f]")


def spoken(text: str) -> str:
    """The words of a chunk's text that are meant to be heard."""
    return " ".join(_TAG.sub(" ", _SOUND_EVENT.sub(" ", _SPEAKER.sub(" ", text))).split())


@lru_cache(maxsize=1)
def _normalizers():
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    return EnglishTextNormalizer({}), BasicTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normaliser for Latin text (numbers, contractions, punctuation, case),
    its basic one (punctuation, symbols, case) for the rest; NFKC first, so full-width and
    composed forms compare equal; what is left of punctuation alone is dropped."""
    english, basic = _normalizers()
    text = unicodedata.normalize("NFKC", text)
    latin = all(ord(c) < 0x250 or not c.isalpha() for c in text)
    words = (english(text) if latin else basic(text)).split()
    return " ".join(w for w in words if any(c.isalnum() for c in w))  # a stray "." is not a word


def error_rate(reference: str, heard: str) -> float:
    """0 when every word was heard as written; 1 when none was (can exceed 1 with words added).
    Text that says nothing: 0 when nothing was heard, else 1."""
    ref, hyp = normalize(spoken(reference)), normalize(heard)
    if not ref:
        return 0.0 if not hyp else 1.0
    if _UNSPACED.search(ref):
        return float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", "") or " "))
    return float(jiwer.wer(ref, hyp or " "))
