"""Auto chunking and the fit checks, over generated texts of every shape: every split is
lossless, every chunk fits (but a single character that nothing could make fit), no chunk
starts inside a character's combining marks, an emoji sequence or a flag, and the splits fall
at the coarsest boundary that works."""

import random
import unicodedata

import pytest

from boson_multimodal.chunking import (
    chunk_text,
    duration_bound_frames,
    plan_chunks,
    reading_units,
    speech_frames,
)

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "a", "I", "well-known", "e.g.", "3.14", "1,000"]
UNSPACED = ["今天", "天气", "很好", "我们", "一起", "去", "公园"]
EMOJI = ["😀", "👨\u200d👩\u200d👧", "🇫🇷", "🇩🇪", "1\ufe0f\u20e3", "❤\ufe0f"]
COMBINING = ["e\u0301", "n\u0303", "a\u0308\u0301"]


def text_of(seed: int) -> str:
    """A text mixing sentences, clauses, long runs without punctuation, unspaced scripts, emoji
    sequences, combining marks and line breaks, in proportions that change with the seed."""
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(1, 120)):
        kind = rng.random()
        if kind < 0.5:
            words = rng.choices(WORDS, k=rng.randint(1, 40))
            end = rng.choice([".", "!", "?", "...", ",", ";", ":", " -", ""])
            parts.append(" ".join(words) + end)
        elif kind < 0.7:
            parts.append("".join(rng.choices(UNSPACED, k=rng.randint(1, 60))) + rng.choice(["。", "！", "", "，"]))
        elif kind < 0.85:
            parts.append("".join(rng.choices(EMOJI + COMBINING, k=rng.randint(1, 80))))
        else:
            parts.append(rng.choice(["\n", "\n\n", "\"Quoted.\"", "(aside)"]))
    return " ".join(parts).strip() or "x"


def graphemes_whole(chunks: list[str]) -> bool:
    """No chunk begins with a combining mark, a joiner or a variation selector, or inside a
    flag's pair (each chunk holds whole pairs of regional indicators at its start)."""
    for chunk in chunks[1:]:
        first = chunk[0]
        if unicodedata.combining(first) or first in "\u200d\ufe0e\ufe0f\u20e3":
            return False
    return True


FITS = {
    "speech of 5 s": lambda t: speech_frames(t) <= 125,
    "speech of 20 s": lambda t: speech_frames(t) <= 500,
    "80 characters": lambda t: len(t) <= 80,
    "3 characters": lambda t: len(t) <= 3,
}


@pytest.mark.parametrize("limit", list(FITS))
@pytest.mark.parametrize("seed", range(40))
def test_auto_chunks_are_lossless_fit_and_keep_graphemes_whole(seed, limit):
    text, fits = text_of(seed), FITS[limit]
    chunks = plan_chunks(text, "auto", fits)
    assert "".join(chunks).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    assert all(chunk == chunk.strip() and chunk for chunk in chunks)
    for chunk in chunks:  # a chunk that does not fit is a single grapheme cluster nothing could cut
        assert fits(chunk) or not any(0 < i < len(chunk) and unicodedata.combining(chunk[i]) == 0
                                      and chunk[i] not in "\u200d\ufe0e\ufe0f\u20e3" and chunk[i - 1] != "\u200d"
                                      and not ("\U0001f1e6" <= chunk[i] <= "\U0001f1ff")
                                      for i in range(1, len(chunk))), chunk
    assert graphemes_whole(chunks)
    if fits(text):
        assert chunks == [text]


def test_sentences_are_kept_whole_when_they_fit():
    text = "One two three. Four five six! Seven eight nine? Ten eleven twelve."
    chunks = plan_chunks(text, "auto", lambda t: len(t) <= 32)
    assert chunks == ["One two three. Four five six!", "Seven eight nine?", "Ten eleven twelve."]


