"""Text arriving in pieces is cut into the same segments however it was split (generated texts
of every shape, split in pieces of 1, 3 and 17 characters, by words, and at random), loses
nothing, and cuts where a reader would."""

from __future__ import annotations

import random

import pytest

from core.domain.segmenter import Segmenter

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex every jovial "
         "dwarf near our old stone bridge").split()
SPECIALS = ["Dr. Smith", "e.g. this one", "approx. five", "U.S. law", "J. R. R. Tolkien", "3.14",
            "example.com/path?a=1", "version 2.0.1", "at 5 p.m. today", "No. 7", "Inc. and Ltd."]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 30))]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words) + 1), rng.choice(SPECIALS))
    if rng.random() < 0.3:
        words[rng.randrange(len(words))] += rng.choice([",", ";", ":", " —"])
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", "!", "?", "...", "?!", ".\"", ".)", "…"])


def text_of(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.1:  # one long sentence with no end at all
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 200)))
    if kind < 0.2:  # Chinese, no spaces
        return "".join(rng.choice(["你好世界", "今天天气很好", "我们走吧"]) + rng.choice("。！？")
                       for _ in range(rng.randint(1, 8)))
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 12)))


def pieces(text: str, how: str, rng: random.Random) -> list[str]:
    if how == "words":
        return [w + " " for w in text.split(" ")]
    if how == "random":
        out, i = [], 0
        while i < len(text):
            n = rng.randint(1, 25)
            out.append(text[i:i + n])
            i += n
        return out
    n = int(how)
    return [text[i:i + n] for i in range(0, len(text), n)]


def segments(parts: list[str]) -> list[str]:
    s = Segmenter()
    out = []
    for part in parts:
        out += s.append(part)
    return out + s.flush()


@pytest.mark.parametrize("seed", range(300))
def test_the_same_text_gives_the_same_segments_however_it_arrives(seed):
    rng = random.Random(seed)
    text = text_of(rng)
    whole = segments([text])
    for how in ("1", "3", "17", "words", "random"):
        assert segments(pieces(text, how, rng)) == whole, how
    assert "".join("".join(whole).split()) == "".join(text.split())  # nothing lost, nothing added
    s = Segmenter()
    assert all(len(seg) <= s.max_chars for seg in whole[1:])
    assert not whole or len(whole[0]) <= max(s.first_max, len(text.split()[0]))


def test_sentences_are_released_when_the_next_one_starts():
    s = Segmenter()
    assert s.append("Hello there.") == []  # a period at the end says nothing yet
    assert s.append(" ") == []
    assert s.append("H") == ["Hello there."]  # the first segment: one sentence, at once
    assert s.append("ow are you? I am fine. ") == []  # later ones gather up to 60 characters
    assert s.append("Thanks for asking, it is kind of you. And") == [
        "How are you? I am fine. Thanks for asking, it is kind of you."]
    assert s.flush() == ["And"]


@pytest.mark.parametrize("text,first", [
    ("Dr. Smith arrived. Then he left.", "Dr. Smith arrived."),
    ("We met J. R. R. Tolkien there. It was fun.", "We met J. R. R. Tolkien there."),
    ("It costs 3.14 dollars. Cheap.", "It costs 3.14 dollars."),
    ("Go to example.com. Then read.", "Go to example.com."),
    ("Take e.g. this one. Or that.", "Take e.g. this one."),
    ("Wait... what? Really.", "Wait... what?"),
    ("She said \"Stop.\" Then silence.", "She said \"Stop.\""),
    ("你好。世界。", "你好。"),
    ("At 5 p.m. Tom came. Late.", "At 5 p.m. Tom came."),
])
def test_cuts_where_a_reader_would(text, first):
    s = Segmenter()
    got = s.append(text) + s.flush()
    assert got[0] == first


def test_a_long_first_sentence_is_cut_at_a_clause():
    s = Segmenter()
    text = "Well " * 10 + "this goes on, and on without an end " + "word " * 40
    got = s.append(text)
    assert got and got[0].endswith("this goes on,")  # the first clause past a third of 120
    assert len(got[0]) <= s.first_max


def test_flush_speaks_what_is_buffered_and_done_leaves_nothing():
    s = Segmenter()
    assert s.append("no sentence end yet") == []
    assert s.flush() == ["no sentence end yet"]
    assert s.flush() == [] and s.buffered == 0
    assert s.append("   ") == [] and s.flush() == []
