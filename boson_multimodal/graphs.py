"""The decode step as CUDA graphs: one per (batch, KV length) bucket, all in one memory pool,
captured once and replayed with no launch overhead and no host work.

On the CPU an eager stand-in has the same life cycle (two warm-up runs, then replays), so the
capture bookkeeping is tested without a GPU.

A bucket whose capture (or first replay) fails is decoded eagerly instead (`mode` "auto", one
warning for all of them); with "on" the failure is fatal; "off" never captures."""

from __future__ import annotations

import logging
from typing import Callable

import torch

log = logging.getLogger(__name__)
GRAPH_MODES = ("auto", "on", "off")


class GraphCaptureError(RuntimeError):
    """A bucket's CUDA graph could not be captured or replayed, with HIGGS_CUDA_GRAPHS=on."""


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
            self.output = step()  # the graph's own tensor: each replay rewrites it

    def replay(self) -> None:
        self.graph.replay()


class EagerStep:
    """The CPU stand-in with the same life cycle (two warm-up runs, then replays)."""

    def __init__(self, step: Callable[[], object], device=None, pool=None) -> None:
        for _ in range(2):
            self.output = step()
        self.step = step

    def replay(self) -> None:
        self.output = self.step()


class Eager:
    """A bucket decoded without a graph (its capture failed): each replay runs the step."""

    def __init__(self, step: Callable[[], object]) -> None:
        self.step = step
        self.output: object = None

    def replay(self) -> None:
        self.output = self.step()


class StepGraphs(dict[tuple[int, int], CudaGraphStep | EagerStep | Eager]):
    """(batch, KV length) -> the step `step(batch, length)` captured for it.

    A capture's warm-up runs write state and KV positions that the next real step writes again
    (a busy row's next position; past it, positions no row reads before writing them); the
    tensors `state()` returns are saved first and restored after, so a capture between two
    steps of running requests leaves their output unchanged."""

    def __init__(self, step: Callable[[int, int], object], state: Callable[[], list[torch.Tensor]], device,
                 mode: str = "auto", graph_type: Callable[..., CudaGraphStep | EagerStep] | None = None) -> None:
        super().__init__()
        if mode not in GRAPH_MODES:
            raise ValueError(f"CUDA graph mode {mode!r}: one of {', '.join(GRAPH_MODES)}")
        self.step, self.state, self.device, self.mode = step, state, device, mode
        self.graph_type = graph_type or (CudaGraphStep if device.type == "cuda" else EagerStep)
        self.fallbacks: list[tuple[int, int]] = []  # buckets decoded eagerly: their capture failed
        self._pool = None

    @property
    def captured(self) -> int:
        return len(self) - len(self.fallbacks)

    def get_or_capture(self, batch: int, length: int) -> CudaGraphStep | EagerStep | Eager:
        graph = self.get((batch, length))
        return graph if graph is not None else self.capture(batch, length)

    def capture(self, batch: int, length: int) -> CudaGraphStep | EagerStep | Eager:
        """The bucket's graph, replayed once here (a graph that cannot replay is found now, not in
        a request); with mode "auto" a failure leaves the bucket eager."""
        saved = [t.clone() for t in self.state()]
        if self._pool is None and self.device.type == "cuda":
            self._pool = torch.cuda.graph_pool_handle()
        graph: CudaGraphStep | EagerStep | Eager
        try:
            graph = self.graph_type(lambda: self.step(batch, length), self.device, self._pool)
            graph.replay()
            if self.device.type == "cuda":  # a replay's error shows when the device gets to it
                torch.cuda.synchronize(self.device)
        except Exception as exc:
            if self.mode == "on":
                raise GraphCaptureError(f"CUDA graph for batch {batch}, KV {length} failed: {exc} "
                                        "(HIGGS_CUDA_GRAPHS=on makes this fatal; auto decodes it eagerly)") from exc
            if not self.fallbacks:
                log.warning("CUDA graph for batch %d, KV %d failed (%s: %s): decoding such buckets eagerly "
                            "(HIGGS_CUDA_GRAPHS=auto; on makes this fatal, off skips capture)",
                            batch, length, type(exc).__name__, exc)
            self.fallbacks.append((batch, length))
            graph = Eager(lambda: self.step(batch, length))
        finally:
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
