"""Continuous batching: many requests decode together, one frame each per step.

One scheduler thread owns the model. A request joins between steps: its prompt is prefilled
into a free slot of the KV cache (by the transformers model, batch 1), then it takes part in
every batched step until it ends, is cancelled or fails, and its slot is free for the next one.
Callers never touch the device: `generate()` queues a job and yields the blocks of frames the
scheduler hands back, so the caller's thread turns them into audio while the next steps run.

A step runs the first B slots (B the smallest batch bucket that holds every busy slot; a free
slot in between runs too, harmlessly, on its own row) and reads the first L positions of the KV
cache (L the smallest KV bucket past the longest row). On CUDA each (B, L) step is captured
once in a CUDA graph, all in one memory pool, and replayed (`graphs.py`); the host reads the
device only when a request's next block of frames is due."""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from boson_multimodal.fused import DecodeModel, SlotKV, bucket_sizes
from boson_multimodal.generate import (
    CodeIds,
    DecodeStats,
    NumericalError,
    Prompt,
    SamplingConfig,
    SlotState,
    advance,
)
from boson_multimodal.graphs import StepGraphs, batch_buckets
from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN
from boson_multimodal.prefix_cache import MIN_PREFIX_TOKENS, PrefixCache, prefix_key

log = logging.getLogger(__name__)

_END = object()


class DecoderClosed(RuntimeError):
    """The decoder was closed while the request waited or ran."""


@dataclass(eq=False)
class _Job:
    prompt: Prompt
    sampling: SamplingConfig
    max_frames: int
    cancel: threading.Event
    sync_every: Callable[[int], int] | int
    stats: DecodeStats
    suppress_eos: bool
    submitted: float = field(default_factory=time.perf_counter)
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abandoned: bool = False  # the caller stopped reading
    slot: int = -1
    produced: int = 0  # frames sampled, the BOS frame included
    reported: int = 0  # frames handed back
    target: int = 0  # hand back a block once `produced` reaches this
    bucket: int = -1
    decode_started: float = 0.0

    def stopping(self) -> bool:
        return self.abandoned or self.cancel.is_set()

    def next_target(self) -> int:
        due = self.sync_every(self.produced) if callable(self.sync_every) else self.sync_every
        return min(self.max_frames, self.reported + max(1, due))


@dataclass
class Occupancy:
    """What the scheduler is doing, for metrics: read without locks (a snapshot may be a step old)."""

    max_batch: int
    active: int = 0
    waiting: int = 0
    steps: int = 0


