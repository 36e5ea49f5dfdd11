"""Run jobs concurrently across keys and strictly in order within a key."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

Job = Callable[[], Awaitable[None]]


class KeyedDispatcher:
    """One worker task per key that has work; it exits when its queue is empty.

    Jobs must not raise: a job that fails is the caller's to retry or to report, because
    only the caller knows what failing means for the record.
    """

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[Job]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    def submit(self, key: Hashable, job: Job) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        worker = asyncio.create_task(self._work(key), name=f"key-{key!r}")
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    @property
    def active_keys(self) -> int:
        return len(self._queues)

    async def _work(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                await queue[0]()
                queue.popleft()
        finally:
            del self._queues[key]

    async def aclose(self) -> None:
        """Cancel every worker (on shutdown, after the caller stopped waiting for them)."""
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
