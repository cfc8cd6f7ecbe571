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
import threading
import time
from concurrent.futures import Future
from typing import Callable, Iterator

import torch

from boson_multimodal.executor import Executor
from boson_multimodal.limits import MAX_BATCH, MAX_CACHE_LEN
from boson_multimodal.sampling import DecodeStats, NumericalError, Prompt, SamplingConfig
from boson_multimodal.scheduler import END, DecodeJob, Occupancy, Scheduler, StepPlan

log = logging.getLogger(__name__)


class DecoderClosed(RuntimeError):
    """The decoder was closed while the request waited or ran."""


class BatchDecoder:
    """Generates delayed audio frames for many prompts at once (see the module docstring): the
    scheduler decides, the executor runs, this class takes requests and hands frames back."""

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
        self.max_batch, self.max_cache_len = max_batch, max_cache_len
        self.executor = Executor(model, max_batch, max_cache_len, smallest_bucket, use_cuda_graphs, cpu_kernels,
                                 prefix_cache_bytes, cuda_graphs)
        self.scheduler = Scheduler(max_batch, self.executor.batch_sizes, self.executor.kv_sizes)
        self.device = self.executor.device
        self._calls: collections.deque[tuple[Callable[[], object], Future]] = collections.deque()
        self._wake = threading.Condition()  # guards the wait queue, the calls and `_closed`
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def occupancy(self) -> Occupancy:  # for the engine's metrics
        return self.scheduler.occupancy

    # -- the caller's side ------------------------------------------------------------------

    def decode(
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
        job = DecodeJob(prompt, sampling, max_frames, cancel or threading.Event(), sync_every,
                        stats if stats is not None else DecodeStats(), suppress_eos)
        with self._wake:
            if self._closed:
                raise DecoderClosed("the decoder is closed")
            self._ensure_thread()
            self.scheduler.enqueue(job)
            self._wake.notify()
        try:
            while (item := job.out.get()) is not END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.abandoned = True
            with self._wake:
                self._wake.notify()

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
        if self.executor.use_cuda_graphs:
            self.run(lambda: self.executor.graphs.capture_all(self.executor.batch_sizes, self.executor.kv_sizes))

    def close(self) -> None:
        """Fails the waiting and running requests and stops the scheduler."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="decoder", daemon=True)
            self._thread.start()

    # -- the decoder's thread ---------------------------------------------------------------

    def _loop(self) -> None:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
            while True:
                with self._wake:
                    while not (self._closed or self.scheduler.waiting or self._calls or self.scheduler.running()):
                        self._wake.wait()
                    if self._closed:
                        break
                    calls, self._calls = list(self._calls), collections.deque()
                for call, future in calls:
                    try:
                        future.set_result(call())
                    except BaseException as exc:
                        future.set_exception(exc)
                # Before admitting: the frames of the last step go out, and requests that ended
                # or were cancelled free their slots for the ones waiting. After: a request
                # cancelled while it waited, or whose prefill already ended it, is answered
                # before the step runs without it.
                self._hand_back()
                self._admit()
                self._hand_back()
                if (plan := self.scheduler.plan_step()) is not None:
                    self._step(plan)
        for job in [*self.scheduler.waiting, *self.scheduler.running()]:
            job.finish(DecoderClosed("the decoder was closed"))
        for call, future in self._calls:
            future.set_exception(DecoderClosed("the decoder was closed"))

    def _admit(self) -> None:
        """Prefill waiting requests into the free slots, in arrival order."""
        while True:
            with self._wake:
                job = self.scheduler.next_waiting()
            if job is None:
                return
            if job.stopping():
                job.finish()
                continue
            slot = self.scheduler.place(job)
            bucket = self.scheduler.kv_bucket(job.prompt.length + 1)
            started = time.perf_counter()
            job.stats.queue_wait_s = started - job.submitted
            try:
                self.executor.prefill(job, slot, self.scheduler.kv_sizes[bucket])
            except BaseException as exc:  # this request fails; the others go on
                self._end(job, exc)
                continue
            job.prefilled(bucket, started)

    def _step(self, plan: StepPlan) -> None:
        try:
            replayed = self.executor.step(plan.jobs, plan.batch, plan.kv_size)
        except BaseException as exc:  # a failed step fails the requests in it, not the worker
            log.exception("decode step failed (batch %d, KV %d)", plan.batch, plan.kv_size)
            for job in plan.jobs:
                self._end(job, exc)
            return
        self.scheduler.stepped(plan, replayed)

    def _hand_back(self) -> None:
        """Hands each due request its new frames: one device read for all of them."""
        due = self.scheduler.due()
        if not due:
            return
        status = self.executor.status()
        for job in due:
            if job.abandoned:
                self._end(job)
            elif bool(status[1, job.slot]):
                self._end(job, NumericalError(f"non-finite logits by frame {job.produced}"))
            else:
                block = self.executor.frames(job.slot, job.reported, job.produced)
                last = int(status[0, job.slot])  # the last frame's step, when the end token came
                ended = last < job.produced
                if job.handed_back(block[: last + 1 - job.reported] if ended else block, ended):
                    self._end(job)

    def _end(self, job: DecodeJob, error: BaseException | None = None) -> None:
        """The request leaves its slot; its caller gets `error`, if any, then the end."""
        if self.scheduler.release(job):
            self.executor.free(job.slot)
        job.finish(error)
