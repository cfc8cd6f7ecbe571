"""Text in, audio out, streaming: the Higgs Audio runtime that the service drives.

One `HiggsAudio` owns a loaded bundle, a `BatchDecoder` and a cache of reference codes. Many
threads may stream at once: their requests decode together in the decoder's batch, and each
thread turns its own frames into audio."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, Sequence

import numpy as np
import torch

from boson_multimodal.batch import BatchDecoder
from boson_multimodal.checking import ChunkCheck, Take, attempt_sampling
from boson_multimodal.chunking import duration_bound_frames, plan_chunks, speech_frames
from boson_multimodal.codec import AudioCodec, read_clip
from boson_multimodal.joins import Either, Seams, SilenceWatch
from boson_multimodal.layout import ModelPaths
from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN
from boson_multimodal.loader import LoadedBundle, load_bundle
from boson_multimodal.memory import DEFAULT_FRACTION, plan_for_device
from boson_multimodal.planning import MIN_SPLIT_FRAMES, ChunkFit, TextDoesNotFit, frames_needed, plan
from boson_multimodal.prompt import PromptBuilder, Turn, conversation
from boson_multimodal.sampling import DecodeStats, Prompt, SamplingConfig
from boson_multimodal.streaming import Segment, StreamingVocoder
from boson_multimodal.transcript import normalize_transcript

log = logging.getLogger(__name__)

FRAME_RATE = 25
CONTEXT_CHUNKS = 2  # earlier generated chunks kept in the prompt to keep the voice steady


@dataclass(frozen=True)
class VoiceClip:
    name: str
    transcript: str
    audio: bytes  # an audio file
    key: str  # identifies the clip's content (a hash), for the code cache


@dataclass(frozen=True)
class SpeechJob:
    """What the runtime is asked to speak (the engine adapter makes one from the service's
    `Synthesis`: the runtime knows nothing of the service)."""

    text: str
    voices: Sequence[VoiceClip] = ()
    scene: str | None = None
    sampling: SamplingConfig = SamplingConfig()
    max_new_tokens: int = 2048  # delayed frames per text chunk, the BOS frame included (as upstream)
    chunk_method: str = "auto"
    chunk_max_word_num: int = 100
    chunk_max_num_turns: int = 1
    stop_on_silence: bool = True
    # a speaking session (core.domain.segmenter.TextSource): segments come while it is spoken,
    # each generated as chunks of one request (the context, the seeds, the seams), `text` unused
    feed: Any = None
    check: ChunkCheck | None = None  # judges each chunk's audio (see boson_multimodal.checking)


@dataclass
class AudioOut:
    samples: np.ndarray  # float32, 24 kHz
    frame_index: int


@dataclass
class ProgressOut:
    frames_done: int
    chunks_done: int
    chunks_total: int
    segment: int | None = None  # a session's segment that has just ended


@dataclass
class Finished:
    frames: int
    stop_reason: str
    timings: dict[str, float]
    chunk_stop_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    steps: int = 0
    chunk_codes: list = field(default_factory=list)  # each chunk's audio codes [T, K]
    prefix_cache: list[str] = field(default_factory=list)  # per chunk: "hit", "miss" or "off"
    prefill_tokens: int = 0  # tokens actually prefilled (prefix-cache hits skip the shared prefix)


def text_chunks(text: str, chunk_method: str = "auto", max_words: int = 100, max_turns: int = 1,
                max_new_tokens: int = 2048, num_codebooks: int = 8) -> list[str]:
    """The normalised text, in the chunks that are generated one after another, as far as they
    can be known without the model: `auto` splits for the step budget only (the runtime's own
    plan may split further where the KV cache needs it, see `HiggsAudio.plan`)."""
    budget = max(0, max_new_tokens - num_codebooks - 1)

    def fits(chunk: str) -> bool:
        return budget < MIN_SPLIT_FRAMES or speech_frames(chunk) <= budget

    return plan_chunks(normalize_transcript(text), chunk_method, fits, max_words, max_turns)


def max_audio_frames(text: str, max_new_tokens: int, chunk_method: str = "auto", max_words: int = 100,
                     max_turns: int = 1, num_codebooks: int = 8, chunks: list[str] | None = None) -> int:
    """The most audio frames a request can produce: per text chunk, the smaller of its decode
    steps less the BOS frame, the delay and the dropped last step, and its duration bound."""
    if chunks is None:
        chunks = text_chunks(text, chunk_method, max_words, max_turns, max_new_tokens, num_codebooks)
    per_step = max(0, max_new_tokens - num_codebooks - 1)
    return sum(min(per_step, duration_bound_frames(chunk)) for chunk in chunks)


@dataclass(frozen=True)
class Plan:
    """A request made ready to generate: the turns before its text, and its text chunks."""

    base: list[Turn]
    chunks: list[str]


class ReferenceCodes:
    """Voice clips encoded into audio codes, the most recently used `limit` of them kept (a
    voice's clip is encoded once, not once per request)."""

    def __init__(self, codec: AudioCodec, limit: int, max_seconds: float = 30.0) -> None:
        self.codec, self.limit, self.max_seconds = codec, limit, max_seconds
        self._kept: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, clip: VoiceClip) -> torch.Tensor:
        with self._lock:
            codes = self._kept.get(clip.key)
            if codes is not None:
                self._kept.move_to_end(clip.key)
                return codes
        codes = self.codec.encode(read_clip(clip.audio, max_seconds=self.max_seconds))
        with self._lock:
            self._kept[clip.key] = codes
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)
        return codes


