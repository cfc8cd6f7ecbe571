"""The decode step as CUDA graphs: one per (batch, KV length) bucket, all in one memory pool,
captured once and replayed with no launch overhead and no host work.

On the CPU an eager stand-in has the same life cycle (two warm-up runs, then replays), so the
capture bookkeeping is tested without a GPU."""

from __future__ import annotations

from typing import Callable

import torch


def batch_buckets(max_batch: int) -> list[int]:
    """Batch sizes a step runs at (each is a graph): doubling from 1, then `max_batch`."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return sizes


class CudaGraphStep:
    """A decode step captured once in a CUDA graph (in the shared memory pool); `replay()`
    runs it with no launch overhead and no host work."""

    def __init__(self, step: Callable[[], object], device, pool) -> None:
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # lazy inits, allocator, autotuning: outside the graph
                step()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            step()

    def replay(self) -> None:
        self.graph.replay()


class EagerStep:
    """The CPU stand-in with the same life cycle (two warm-up runs, then replays)."""

    def __init__(self, step: Callable[[], object], device=None, pool=None) -> None:
        for _ in range(2):
            step()
        self.step = step

    def replay(self) -> None:
        self.step()


class StepGraphs(dict[tuple[int, int], CudaGraphStep | EagerStep]):
    """(batch, KV length) -> the step `step(batch, length)` captured for it.

    A capture's warm-up runs write state and KV positions that the next real step writes again
    (a busy row's next position; past it, positions no row reads before writing them); the
    tensors `state()` returns are saved first and restored after, so a capture between two
    steps of running requests leaves their output unchanged."""

    def __init__(self, step: Callable[[int, int], object], state: Callable[[], list[torch.Tensor]], device) -> None:
        super().__init__()
        self.step, self.state, self.device = step, state, device
        self.graph_type = CudaGraphStep if device.type == "cuda" else EagerStep
        self._pool = None

    def get_or_capture(self, batch: int, length: int) -> CudaGraphStep | EagerStep:
        graph = self.get((batch, length))
        return graph if graph is not None else self.capture(batch, length)

    def capture(self, batch: int, length: int) -> CudaGraphStep | EagerStep:
        saved = [t.clone() for t in self.state()]
        if self._pool is None and self.device.type == "cuda":
            self._pool = torch.cuda.graph_pool_handle()
        graph = self.graph_type(lambda: self.step(batch, length), self.device, self._pool)
        for t, s in zip(self.state(), saved):
            t.copy_(s)
        self[(batch, length)] = graph
        return graph

    def capture_all(self, batches: list[int], lengths: list[int]) -> None:
        for batch in batches:
            for length in lengths:
                if (batch, length) not in self:
                    self.capture(batch, length)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