def test_a_sentence_too_long_is_cut_at_clauses_then_words_then_characters():
    assert plan_chunks("alpha bravo, charlie delta; echo foxtrot", "auto", lambda t: len(t) <= 14) == \
        ["alpha bravo,", "charlie delta;", "echo foxtrot"]
    assert plan_chunks("alpha bravo charlie delta", "auto", lambda t: len(t) <= 12) == \
        ["alpha bravo", "charlie", "delta"]
    assert plan_chunks("abcdefghij", "auto", lambda t: len(t) <= 4) == ["abcd", "efgh", "ij"]


def test_fixed_methods_are_as_asked():
    assert chunk_text("One. Two.", "none") == ["One. Two."]
    assert plan_chunks("One. Two.", "none", lambda t: False) == ["One. Two."]  # the caller checks fit
    assert plan_chunks("a b c d e f g", "word", lambda t: True, max_words=3) == ["a b c", "d e f", "g"]
    with pytest.raises(ValueError):
        chunk_text("x", "sentence")


@pytest.mark.parametrize("text,units", [("", 0), ("Hi", 1), ("one two three", 3), ("a" * 60, 10),
                                        ("今天天气很好", 6 * 0.55), ("今天 good day", 2 * 0.55 + 2)])
def test_reading_units_count_words_long_runs_and_chinese_characters(text, units):
    assert reading_units(text) == pytest.approx(units)


def test_the_duration_bound_is_above_every_reading_pace_the_planner_sizes_for():
    for seed in range(60):
        text = text_of(seed)
        assert speech_frames(text, 4.0) <= speech_frames(text) <= duration_bound_frames(text)


# -- the fit checks (planning.py), with a tokenizer of one token per character -------------------

from boson_multimodal.planning import (  # noqa: E402
    MIN_SPLIT_FRAMES,
    ChunkFit,
    StepBudgetTooSmall,
    TextDoesNotFit,
    plan,
)


class CharTokens:
    def text_tokens(self, text: str) -> int:
        return len(text)


def fit(budget_frames: int, cache: int = 8192, base: int = 100) -> ChunkFit:
    return ChunkFit(CharTokens(), base, cache, budget_frames, 8)  # type: ignore[arg-type]


def test_a_step_budget_under_5_s_asks_for_a_short_clip_and_is_not_split_for():
    long = "word " * 200
    assert plan(long, "auto", fit(MIN_SPLIT_FRAMES - 1)) == [long.strip()]
    assert len(plan(long, "auto", fit(MIN_SPLIT_FRAMES))) > 10


def test_auto_chunks_fit_a_slow_reading_and_none_is_refused_only_past_a_fast_one():
    text = "alpha bravo charlie delta echo. " * 10  # 50 words: 26 s slow, 13.5 s fast
    budget = 20 * 25
    assert all(speech_frames(c) <= budget for c in plan(text, "auto", fit(budget)))
    assert len(plan(text, "auto", fit(budget))) == 2
    assert plan(text, "none", fit(budget)) == [text.strip()]  # a fast reading fits: it may end at the budget
    with pytest.raises(TextDoesNotFit, match="use chunk_method auto"):
        plan(text * 2, "none", fit(budget))


def test_the_kv_cache_limits_a_chunk_and_a_prompt_that_leaves_no_room_is_named():
    text = "alpha bravo charlie delta echo. " * 40
    chunks = plan(text, "auto", fit(2039, cache=600))
    assert len(chunks) > 2 and all(100 + len(c) + min(speech_frames(c), 2039) + 9 + 16 <= 600 for c in chunks)
    with pytest.raises(TextDoesNotFit, match="the prompt without any text"):
        plan("Hi.", "auto", fit(2039, cache=100))
    with pytest.raises(TextDoesNotFit, match="cannot be split into chunks that fit"):
        plan("Hi there.", "auto", fit(2039, cache=100 + 25 + 9 + 16 + 1))


@pytest.mark.parametrize("budget,ok", [(0, False), (1, True)])
def test_a_step_budget_without_an_audio_frame_is_refused(budget, ok):
    if ok:
        assert plan("Hi.", "auto", fit(budget)) == ["Hi."]
    else:
        with pytest.raises(StepBudgetTooSmall, match="at least 10"):
            plan("Hi.", "auto", fit(budget))
