"""The use case is a blocking generator consumed on one thread from start to end; asyncio
adapters (HTTP, the RunPod worker) run it on a worker thread and read it on the event loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from typing import AsyncIterator, Callable, Iterator, TypeVar, cast

T = TypeVar("T")


async def iterate_in_thread(items: Callable[[], Iterator[T]], executor: Executor,
                            cancel: threading.Event) -> AsyncIterator[T]:
    """The items of `items()`, produced on a thread of `executor`, delivered on the running
    loop as they come; what it raises is raised here. Leaving early sets `cancel` (the
    generator stops at its next check) and waits for the thread to finish."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    end = object()

    def produce() -> None:
        try:
            for item in items():
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # handed to the loop, raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, end)

    worker = loop.run_in_executor(executor, produce)
    try:
        while (item := await queue.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)  # anything but the end marker and errors came from items()
    finally:
        cancel.set()  # no-op once the generator has finished
        await asyncio.shield(worker)