class BatchDecoder:
    """Generates delayed audio frames for many prompts at once (see the module docstring)."""

    def __init__(
        self,
        model,
        max_batch: int = MAX_BATCH,
        max_cache_len: int = MAX_CACHE_LEN,
        smallest_bucket: int | None = None,
        use_cuda_graphs: bool | None = None,
        cpu_kernels: bool | None = None,
        prefix_cache_bytes: int = 0,
        cuda_graphs: str = "auto",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.ids = CodeIds(model.config)
        self.max_batch, self.max_cache_len = max_batch, max_cache_len
        self.use_cuda_graphs = (self.device.type == "cuda" and cuda_graphs != "off") if use_cuda_graphs is None \
            else use_cuda_graphs
        # KV buckets: by default, with graphs few (doubling from 1024, one graph each), without
        # fine ones (every 128 positions: attention reads less); else doubling from the one given
        if smallest_bucket is None and not self.use_cuda_graphs:
            self.sizes = bucket_sizes(max_cache_len, min(128, max_cache_len), linear=True)
        else:
            self.sizes = bucket_sizes(max_cache_len, min(smallest_bucket or 1024, max_cache_len))
        self.batch_sizes = batch_buckets(max_batch)
        self.kv = SlotKV(model.config, max_batch, max_cache_len, self.device, self.dtype)
        self.net = DecodeModel(model, max_cache_len, max_batch, cpu_kernels)
        self.state = SlotState.allocate(max_batch, max_cache_len, self.ids, self.device)
        self._views = {b: self.state.rows(b) for b in self.batch_sizes}
        self.graphs = StepGraphs(lambda batch, length: self._step_fn(batch, length), self.state.tensors, self.device,
                                 mode=cuda_graphs)
        self.logits_hook: Callable[[int, torch.Tensor], None] | None = None  # eager only: (frame, logits[K, C])
        self.prefix_cache = PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.occupancy = Occupancy(max_batch)
        self._slots: list[_Job | None] = [None] * max_batch
        self._waiting: collections.deque[_Job] = collections.deque()
        self._calls: collections.deque[tuple[Callable[[], object], Future]] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def kv_bytes(self) -> int:
        return self.kv.nbytes

    # -- the caller's side ------------------------------------------------------------------

    def generate(
        self,
        prompt: Prompt,
        sampling: SamplingConfig,
        max_frames: int,
        cancel: threading.Event | None = None,
        sync_every: Callable[[int], int] | int = 8,
        stats: DecodeStats | None = None,
        suppress_eos: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Yields delayed frames ([n, K] int64 on the CPU) as they are produced, `sync_every`
        at a time. `max_frames` counts every frame, the BOS frame included (the reference
        implementation's `max_new_tokens`). `stats.end_token` says whether the stream ended.
        Leaving the loop early frees the slot at the next step."""
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        if prompt.length + max_frames > self.max_cache_len:
            raise ValueError(f"sequence of {prompt.length + max_frames} positions exceeds the KV cache "
                             f"({self.max_cache_len})")
        job = _Job(prompt, sampling, max_frames, cancel or threading.Event(), sync_every,
                   stats if stats is not None else DecodeStats(), suppress_eos)
        self._submit(job)
        try:
            while (item := job.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.abandoned = True
            self._notify()

    def run(self, call: Callable[[], object]) -> object:
        """Runs `call` on the scheduler thread between steps and returns its result."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise DecoderClosed("the decoder is closed")
            self._ensure_thread()
            self._calls.append((call, future))
            self._wake.notify()
        return future.result()

    def warm_up(self) -> None:
        """Capture the CUDA graph of every (batch, KV length) bucket now (no-op without graphs)."""
        if self.use_cuda_graphs:
            self.run(lambda: self.graphs.capture_all(self.batch_sizes, self.sizes))

    def close(self) -> None:
        """Fails the waiting and running requests and stops the scheduler."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _submit(self, job: _Job) -> None:
        with self._wake:
            if self._closed:
                raise DecoderClosed("the decoder is closed")
            self._ensure_thread()
            self._waiting.append(job)
            self.occupancy.waiting = len(self._waiting)
            self._wake.notify()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="decoder", daemon=True)
            self._thread.start()

    # -- the scheduler thread ---------------------------------------------------------------

    def _loop(self) -> None:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
            while True:
                with self._wake:
                    while not (self._closed or self._waiting or self._calls or self._busy()):
                        self._wake.wait()
                    if self._closed:
                        break
                    calls, self._calls = list(self._calls), collections.deque()
                for call, future in calls:
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        future.set_exception(exc)
                self._hand_back()
                self._admit()
                self._hand_back()
                if self._busy():
                    self._step()
        for job in [*self._waiting, *self._busy()]:
            job.out.put(DecoderClosed("the decoder was closed"))
            job.out.put(_END)
        for call, future in self._calls:
            future.set_exception(DecoderClosed("the decoder was closed"))

    def _busy(self) -> list[_Job]:
        return [job for job in self._slots if job is not None]

    def _admit(self) -> None:
        """Prefill waiting requests into the free slots, in arrival order."""
        while True:
            with self._wake:
                if not self._waiting or None not in self._slots:
                    self.occupancy.waiting = len(self._waiting)
                    return
                job = self._waiting.popleft()
                self.occupancy.waiting = len(self._waiting)
            if job.stopping():
                job.out.put(_END)
                continue
            slot = self._slots.index(None)
            try:
                self._prefill(job, slot)
            except BaseException as exc:  # this request fails; the others go on
                self._release(job)
                job.out.put(exc)
                job.out.put(_END)

    def _prefill(self, job: _Job, slot: int) -> None:
        """The whole prompt in one forward pass into slot `slot`; frame 0 (all BOS) follows
        from its logits."""
        started = time.perf_counter()
        job.stats.queue_wait_s = started - job.submitted
        prompt, row = job.prompt, self.state.row(slot)
        self._slots[slot], job.slot = job, slot
        self.occupancy.active = sum(j is not None for j in self._slots)
        length = prompt.length
        job.bucket = self._bucket_for(length + 1)
        cache = self.kv.static_cache(slot, self.sizes[job.bucket])
        start, frames, key = self._reuse_prefix(prompt, slot, job)
        if start:
            for layer in cache.layers:  # the prefix is in place: the prefill goes on after it
                layer.cumulative_length.fill_(start)
        audio = prompt.audio_frames[frames:].to(self.device)
        job.stats.prefill_tokens = length - start
        out = self.model(
            input_ids=prompt.input_ids[:, start:].to(self.device),
            audio_input_ids=audio[None] if audio.numel() else None,
            audio_input_ids_mask=(torch.ones((1, audio.shape[0]), dtype=torch.bool, device=self.device)
                                  if audio.numel() else None),
            position_ids=torch.arange(start, length, device=self.device)[None],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if key is not None and not start:  # a miss: keep this prefix's KV for the next request
            self.prefix_cache.put(key, [both[slot, :, :, :prompt.prefix_length].clone() for both in self.kv.layers])
        logits = out.logits.view(1, self.ids.num_codebooks, self.ids.codebook_size).float()
        row.start(job.sampling, prompt.audio_frames, self.ids, job.suppress_eos)
        row.active.fill_(1)
        if self.logits_hook:
            self.logits_hook(0, logits[0])
        advance(logits, row, self.ids)
        row.position.fill_(length)
        job.produced, job.reported = 1, 0
        job.target = job.next_target()
        job.stats.prefill_s = time.perf_counter() - started
        job.decode_started = time.perf_counter()

    def _reuse_prefix(self, prompt: Prompt, slot: int, job: _Job) -> tuple[int, int, str | None]:
        """(tokens already in the slot, audio frames among them, the prefix's cache key)."""
        if self.prefix_cache is None or prompt.prefix_length < MIN_PREFIX_TOKENS:
            return 0, 0, None
        key = prefix_key(prompt.input_ids, prompt.audio_frames, prompt.prefix_length, prompt.prefix_frames)
        entry = self.prefix_cache.get(key)
        if entry is None:
            job.stats.prefix_cache = "miss"
            return 0, 0, key
        for both, kept in zip(self.kv.layers, entry):
            both[slot, :, :, :prompt.prefix_length].copy_(kept)
        job.stats.prefix_cache = "hit"
        return prompt.prefix_length, prompt.prefix_frames, key

    def _bucket_for(self, length: int) -> int:
        for i, size in enumerate(self.sizes):
            if length <= size:
                return i
        raise ValueError(f"sequence of {length} positions exceeds the KV cache ({self.sizes[-1]})")

    def _step(self) -> None:
        busy = self._busy()
        batch = next(b for b in self.batch_sizes if b > max(job.slot for job in busy))
        # each row writes its position length + produced - 1 in this step and reads up to it
        index = self._bucket_for(max(job.prompt.length + job.produced for job in busy))
        try:
            graph = self.graphs.get_or_capture(batch, self.sizes[index]) if self.use_cuda_graphs else None
            if graph is not None:
                graph.replay()
            else:
                logits = self._step_fn(batch, self.sizes[index])
                if self.logits_hook:
                    for job in busy:
                        self.logits_hook(job.produced, logits[job.slot])
        except BaseException as exc:  # a failed step fails the requests in it, not the worker
            log.exception("decode step failed (batch %d, KV %d)", batch, self.sizes[index])
            for job in busy:
                self._release(job)
                job.out.put(exc)
                job.out.put(_END)
            return
        self.occupancy.steps += 1
        for job in busy:
            job.produced += 1
            job.stats.steps += 1
            job.stats.graph_replays += graph is not None
            if job.bucket != index:
                job.stats.bucket_switches += 1
                job.bucket = index

    def _step_fn(self, batch: int, length: int) -> torch.Tensor:
        """One decode step for slots 0..batch-1 reading `length` KV positions: everything a
        CUDA graph captures (tensor ops only, no host sync, nothing that changes per step)."""
        rows = self._views[batch]
        logits = self.net.forward(self.kv, rows.codes, rows.position, length)
        advance(logits, rows, self.ids)
        rows.position.add_(rows.active)
        return logits

    def _hand_back(self) -> None:
        """Hands each due request its new frames: one device read for all of them."""
        due = [job for job in self._busy()
               if job.produced >= job.target or job.produced >= job.max_frames or job.stopping()]
        if not due:
            return
        status = torch.stack((self.state.done_at, self.state.nonfinite.long())).cpu()
        for job in due:
            if job.abandoned:
                self._release(job)
                continue
            if bool(status[1, job.slot]):
                self._release(job)
                job.out.put(NumericalError(f"non-finite logits by frame {job.produced}"))
                job.out.put(_END)
                continue
            block = self.state.frames[job.slot, job.reported:job.produced].cpu()
            last = int(status[0, job.slot])
            if last < job.produced:
                block = block[: last + 1 - job.reported]
                job.stats.end_token = True
            job.reported = job.produced
            job.stats.decode_s = time.perf_counter() - job.decode_started
            job.out.put(block)
            if job.stats.end_token or job.produced >= job.max_frames or job.stopping():
                self._release(job)
                job.out.put(_END)
            else:
                job.target = job.next_target()

    def _release(self, job: _Job) -> None:
        if 0 <= job.slot < self.max_batch and self._slots[job.slot] is job:
            self._slots[job.slot] = None
            self.state.active[job.slot] = 0
        self.occupancy.active = sum(j is not None for j in self._slots)
