"""The decode loop, gpt-fast style: prefill the prompt once, then one audio frame per step from a
static KV cache, with sampling on the device.

A frame is 8 codes, one per codebook, in the delay pattern: frame s carries codebook k's code for
time s-1-k. Frame 0 is all stream-BOS; at step s the codebooks k >= s are still forced to BOS.
The end follows the reference implementation step for step: at the first frame s in which some
codebook emits stream-EOS, let i be the lowest such codebook; codebooks below i become EOS in
that same frame, and at frame s+m codebooks below i+m are forced to EOS. The stream's last frame
is s+K-1-i (its last codebook is never forced). `eos_base` = s - i keeps that rule in one number:
at step t the codebooks k < t - eos_base are EOS, and t - eos_base = K-1 is the last frame.

The KV cache is one buffer of `max_cache_len` positions. Decode steps read it through views of
increasing length ("buckets"), so attention over a short prompt does not pay for the whole
buffer; on CUDA each bucket's step is captured once in a CUDA graph and replayed. The host reads
the device only at chunk boundaries (every `sync_every` frames)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

BIG = 1 << 30
RAS_WINDOW_MAX = 256


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.3  # 0 means greedy (argmax), for parity tests
    top_k: int = 50
    top_p: float = 0.95
    ras_win_len: int = 7  # 0 turns repetition-aware sampling off
    ras_win_max_num_repeat: int = 2
    seed: int | None = None


@dataclass
class Prompt:
    input_ids: torch.Tensor  # [1, L] text tokens with audio placeholders
    audio_frames: torch.Tensor  # [F, 8] delayed frames that fill the placeholders, in order

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class DecodeStats:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    bucket_switches: int = 0
    graph_replays: int = 0
    end_token: bool = False  # the stream ended (else a bound, a cancel or max_frames stopped it)


class NumericalError(RuntimeError):
    """The model produced NaN or infinite logits."""


class CodeIds:
    def __init__(self, config) -> None:
        self.num_codebooks = int(config.num_codebooks)
        self.codebook_size = int(config.codebook_size)  # codes + BOS + EOS
        self.bos = int(config.audio_stream_bos_id)
        self.eos = int(config.audio_stream_eos_id)


def _bucket_sizes(max_cache_len: int, smallest: int = 1024) -> list[int]:
    sizes, size = [], smallest
    while size < max_cache_len:
        sizes.append(size)
        size *= 2
    sizes.append(max_cache_len)
    return sizes


class KVBuckets:
    """One KV buffer, seen through StaticCaches of increasing length that share its storage."""

    def __init__(self, model, max_cache_len: int, device, dtype, smallest: int = 1024) -> None:
        from transformers import StaticCache

        config = model.config
        self.sizes = _bucket_sizes(max_cache_len, smallest)
        heads, head_dim = config.num_key_value_heads, config.head_dim
        shape = (1, heads, max_cache_len, head_dim)
        layers = config.num_hidden_layers
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.caches = []
        for size in self.sizes:
            cache = StaticCache(config=config, max_cache_len=size)
            for layer, k, v in zip(cache.layers, self.keys, self.values):
                layer.device = torch.device(device)
                layer.batch_size, layer.num_heads = 1, heads
                layer.k_head_dim = layer.v_head_dim = head_dim
                layer.keys, layer.values = k[:, :, :size], v[:, :, :size]
                layer.cumulative_length = torch.zeros((), dtype=torch.long, device=device)
                layer.is_initialized = True
            self.caches.append(cache)

    def index_for(self, length: int) -> int:
        for i, size in enumerate(self.sizes):
            if length <= size:
                return i
        raise ValueError(f"sequence of {length} positions exceeds the KV cache ({self.sizes[-1]})")

    def set_length(self, index: int, length: int) -> None:
        for layer in self.caches[index].layers:
            layer.cumulative_length.fill_(length)


class FrameDecoder:
    """Generates delayed audio frames for a prompt. One request at a time."""

    def __init__(
        self,
        model,
        max_cache_len: int = 8192,
        smallest_bucket: int = 1024,
        use_cuda_graphs: bool | None = None,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.ids = CodeIds(model.config)
        self.kv = KVBuckets(model, max_cache_len, self.device, self.dtype, smallest_bucket)
        self.use_cuda_graphs = (self.device.type == "cuda") if use_cuda_graphs is None else use_cuda_graphs
        # on the CPU, "graph mode" replays the same step eagerly: tests check its bookkeeping
        self.graph_type = CudaGraphStep if self.device.type == "cuda" else EagerStep
        self.graphs: dict[tuple[int, bool, bool], CudaGraphStep | EagerStep] = {}
        self._lock = threading.Lock()
        n = self.ids.num_codebooks
        d = self.device
        # the step's inputs and state live in fixed tensors, so a captured graph can replay it
        self.codes = torch.full((n,), self.ids.bos, dtype=torch.long, device=d)
        self.position = torch.zeros((1, 1), dtype=torch.long, device=d)
        self.step = torch.zeros((), dtype=torch.long, device=d)
        self.eos_base = torch.full((), BIG, dtype=torch.long, device=d)
        self.done_at = torch.full((), BIG, dtype=torch.long, device=d)  # the step of the last frame
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=d)
        self.window = torch.full((RAS_WINDOW_MAX, n), self.ids.bos, dtype=torch.long, device=d)
        self.temperature = torch.ones((), device=d)
        self.top_k = torch.zeros((), dtype=torch.long, device=d)
        self.top_p_floor = torch.zeros((), device=d)  # 1 - top_p, computed in double as transformers does
        self.ras_len = torch.zeros((), dtype=torch.long, device=d)
        self.ras_max = torch.ones((), dtype=torch.long, device=d)
        self.greedy = False
        self.suppress_eos = False  # benchmarks: run a fixed number of steps
        self.generator: torch.Generator | None = None
        self.logits_hook: Callable[[int, torch.Tensor], None] | None = None

    # -- one step -------------------------------------------------------------------------

    def _forward(self, cache) -> torch.Tensor:
        out = self.model(
            audio_input_ids=self.codes.view(1, 1, -1),
            position_ids=self.position,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits.view(self.ids.num_codebooks, self.ids.codebook_size).float()

    def _advance(self, logits: torch.Tensor) -> None:
        """Sample the next frame from `logits` and update the state, all on the device."""
        self.nonfinite.copy_(self.nonfinite | ~torch.isfinite(logits).all())
        frame = sample_frame(
            logits, self.step, self.eos_base, self.window, self.ids, self.temperature, self.top_k,
            self.top_p_floor, self.ras_len, self.ras_max, self.greedy, self.generator, self.suppress_eos,
        )
        frame = end_of_stream(frame, self.step, self.eos_base, self.done_at, self.ids)
        self.window.copy_(torch.roll(self.window, 1, 0))
        self.window[0].copy_(frame)
        self.codes.copy_(frame)
        self.step.add_(1)

    def _decode_step(self, cache) -> None:
        self._advance(self._forward(cache))
        self.position.add_(1)

    def _graph_for(self, index: int):
        # the sampling mode is baked into a captured step, so it is part of the key
        key = (index, self.greedy, self.suppress_eos)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self._capture(index)
            self.graphs[key] = graph
        return graph

    def _capture(self, index: int):
        """Record one decode step for bucket `index`. The warm-up runs mutate the state, the
        KV length and the random generator, so all are saved first and restored after: a
        capture in the middle of a request leaves its output unchanged."""
        cache = self.kv.caches[index]
        saved = [t.clone() for t in self._state_tensors()]
        lengths = [layer.cumulative_length.clone() for layer in cache.layers]
        if self.generator is not None:
            rng = self.generator.get_state()
        elif self.device.type == "cuda":
            rng = torch.cuda.get_rng_state(self.device)
        graph = self.graph_type(lambda: self._decode_step(cache))
        if self.generator is not None:
            self.generator.set_state(rng)
        elif self.device.type == "cuda":
            torch.cuda.set_rng_state(rng, self.device)
        for t, s in zip(self._state_tensors(), saved):
            t.copy_(s)
        for layer, length in zip(cache.layers, lengths):
            layer.cumulative_length.copy_(length)
        return graph

    def _state_tensors(self):
        return [self.codes, self.position, self.step, self.eos_base, self.done_at, self.nonfinite, self.window]

    def warm_up(self, buckets: int | None = None) -> None:
        """Capture the CUDA graphs now (no-op on CPU)."""
        if not self.use_cuda_graphs:
            return
        with torch.inference_mode():
            for index in range(len(self.kv.sizes) if buckets is None else buckets):
                self._graph_for(index)
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    # -- a whole request ------------------------------------------------------------------

    def _configure(self, sampling: SamplingConfig, prompt_frames: torch.Tensor) -> None:
        self.greedy = sampling.temperature <= 0
        self.temperature.fill_(max(sampling.temperature, 1e-5))
        self.top_k.fill_(sampling.top_k if sampling.top_k else 0)
        self.top_p_floor.fill_(1 - (sampling.top_p if sampling.top_p else 1.0))
        self.ras_len.fill_(min(sampling.ras_win_len, RAS_WINDOW_MAX))
        self.ras_max.fill_(max(1, sampling.ras_win_max_num_repeat))
        seed = sampling.seed if sampling.seed is not None else int(torch.randint(0, 2**62, ()).item())
        if self.use_cuda_graphs and self.device.type == "cuda":
            # graphs replay with the device's default generator (graph-safe philox offsets)
            torch.cuda.manual_seed(seed)
            self.generator = None
        else:
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.step.zero_()
        self.eos_base.fill_(BIG)
        self.done_at.fill_(BIG)
        self.nonfinite.zero_()
        self.window.fill_(self.ids.bos)
        tail = prompt_frames[-RAS_WINDOW_MAX:].flip(0)  # newest first, as the window keeps them
        if tail.numel():
            self.window[: tail.shape[0]].copy_(tail.to(self.device))

    @torch.inference_mode()
    def generate(
        self,
        prompt: Prompt,
        sampling: SamplingConfig,
        max_frames: int,
        cancel: threading.Event | None = None,
        sync_every: Callable[[int], int] | int = 8,
        stats: DecodeStats | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yields delayed frames ([n, 8] int64 on the CPU) as they are produced, `sync_every`
        at a time. `max_frames` counts every frame, the BOS frame included (the reference
        implementation's `max_new_tokens`). `stats.end_token` says whether the stream ended."""
        import time

        with self._lock:
            stats = stats if stats is not None else DecodeStats()
            length = prompt.length
            index = self.kv.index_for(length + 1)
            self.kv.index_for(length + max_frames)  # fails early when it can never fit
            self._configure(sampling, prompt.audio_frames)
            for i in range(len(self.kv.caches)):
                self.kv.set_length(i, 0)

            started = time.perf_counter()
            self._prefill(prompt, self.kv.caches[index])
            stats.prefill_s = time.perf_counter() - started

            frames = torch.empty((max_frames, self.ids.num_codebooks), dtype=torch.long, device=self.device)
            frames[0].copy_(self.codes)
            produced, reported = 1, 0
            decode_started = time.perf_counter()
            while True:
                due = sync_every(produced) if callable(sync_every) else sync_every
                target = min(max_frames, reported + max(1, due))
                while produced < target:
                    if cancel is not None and cancel.is_set():
                        break
                    written = length + produced - 1  # KV positions filled so far; this step fills one more
                    if written >= self.kv.sizes[index]:
                        index = self.kv.index_for(written + 1)
                        self.kv.set_length(index, written)
                        stats.bucket_switches += 1
                    if self.use_cuda_graphs:
                        self._graph_for(index).replay()
                        stats.graph_replays += 1
                    else:
                        logits = self._forward(self.kv.caches[index])
                        if self.logits_hook:
                            self.logits_hook(produced, logits)
                        self._advance(logits)
                        self.position.add_(1)
                    frames[produced].copy_(self.codes)
                    produced += 1
                    stats.steps += 1
                block = frames[reported:produced].cpu()  # the one host sync per block
                if bool(self.nonfinite):
                    raise NumericalError(f"non-finite logits by frame {produced}")
                last = int(self.done_at)
                if last < produced:
                    block = block[: last + 1 - reported]
                    stats.end_token = True
                reported = produced
                stats.decode_s = time.perf_counter() - decode_started
                yield block
                if stats.end_token or produced >= max_frames or (cancel is not None and cancel.is_set()):
                    return

    def _prefill(self, prompt: Prompt, cache) -> None:
        """The whole prompt in one forward pass; frame 0 (all BOS) follows from its logits."""
        length = prompt.length
        audio = prompt.audio_frames.to(self.device)
        out = self.model(
            input_ids=prompt.input_ids.to(self.device),
            audio_input_ids=audio[None] if audio.numel() else None,
            audio_input_ids_mask=(torch.ones((1, audio.shape[0]), dtype=torch.bool, device=self.device)
                                  if audio.numel() else None),
            position_ids=torch.arange(length, device=self.device)[None],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits.view(self.ids.num_codebooks, self.ids.codebook_size).float()
        if self.logits_hook:
            self.logits_hook(0, logits)
        self._advance(logits)
        self.position.fill_(length)


class CudaGraphStep:
    """A decode step captured once in a CUDA graph; `replay()` runs it with no launch overhead
    and no host work."""

    def __init__(self, step: Callable[[], None]) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the graph: lazy inits, allocator, autotuning
                step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()

    def replay(self) -> None:
        self.graph.replay()


class EagerStep:
    """The CPU stand-in with the same life cycle (two warm-up runs, then replays)."""

    def __init__(self, step: Callable[[], None]) -> None:
        for _ in range(2):
            step()
        self.step = step

    def replay(self) -> None:
        self.step()


def sample_frame(
    logits: torch.Tensor,  # [8, C] float32
    step: torch.Tensor,
    eos_base: torch.Tensor,
    window: torch.Tensor,  # [W, 8] recent frames, newest first
    ids: CodeIds,
    temperature: torch.Tensor,
    top_k: torch.Tensor,  # 0 = off
    top_p_floor: torch.Tensor,  # 1 - top_p; 0 = off
    ras_len: torch.Tensor,  # 0 = off
    ras_max: torch.Tensor,
    greedy: bool,
    generator: torch.Generator | None,
    suppress_eos: bool = False,
) -> torch.Tensor:
    n, size = logits.shape
    codebook = torch.arange(n, device=logits.device)
    vocab = torch.arange(size, device=logits.device)
    bos_forced = codebook >= step
    eos_forced = codebook < (step - eos_base)
    forced = bos_forced | eos_forced
    forced_token = torch.where(bos_forced, ids.bos, ids.eos)
    only_forced = torch.where(vocab[None] == forced_token[:, None], 0.0, -math.inf)
    if suppress_eos:
        logits = logits.masked_fill(vocab[None] == ids.eos, -math.inf)
    logits = torch.where(forced[:, None], only_forced, logits)

    if greedy:
        choice = logits.argmax(dim=-1)
    else:
        choice = _draw(warp(logits, temperature, top_k, top_p_floor).softmax(dim=-1), generator)

    # repetition-aware sampling: a code repeated too often in the recent window is redrawn
    # from the unwarped distribution
    recent = torch.arange(window.shape[0], device=logits.device)[:, None] < ras_len
    counted = recent & (window < ids.bos)
    repeats = ((window == choice[None]) & counted).sum(dim=0)
    redraw = (repeats >= ras_max) & (ras_len > 0) & ~forced
    alternative = _draw(logits.softmax(dim=-1), generator)
    return torch.where(redraw, alternative, choice)


def warp(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p_floor: torch.Tensor) -> torch.Tensor:
    """Scores to sample from, in the reference implementation's order (transformers' warpers):
    temperature; top-k (every score below the k-th largest is dropped, ties kept); top-p on the
    renormalised result (in ascending order, the scores whose cumulative probability is at most
    1 - top_p are dropped, the largest always kept). Settings are tensors so that one captured
    step serves every request."""
    scores = logits / temperature
    size = scores.shape[-1]
    descending = scores.sort(dim=-1, descending=True).values
    kth = descending.gather(-1, (top_k.clamp(1, size) - 1).expand(scores.shape[0], 1))
    scores = scores.masked_fill((top_k > 0) & (scores < kth), -math.inf)
    ascending, order = scores.sort(dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= top_p_floor
    drop[:, -1] = False
    drop &= top_p_floor > 0
    return scores.masked_fill(torch.zeros_like(drop).scatter_(-1, order, drop), -math.inf)


def end_of_stream(frame: torch.Tensor, step: torch.Tensor, eos_base: torch.Tensor, done_at: torch.Tensor,
                  ids: CodeIds) -> torch.Tensor:
    """Applies the end-of-stream rule (module docstring) to a sampled frame and updates
    `eos_base` and `done_at` in place, on the device."""
    codebook = torch.arange(frame.shape[0], device=frame.device)
    is_eos = frame == ids.eos
    first = (eos_base == BIG) & is_eos.any()
    lowest = is_eos.int().argmax()  # the first EOS codebook (argmax returns the first maximum)
    frame = torch.where(first & (codebook < lowest), ids.eos, frame)
    eos_base.copy_(torch.where(first, step - lowest, eos_base))
    last = (step - eos_base) >= ids.num_codebooks - 1
    done_at.copy_(torch.where((done_at == BIG) & last, step, done_at))
    return frame


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One sample per row without a host sync: argmax of p / E with E ~ Exp(1) = -log U
    (uniform draws are several times cheaper than exponential ones on the CPU)."""
    uniform = torch.empty_like(probs).uniform_(generator=generator)
    return (probs / -torch.log(uniform)).argmax(dim=-1)
