from __future__ import annotations

import math
import random
import threading
import time
import zlib
from array import array
from dataclasses import replace
from typing import Iterator, Sequence

from boson_multimodal.joins import Either  # the same "cancelled or interrupted" as the real engine
from core.domain.audio import FRAME_RATE, SAMPLE_RATE
from core.domain.errors import DomainError, ErrorCode, ErrorType
from core.domain.request import ChunkMethod, Synthesis
from core.domain.voice import VoicePrompt
from core.ports.speech_engine import (
    ChunkCheck,
    EngineAudio,
    EngineDone,
    EngineEvent,
    EngineLoad,
    EngineProgress,
    EngineTimings,
    EngineWork,
    ModelInfo,
)

SAMPLES_PER_FRAME = SAMPLE_RATE // FRAME_RATE
MIN_SPLIT_FRAMES = 5 * FRAME_RATE  # as the real engine: a smaller budget asks for a short clip
CHARS_PER_SECOND = 14.0


class FakeSpeechEngine:
    """Speaks a tone whose length follows the text: about 14 characters per second of audio,
    cut at max_new_tokens frames. The pitch follows the voices and the seed, so the same
    seed gives the same samples and another seed different ones.

    Knobs for tests: `step_delay` slows every frame, `fail` raises mid-stream,
    `warm_up_delay` makes warm-up slow; `steps` counts frames generated so far; `capacity`
    is the number of streams it says may run at once, `peak_active` the most that did."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        step_delay: float = 0.0,
        warm_up_delay: float = 0.0,
        fail: BaseException | None = None,
        first_chunk_frames: int = 10,
        chunk_frames: int = 25,
        capacity: int = 1,
    ) -> None:
        self.capacity = capacity
        self.active = 0
        self.peak_active = 0  # the most streams that ran at once
        self.step_delay = step_delay
        self.warm_up_delay = warm_up_delay
        self.fail = fail
        self.first_chunk_frames = first_chunk_frames
        self.chunk_frames = chunk_frames
        self.steps = 0
        self.requests = 0
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._counting = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if not self._ready.is_set():
                time.sleep(self.warm_up_delay)
                self._ready.set()

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def load(self) -> EngineLoad:
        return EngineLoad(self.capacity, self.active)

    def describe(self) -> ModelInfo:
        return ModelInfo("fake", device="cpu", details={"model": "tone"})  # nothing to load

    def close(self) -> None:
        self._ready.clear()

    def max_frames(self, synthesis: Synthesis) -> int:
        return _frames(synthesis)

    def prepare(self, synthesis: Synthesis, voices: Sequence[VoicePrompt]) -> float:
        """Loads (warms up); with chunking `none`, refuses a text longer than one chunk holds
        (as the real engine does for its step budget)."""
        started = time.perf_counter()
        loading = not self.is_ready()
        self.warm_up()
        budget = synthesis.sampling.max_new_tokens
        if synthesis.chunking.method is ChunkMethod.NONE and budget >= MIN_SPLIT_FRAMES and _spoken(synthesis) > budget:
            raise DomainError(ErrorType.VALIDATION, ErrorCode.TEXT_TOO_LONG,
                              f"the text needs about {_spoken(synthesis) / FRAME_RATE:.0f} s of speech; a chunk holds "
                              f"at most {budget / FRAME_RATE:.0f} s: use chunk_method auto",
                              {"field": "transcript", "constraint": "fits_the_model"})
        return time.perf_counter() - started if loading else 0.0

    def speak(
        self, synthesis: Synthesis, voices: Sequence[VoicePrompt], cancel: threading.Event,
        check: ChunkCheck | None = None,
    ) -> Iterator[EngineEvent]:
        with self._counting:
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            if synthesis.feed is not None:
                yield from self._stream_feed(synthesis, voices, cancel)
            elif check is not None:
                yield from _checked_events(self, synthesis, voices, cancel, check)
            else:
                yield from self._stream(synthesis, voices, cancel)
        finally:
            with self._counting:
                self.active -= 1

    def _stream_feed(
        self, synthesis: Synthesis, voices: Sequence[VoicePrompt], cancel: threading.Event
    ) -> Iterator[EngineEvent]:
        return _feed_events(self, synthesis, voices, cancel)

    def _stream(
        self, synthesis: Synthesis, voices: Sequence[VoicePrompt], cancel
    ) -> Iterator[EngineEvent]:
        started = time.perf_counter()
        load = 0.0
        if not self.is_ready():
            self.warm_up()
            load = time.perf_counter() - started
        self.requests += 1
        frames_total = _frames(synthesis)
        seed = synthesis.sampling.seed
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        key = f"{seed}|{'|'.join(v.content_hash for v in voices)}".encode()
        pitch = 110.0 + zlib.crc32(key) % 220
        phase = (zlib.crc32(key[::-1]) % 628) / 100.0

        decode_started = time.perf_counter()
        frame = 0
        chunk_start = 0
        chunk = array("f")
        target = self.first_chunk_frames
        chunks = _chunks(synthesis)
        stop_reason = "end_token" if frames_total < synthesis.sampling.max_new_tokens * chunks else "max_new_tokens"
        while frame < frames_total:
            if cancel.is_set():
                stop_reason = "cancelled"
                break
            if self.step_delay:
                time.sleep(self.step_delay)
            if self.fail is not None and frame == self.first_chunk_frames:
                raise self.fail
            chunk.extend(_tone(frame, pitch, phase))
            frame += 1
            self.steps += 1
            if frame - chunk_start == target or frame == frames_total:
                yield EngineAudio(chunk, chunk_start)
                yield EngineProgress(frame, frame * chunks // max(1, frames_total), chunks)
                chunk, chunk_start, target = array("f"), frame, self.chunk_frames
        decode = time.perf_counter() - decode_started
        yield EngineProgress(frame, chunks, chunks)
        yield EngineDone(
            frames=frame,
            stop_reason=stop_reason,
            timings=EngineTimings(load=load, decode=decode),
            text_output=synthesis.text,
            work=EngineWork(decode_steps=frame, chunk_stop_reasons=(stop_reason,) * chunks,
                            chunk_frames=tuple(_share(frame, chunks))),
        )


def _spoken(synthesis: Synthesis) -> int:
    return max(1, math.ceil(len(synthesis.text) / CHARS_PER_SECOND * FRAME_RATE))


def _feed_events(engine: "FakeSpeechEngine", synthesis: Synthesis, voices: Sequence[VoicePrompt],
                 cancel: threading.Event) -> Iterator[EngineEvent]:
    """A speaking session on the fake: each segment as a request of its own text (the same
    tone rules), cut short when the session interrupts it, ended by its segment's progress."""
    feed = synthesis.feed
    assert feed is not None
    frames = index = 0
    while (text := feed.next(cancel.is_set)) is not None:
        part = replace(synthesis, text=text, feed=None, chunking=replace(synthesis.chunking, method=ChunkMethod.NONE))
        for event in engine._stream(part, voices, Either(cancel, feed.interrupted)):
            if isinstance(event, EngineAudio):
                yield EngineAudio(event.samples, frames + event.frame_index)
            elif isinstance(event, EngineDone):
                frames += event.frames
        yield EngineProgress(frames, index + 1, index + 1, segment=index)
        index += 1
        if cancel.is_set():
            break
    yield EngineDone(frames=frames, stop_reason="cancelled" if cancel.is_set() else "end_token",
                     timings=EngineTimings(), text_output=feed.spoken(),
                     work=EngineWork(decode_steps=frames, chunk_stop_reasons=("end_token",) * index,
                                     chunk_frames=()))


