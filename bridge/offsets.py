"""Which offset of a partition is safe to commit when records finish out of order."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class PartitionOffsets:
    """Offsets handed out for one partition, in order, and which of them are done.

    Kafka keeps one committed offset per partition, so a finished record can only be
    committed once every record before it has finished too: the committable position is
    the lowest offset still in flight, or one past the last offset when none is.

    ``last_progress`` is when that position last moved (or work began after a pause): a
    partition whose lowest record stays in flight makes no progress however many records
    behind it finish, because its commits cannot move.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._next: int | None = None
        self._clock = clock
        self.committed: int | None = None
        self.last_progress = clock()

    def started(self, offset: int, *, through: int | None = None) -> None:
        """``offset`` is handed out; ``through`` marks a span of offsets handled as one
        (records that can only be reported together, e.g. an unreadable batch)."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} handed out after {self._next - 1}")
        if not self._pending:
            self.last_progress = self._clock()
        self._pending.append(offset)
        self._next = (offset if through is None else max(offset, through)) + 1

    def finished(self, offset: int) -> None:
        self._done.add(offset)
        moved = False
        while self._pending and self._pending[0] in self._done:
            self._done.discard(self._pending.popleft())
            moved = True
        if moved:
            self.last_progress = self._clock()

    def accepts(self, offset: int) -> bool:
        """Whether ``offset`` can come next (offsets only move forward within a tracker)."""
        return self._next is None or offset >= self._next

    @property
    def next_offset(self) -> int | None:
        """The offset after the last one handed out: where reading would go on."""
        return self._next

    @property
    def oldest_in_flight(self) -> int | None:
        """The record that holds the commits back, if any."""
        return self._pending[0] if self._pending else None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The position to commit (the next offset to read), or None if nothing new."""
        if self._next is None:
            return None
        position = self._pending[0] if self._pending else self._next
        return None if position == self.committed else position
