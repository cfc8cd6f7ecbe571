"""Which text chunks a request is generated in, checked before its first frame: every chunk
must leave room in the KV cache for its prompt and its speech, and (when the step budget is
long enough to be a budget for speech, not a request for a short clip) be speakable within its
`max_new_tokens` steps. `auto` sizes its chunks for a slow reading (2 words a second); a chunk
the caller chose (`none`, `word`, `speaker`) is refused only when even a fast reading (4 words
a second) could not fit: it may still end at its step budget, as the reference does.

A chunk's prompt is the system and voice turns, up to two earlier chunks as context, and the
chunk; the check here assumes no context (the runtime drops context that would not fit, never
the chunk)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from boson_multimodal.chunking import (
    FAST_WORDS_PER_SECOND,
    FRAME_RATE,
    SLOW_WORDS_PER_SECOND,
    plan_chunks,
    speech_frames,
)
from boson_multimodal.prompt import PromptBuilder, Turn

# Below this many frames per chunk (5 s), max_new_tokens asks for a short clip: the text is not
# split to fit it, the clip ends at the step budget instead.
MIN_SPLIT_FRAMES = 5 * FRAME_RATE
KV_MARGIN = 16  # positions kept free past a chunk's expected speech (the decoder needs 16 + K + 2)


def frames_needed(chunk: str, frame_budget: int, num_codebooks: int,
                  words_per_second: float = SLOW_WORDS_PER_SECOND) -> int:
    """The decode steps a chunk is expected to take (a reading at this pace, within its budget,
    plus the BOS frame and the delay)."""
    return min(speech_frames(chunk, words_per_second), frame_budget) + num_codebooks + 1


class TextDoesNotFit(ValueError):
    """The text (or a chunk of it) cannot be generated with the chunking asked for; the message
    says why and what to change."""


@dataclass(frozen=True)
class ChunkFit:
    """Whether a chunk fits: `base_tokens` (the prompt without the chunk's text), the decoder's
    `max_cache_len`, the audio frames one chunk may take (`frame_budget`)."""

    builder: PromptBuilder
    base_tokens: int
    max_cache_len: int
    frame_budget: int
    num_codebooks: int
    words_per_second: float = SLOW_WORDS_PER_SECOND

    @classmethod
    def for_request(cls, builder: PromptBuilder, base: Sequence[Turn], max_cache_len: int,
                    max_new_tokens: int) -> "ChunkFit":
        k = builder.ids.num_codebooks
        base_tokens = builder.build([*base, Turn("user", "")]).length  # + the chunk's tokens, exactly
        return cls(builder, base_tokens, max_cache_len, max(0, max_new_tokens - k - 1), k)

    @property
    def budget_applies(self) -> bool:
        return self.frame_budget >= MIN_SPLIT_FRAMES

    def frames_needed(self, chunk: str) -> int:
        return frames_needed(chunk, self.frame_budget, self.num_codebooks, self.words_per_second)

    def at_pace(self, words_per_second: float) -> "ChunkFit":
        return replace(self, words_per_second=words_per_second)

    def __call__(self, chunk: str) -> bool:
        return self.problem(chunk) is None

    def problem(self, chunk: str) -> str | None:
        """Why `chunk` does not fit, or None."""
        frames = speech_frames(chunk, self.words_per_second)
        if self.budget_applies and frames > self.frame_budget:
            return (f"needs about {frames / FRAME_RATE:.0f} s of speech; a chunk holds at most "
                    f"{self.frame_budget / FRAME_RATE:.0f} s (max_new_tokens)")
        positions = self.base_tokens + self.builder.text_tokens(chunk) + self.frames_needed(chunk) + KV_MARGIN
        if positions > self.max_cache_len:
            return (f"needs {positions} KV-cache positions (prompt and speech); the cache holds "
                    f"{self.max_cache_len}")
        return None


class StepBudgetTooSmall(ValueError):
    """max_new_tokens leaves no audio frame: the first K + 1 steps are the BOS frame and the delay."""


def plan(text: str, method: str, fit: ChunkFit, max_words: int = 100, max_turns: int = 1) -> list[str]:
    """The chunks of `text` (normalised) by `method`; raises TextDoesNotFit, naming the chunk
    and what to change, when one cannot fit, and StepBudgetTooSmall when no chunk could have
    audio."""
    if fit.frame_budget < 1:
        raise StepBudgetTooSmall(f"max_new_tokens must be at least {fit.num_codebooks + 2}: the first "
                                 f"{fit.num_codebooks + 1} steps of a chunk are its BOS frame and the codebook delay")
    chunks = plan_chunks(text, method, fit, max_words, max_turns)
    if method != "auto":
        fit = fit.at_pace(FAST_WORDS_PER_SECOND)
    for index, chunk in enumerate(chunks):
        problem = fit.problem(chunk)
        if problem is None:
            continue
        if method == "auto" and fit(""):  # the text was split as far as it goes
            raise TextDoesNotFit(f"the text cannot be split into chunks that fit: even {chunk[:20]!r} {problem}: "
                                 "use a shorter voice clip or scene description, or a larger HIGGS_MAX_CACHE_LEN")
        if fit(""):  # the prompt without any text fits: the text is what is too long
            where = "the text" if len(chunks) == 1 else f"text chunk {index + 1} of {len(chunks)}"
            raise TextDoesNotFit(f"{where} {problem}: use chunk_method auto (the default) to split it at "
                                 "sentences")
        raise TextDoesNotFit(f"the prompt without any text {fit.problem('')}: use a shorter voice clip or "
                             "scene description")
    return chunks