ATTEMPT_STRIDE = 2**32  # as the real engine: attempt a of chunk i has seed + i + a * 2**32


def _checked_events(engine: "FakeSpeechEngine", synthesis: Synthesis, voices: Sequence[VoicePrompt],
                    cancel: threading.Event, check: ChunkCheck) -> Iterator[EngineEvent]:
    """A request with a chunk check on the fake: its text in `_chunks` word-aligned parts, each
    spoken as a request of its own (chunk i, attempt a: seed + i + a * ATTEMPT_STRIDE), judged,
    and spoken again while it fails when the check holds the audio."""
    texts = _split_words(synthesis.text, _chunks(synthesis))
    base = synthesis.sampling.seed if synthesis.sampling.seed is not None else random.SystemRandom().randrange(2**31)
    frames = samples_out = steps = 0
    reasons: list[str] = []
    for index, text in enumerate(texts):
        best: tuple[float | None, int, list[EngineAudio], int] | None = None
        for attempt in range(check.attempts if check.hold else 1):
            seed = (base + index + attempt * ATTEMPT_STRIDE) % 2**63
            part = replace(synthesis, text=text, chunking=replace(synthesis.chunking, method=ChunkMethod.NONE),
                           sampling=replace(synthesis.sampling, seed=seed))
            audio: list[EngineAudio] = []
            taken = 0
            for event in engine._stream(part, voices, cancel):
                if isinstance(event, EngineAudio):
                    audio.append(EngineAudio(event.samples, frames + event.frame_index))
                    if not check.hold:
                        yield audio[-1]
                elif isinstance(event, EngineDone):
                    taken = event.frames
            steps += taken
            if cancel.is_set():
                break
            score = check.judge(index, attempt, text, array("f", b"".join(a.samples.tobytes() for a in audio)))
            if best is None or (score is not None and (best[0] is None or score < best[0])) or score is None:
                best = (score, attempt, audio, taken)
            if score is None or score <= check.max_score:
                break
        if best is None or cancel.is_set():
            break
        check.kept(index, best[1], samples_out)
        if check.hold:
            yield from best[2]
        samples_out += sum(len(a.samples) for a in best[2])
        frames += best[3]
        reasons.append("end_token")
        yield EngineProgress(frames, index + 1, len(texts))
    yield EngineDone(frames=frames, stop_reason="cancelled" if cancel.is_set() else "end_token",
                     timings=EngineTimings(), text_output=synthesis.text,
                     work=EngineWork(decode_steps=steps, chunk_stop_reasons=tuple(reasons)))


