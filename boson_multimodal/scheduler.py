"""The decoder's decisions (vLLM's scheduler): which waiting request takes which free slot, and
for each step which slots run (the batch bucket) and how much of the KV cache they read (the KV
bucket); which requests are due their frames. It holds the wait queue, the slots and each
request's bookkeeping; it touches no tensor (the executor runs what it decides)."""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from boson_multimodal.sampling import DecodeStats, Prompt, SamplingConfig

END = object()  # the last item of a request's output queue


@dataclass(eq=False)
class DecodeJob:
    """One request in the decoder: what it asked for and where it stands."""

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
    bucket: int = -1  # the KV bucket it last ran in
    decode_started: float = 0.0

    def stopping(self) -> bool:
        return self.abandoned or self.cancel.is_set()

    def is_due(self) -> bool:
        """Its next block is ready, it has all its frames, or it is to stop."""
        return self.produced >= self.target or self.produced >= self.max_frames or self.stopping()

    def reads_up_to(self) -> int:
        """KV positions the next step reads: it writes its newest frame at length + produced - 1."""
        return self.prompt.length + self.produced

    def prefilled(self, bucket: int, started: float) -> None:
        """The prefill sampled frame 0 (all BOS)."""
        self.produced, self.reported, self.bucket = 1, 0, bucket
        self.target = self._next_target()
        self.stats.prefill_s = time.perf_counter() - started
        self.decode_started = time.perf_counter()

    def stepped(self, bucket: int, replayed: bool) -> None:
        self.produced += 1
        self.stats.steps += 1
        self.stats.graph_replays += replayed
        if self.bucket != bucket:
            self.stats.bucket_switches += 1
            self.bucket = bucket

    def handed_back(self, block, ended: bool) -> bool:
        """Sends the frames made since the last block; True when the request is over."""
        self.stats.end_token = self.stats.end_token or ended
        self.reported = self.produced
        self.stats.decode_s = time.perf_counter() - self.decode_started
        self.out.put(block)
        if self.stats.end_token or self.produced >= self.max_frames or self.stopping():
            return True
        self.target = self._next_target()
        return False

    def finish(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.out.put(error)
        self.out.put(END)

    def _next_target(self) -> int:
        due = self.sync_every(self.produced) if callable(self.sync_every) else self.sync_every
        return min(self.max_frames, self.reported + max(1, due))


@dataclass
class Occupancy:
    """What the scheduler is doing, for metrics: read without locks (a snapshot may be a step old)."""

    max_batch: int
    active: int = 0
    waiting: int = 0
    steps: int = 0


@dataclass(frozen=True)
class StepPlan:
    """One step: the first `batch` slots run (a free slot among them runs harmlessly on its own
    row) and read the first `kv_size` positions of the KV cache (bucket `kv_bucket`)."""

    jobs: list[DecodeJob]
    batch: int
    kv_bucket: int
    kv_size: int


class Scheduler:
    """The wait queue and the slots. `enqueue` and `next_waiting` run under the decoder's lock
    (callers' threads enqueue); everything else on the decoder's thread."""

    def __init__(self, max_batch: int, batch_sizes: list[int], kv_sizes: list[int]) -> None:
        self.batch_sizes, self.kv_sizes = batch_sizes, kv_sizes
        self.slots: list[DecodeJob | None] = [None] * max_batch
        self.waiting: collections.deque[DecodeJob] = collections.deque()
        self.occupancy = Occupancy(max_batch)

    def enqueue(self, job: DecodeJob) -> None:
        self.waiting.append(job)
        self.occupancy.waiting = len(self.waiting)

    def next_waiting(self) -> DecodeJob | None:
        """The oldest waiting request when a slot is free for it, else None."""
        job = self.waiting.popleft() if self.waiting and None in self.slots else None
        self.occupancy.waiting = len(self.waiting)
        return job

    def place(self, job: DecodeJob) -> int:
        """Gives the request the first free slot (next_waiting said there is one)."""
        slot = self.slots.index(None)
        self.slots[slot], job.slot = job, slot
        self.occupancy.active = len(self.running())
        return slot

    def release(self, job: DecodeJob) -> bool:
        """Frees the request's slot; True when it held one."""
        held = 0 <= job.slot < len(self.slots) and self.slots[job.slot] is job
        if held:
            self.slots[job.slot] = None
        self.occupancy.active = len(self.running())
        return held

    def running(self) -> list[DecodeJob]:
        return [job for job in self.slots if job is not None]

    def kv_bucket(self, length: int) -> int:
        """The smallest KV bucket that holds `length` positions."""
        for i, size in enumerate(self.kv_sizes):
            if length <= size:
                return i
        raise ValueError(f"sequence of {length} positions exceeds the KV cache ({self.kv_sizes[-1]})")

    def plan_step(self) -> StepPlan | None:
        """The next step, when any request is running: the smallest batch bucket that holds every
        busy slot, the smallest KV bucket past the longest row."""
        jobs = self.running()
        if not jobs:
            return None
        batch = next(b for b in self.batch_sizes if b > max(job.slot for job in jobs))
        bucket = self.kv_bucket(max(job.reads_up_to() for job in jobs))
        return StepPlan(jobs, batch, bucket, self.kv_sizes[bucket])

    def stepped(self, plan: StepPlan, replayed: bool) -> None:
        self.occupancy.steps += 1
        for job in plan.jobs:
            job.stepped(plan.kv_bucket, replayed)

    def due(self) -> list[DecodeJob]:
        return [job for job in self.running() if job.is_due()]
