"""A token bucket that paces calls: the read budget of a run API target.

Azure Resource Manager allows each principal 250 reads, refilling 25 a second, per
subscription and region; going over costs 429s for everything else that principal does.
So the bridge spends reads from a bucket of its own, a little under the API's, and waits
for a token rather than being throttled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ._settings import BudgetSpec


class ReadBudget:
    def __init__(self, spec: BudgetSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(spec.capacity)
        self._rate = spec.per_second
        self._clock = clock
        self._tokens = self._capacity
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.spent = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    async def take(self) -> None:
        """Spend one call, waiting for the bucket to refill when it is empty. Callers are
        served in turn, so a burst cannot starve anyone."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._refill()
            self._tokens -= 1
            self.spent += 1