def _split_words(text: str, parts: int) -> list[str]:
    words = text.split()
    size = max(1, math.ceil(len(words) / max(1, parts)))
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)] or [text]


def _chunks(synthesis: Synthesis) -> int:
    """Chunks the text is spoken in: with `auto`, as many as a chunk's budget needs."""
    budget = synthesis.sampling.max_new_tokens
    if synthesis.chunking.method is ChunkMethod.AUTO and budget >= MIN_SPLIT_FRAMES:
        return math.ceil(_spoken(synthesis) / budget)
    return 1


def _frames(synthesis: Synthesis) -> int:
    """All of the text when it is split to fit; else cut at max_new_tokens."""
    return min(synthesis.sampling.max_new_tokens * _chunks(synthesis), _spoken(synthesis))


def _share(frames: int, chunks: int) -> list[int]:
    """`frames` spread over `chunks` as evenly as whole frames allow."""
    return [frames // chunks + (i < frames % chunks) for i in range(chunks)]


def _tone(frame: int, pitch: float, phase: float) -> array:
    """One frame of a tone with a syllable-like envelope (4 per second)."""
    start = frame * SAMPLES_PER_FRAME
    step = 2.0 * math.pi * pitch / SAMPLE_RATE
    out = array("f", bytes(4 * SAMPLES_PER_FRAME))
    for i in range(SAMPLES_PER_FRAME):
        n = start + i
        envelope = 0.5 - 0.5 * math.cos(2.0 * math.pi * 4.0 * n / SAMPLE_RATE)
        out[i] = 0.3 * envelope * math.sin(step * n + phase)
    return out