class HiggsAudio:
    def __init__(self, bundle: LoadedBundle, max_cache_len: int = MAX_CACHE_LEN, reference_cache: int = 64,
                 max_batch: int = MAX_BATCH, prefix_cache_bytes: int = 0, cuda_graphs: str = "auto",
                 gpu_memory_fraction: float = DEFAULT_FRACTION) -> None:
        self.bundle = bundle
        self.config = bundle.model.config
        self.codec = AudioCodec(bundle.audio_tokenizer, bundle.device)
        self.prompts = PromptBuilder(bundle.tokenizer, self.config)
        # on a GPU, as many slots as its memory holds after the weights (HIGGS_MAX_BATCH at most)
        self.kv_plan = plan_for_device(bundle.model, bundle.device, max_batch, max_cache_len, gpu_memory_fraction,
                                       prefix_cache_bytes)
        if self.kv_plan is not None:
            log.info("%s", self.kv_plan.describe(max_batch))
            max_batch = self.kv_plan.slots
        self.decoder = BatchDecoder(bundle.model, max_batch=max_batch, max_cache_len=max_cache_len,
                                    prefix_cache_bytes=prefix_cache_bytes, cuda_graphs=cuda_graphs)
        self.sample_rate = self.codec.sample_rate
        self.references = ReferenceCodes(self.codec, reference_cache)

    @classmethod
    def load(cls, paths: ModelPaths, device=None, dtype=None, max_cache_len: int = MAX_CACHE_LEN,
             max_batch: int = MAX_BATCH, prefix_cache_bytes: int = 0, cuda_graphs: str = "auto",
             gpu_memory_fraction: float = DEFAULT_FRACTION) -> "HiggsAudio":
        return cls(load_bundle(paths, device, dtype), max_cache_len=max_cache_len, max_batch=max_batch,
                   prefix_cache_bytes=prefix_cache_bytes, cuda_graphs=cuda_graphs,
                   gpu_memory_fraction=gpu_memory_fraction)

    def close(self) -> None:
        self.decoder.close()

    def warm_up(self, voices: Sequence[Sequence[VoiceClip]] = ()) -> None:
        """Capture the decode graphs and run one short generation, so the first request
        pays for nothing but itself; with `voices`, one per voice set, which also puts their
        prompt prefixes (no scene) in the prefix cache."""
        self.decoder.warm_up()
        for clips in [(), *voices]:
            for _ in self.speak(SpeechJob("Warm up.", voices=tuple(clips), max_new_tokens=16,
                                           stop_on_silence=False, sampling=SamplingConfig(seed=0))):
                pass

    def reference_codes(self, clip: VoiceClip) -> torch.Tensor:
        return self.references.get(clip)

    def turns(self, request: SpeechJob) -> list[Turn]:
        """The turns before the text: system, scene and voice prompts (see `conversation`)."""
        references = [(v.transcript, self.reference_codes(v)) for v in request.voices]
        return conversation(request.scene, references, request.text)

    def plan(self, request: SpeechJob) -> Plan:
        """Everything that can fail before the first frame: the voice clips read and encoded,
        the text split into chunks that fit (the KV cache, the step budget); raises
        AudioInputError or TextDoesNotFit."""
        base = self.turns(request)
        if request.feed is not None:  # the chunks come with the text
            return Plan(base, [])
        fit = ChunkFit.for_request(self.prompts, base, self.decoder.max_cache_len, request.max_new_tokens)
        chunks = plan(normalize_transcript(request.text), request.chunk_method, fit, request.chunk_max_word_num,
                      request.chunk_max_num_turns)
        return Plan(base, chunks)

    def max_frames(self, request: SpeechJob) -> int:
        """`max_audio_frames` over this runtime's own plan (the chunks it will generate)."""
        return max_audio_frames(request.text, request.max_new_tokens, num_codebooks=self.codec.num_codebooks,
                                chunks=self.plan(request).chunks)

    def _chunk_prompt(self, run: "_Run", chunk: str, max_new_tokens: int) -> Prompt:
        """The chunk's prompt: the system and voice turns (the shareable prefix, for the decoder's
        prefix cache), the last chunks as context, the chunk. Context that would crowd out the
        chunk's speech in the KV cache is dropped, oldest first."""
        k = self.codec.num_codebooks
        needed = frames_needed(chunk, max(0, max_new_tokens - k - 1), k)
        context = run.history[-2 * CONTEXT_CHUNKS:]
        while True:
            prompt = self.prompts.build(run.base + context + [Turn("user", chunk)], prefix_turns=len(run.base))
            if not context or prompt.length + needed <= self.decoder.max_cache_len:
                return prompt
            context = context[2:]

    def frame_budget(self, prompt_length: int, chunk: str, max_new_tokens: int) -> tuple[int, str]:
        """Delayed frames this chunk may take (BOS frame included), and the bound that sets it."""
        k = self.codec.num_codebooks
        room = self.decoder.max_cache_len - prompt_length
        if room < 16 + k + 2:
            raise TextDoesNotFit(
                f"the prompt ({prompt_length} tokens) leaves no room in the KV cache "
                f"({self.decoder.max_cache_len}); shorten the text, use chunking or a shorter voice clip"
            )
        bounds = {"max_new_tokens": max_new_tokens,
                  # audio time steps -> frames: the BOS frame, the delay, the dropped last step
                  "duration_bound": duration_bound_frames(chunk) + k + 1,
                  "kv_cache_full": room}
        limiting = min(bounds, key=bounds.get)
        return bounds[limiting], limiting

    def speak(self, request: SpeechJob, cancel: threading.Event | None = None) -> Iterator:
        """Yields `AudioOut` and `ProgressOut` as each text chunk decodes, then one `Finished`."""
        cancel = cancel or threading.Event()
        planned = self.plan(request)
        run = _Run(time.perf_counter(), planned.chunks, planned.base)
        if request.feed is not None:
            yield from self._stream_feed(request, run, cancel)
        for index in range(len(run.chunks) if request.feed is None else 0):
            reason = yield from self._stream_chunk(request, run, index, cancel)
            if reason == "cancelled":
                break
        yield run.finished()

    def _stream_feed(self, request: SpeechJob, run: "_Run", cancel: threading.Event) -> Generator[object, None, None]:
        """A session: each segment, as it comes, planned into chunks that fit and generated as
        the next chunks of the run. A barge-in cuts the segment being spoken; the session goes
        on with the text that comes after it."""
        feed = request.feed
        fit = ChunkFit.for_request(self.prompts, run.base, self.decoder.max_cache_len, request.max_new_tokens)
        stop = Either(cancel, feed.interrupted)
        while (segment := feed.next(cancel.is_set)) is not None:
            first = len(run.chunks)
            run.chunks += plan(normalize_transcript(segment), "auto", fit, request.chunk_max_word_num,
                               request.chunk_max_num_turns)
            run.segment_ends.append(len(run.chunks))
            for index in range(first, len(run.chunks)):
                reason = yield from self._stream_chunk(request, run, index, stop)
                if reason == "cancelled":
                    del run.chunks[index + 1:]  # the rest of an interrupted segment is not spoken
                    break
            yield ProgressOut(run.frames, len(run.chunks), len(run.chunks), segment=len(run.segment_ends) - 1)
            if cancel.is_set():
                return

    def _stream_chunk(self, request: SpeechJob, run: _Run, index: int,
                      cancel: threading.Event) -> Generator[object, None, str]:
        """One text chunk: its prompt (the voice turns and the last chunks as context), its
        decode, the vocoder's tail; with a check, judged, and (when it holds the audio) generated
        again while it fails. Returns why the kept attempt stopped."""
        chunk, check = run.chunks[index], request.check
        prompt = self._chunk_prompt(run, chunk, request.max_new_tokens)
        run.prompt_tokens += prompt.length
        max_frames, limiting = self.frame_budget(prompt.length, chunk, request.max_new_tokens)
        hold = check is not None and check.hold
        start, kept = run.samples_out, None
        for attempt in range(check.attempts if check is not None and hold else 1):
            take = Take(attempt, StreamingVocoder(self.codec), hold)
            yield from self._take(request, run, index, prompt, max_frames, limiting, take, cancel)
            if take.reason == "cancelled" or check is None:
                kept = take
                break
            take.score = check.judge(index, attempt, chunk, take.samples())
            kept = take if take.better_than(kept) else kept
            if take.passed(check):
                break
        assert kept is not None
        if check is not None:  # its verdict goes before a held chunk's audio
            check.kept(index, kept.attempt, start)
        if hold and kept.reason != "cancelled":  # a cut-short attempt is not spoken
            for segment in kept.segments:
                yield run.audio(segment)
        run.end_chunk(chunk, kept.reason, kept.vocoder, kept.stats)
        yield ProgressOut(run.frames, index + 1, len(run.chunks))
        return kept.reason

    def _take(self, request: SpeechJob, run: _Run, index: int, prompt: Prompt, max_frames: int, limiting: str,
              take: Take, cancel: threading.Event) -> Generator[object, None, None]:
        """One attempt at the chunk, to its vocoder's tail; its decode counts in the request's totals."""
        feed = request.feed
        seams = Seams(self.sample_rate, fade_in=index > 0,  # decided when the chunk ends: a session's text may come
                      fade_out=lambda: index < len(run.chunks) - 1 or (feed is not None and feed.more()))
        reason = yield from self._decode_chunk(request, run, index, prompt, max_frames, take, seams, cancel)
        take.reason = reason or ("end_token" if take.stats.end_token else limiting)
        for segment in seams(take.vocoder.finish(), final=True):
            for out in take.add(segment):
                yield run.audio(out)
        run.count(take.stats, take.vocoder)

    def _decode_chunk(self, request: SpeechJob, run: _Run, index: int, prompt: Prompt, max_frames: int,
                      take: Take, seams: Seams, cancel: threading.Event) -> Generator[object, None, str | None]:
        """Audio and progress as the chunk's frames arrive. Returns "cancelled" or "silence" when
        it stops early, None when the decoder ends it."""
        silence = SilenceWatch(self.sample_rate) if request.stop_on_silence else None
        vocoder = take.vocoder

        def sync_every(produced: int) -> int:
            # read the device once the first chunk can leave, then in larger blocks
            return vocoder.frames_for_first_audio() - produced if vocoder.emitted == 0 else 16

        sampling = attempt_sampling(request.sampling, index, take.attempt)
        for block in self.decoder.decode(prompt, sampling, max_frames, cancel, sync_every, take.stats):
            for segment in seams(vocoder.push(block), final=False):
                for out in take.add(segment):
                    yield run.audio(out)
                if silence is not None:
                    silence.feed(segment.samples)
            if take.attempt == 0:  # a retry's progress would go backwards
                yield ProgressOut(run.frames + vocoder.emitted, index, len(run.chunks))
            if cancel.is_set():
                return "cancelled"
            if silence is not None and silence.stop:
                return "silence"
        return None


@dataclass
class _Run:
    """One request's state across its text chunks, and the totals its `Finished` reports."""

    started: float
    chunks: list[str]
    base: list[Turn]  # the system, scene and voice turns
    history: list[Turn] = field(default_factory=list)  # the chunks so far, as user and assistant turns
    frames: int = 0  # audio frames of the finished chunks
    first_audio: float | None = None
    timings: dict[str, float] = field(
        default_factory=lambda: {"queue": 0.0, "prefill": 0.0, "decode": 0.0, "vocode": 0.0})
    stop_reasons: list[str] = field(default_factory=list)
    chunk_codes: list[torch.Tensor] = field(default_factory=list)
    prefix_cache: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    steps: int = 0
    prefill_tokens: int = 0
    segment_ends: list[int] = field(default_factory=list)  # a session's: chunks done at each segment's end
    samples_out: int = 0  # of audio sent so far

    def audio(self, segment: Segment) -> AudioOut:
        if self.first_audio is None:
            self.first_audio = time.perf_counter() - self.started
        self.samples_out += len(segment.samples)
        return AudioOut(segment.samples, self.frames + segment.start)

    def count(self, stats: DecodeStats, vocoder: StreamingVocoder) -> None:
        """A decode's time and steps (every attempt's, the ones not kept too)."""
        self.timings["queue"] += stats.queue_wait_s
        self.timings["prefill"] += stats.prefill_s
        self.timings["decode"] += stats.decode_s
        self.timings["vocode"] += vocoder.decode_seconds
        self.steps += stats.steps
        self.prefill_tokens += stats.prefill_tokens

    def end_chunk(self, chunk: str, reason: str, vocoder: StreamingVocoder, stats: DecodeStats) -> None:
        """The kept attempt: its codes are the chunk's, and the context of the chunks after it."""
        codes = vocoder.codes()
        self.chunk_codes.append(codes)
        self.frames += codes.shape[0]
        self.prefix_cache.append(stats.prefix_cache)
        self.stop_reasons.append(reason)
        self.history += [Turn("user", chunk), Turn("assistant", codes=codes)]

    def finished(self) -> Finished:
        self.timings["first_audio"] = self.first_audio if self.first_audio is not None else 0.0
        self.timings["total"] = time.perf_counter() - self.started
        final = self.stop_reasons[-1] if self.stop_reasons else "end_token"
        return Finished(self.frames, final, self.timings, self.stop_reasons, self.prompt_tokens, self.steps,
                        self.chunk_codes, self.prefix_cache, self.prefill_tokens)
