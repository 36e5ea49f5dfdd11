"""At-least-once processing of a Kafka topic with per-key ordering.

The consumer loop hands records to a KeyedDispatcher (different keys in parallel, one key
in order), shares ``max_in_flight`` between the assigned partitions (a partition whose
share is in flight is not read from), and commits per partition only offsets below which
every record is finished. A record is
finished when the handler returns, and the handler returns only once its outputs are
acknowledged by Kafka, so a commit never covers a record whose outputs could be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from .dispatch import KeyedDispatcher
from .offsets import PartitionOffsets

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Handler = Callable[[Record], Awaitable[None]]


def ordering_key(record: Record) -> Hashable:
    """Records with the same key stay in order; a record without a key orders with nothing."""
    if record.key is None:
        return (record.topic, record.partition, record.offset)
    return (record.topic, record.key)


class Engine:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        *,
        max_in_flight: int = 256,
        commit_interval: float = 1.0,
        drain_timeout: float = 30.0,
        retry_backoff: float = 1.0,
        keepalive_interval: float = 10.0,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._commit_interval = commit_interval
        self._drain_timeout = drain_timeout
        self._retry_backoff = retry_backoff
        self._keepalive_interval = keepalive_interval
        self._on_poll = on_poll
        self._dispatcher = KeyedDispatcher()
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._in_flight = 0
        self._progress = asyncio.Condition()
        self._last_poll = time.monotonic()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what is in flight and commit."""
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                await self._poll_once()
                if self._on_poll is not None:
                    self._on_poll()
                if time.monotonic() - last_commit >= self._commit_interval:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._drain(set(self._partitions), self._drain_timeout)
            await self.commit()
            await self._dispatcher.aclose()

    async def _poll_once(self) -> None:
        """Take records only from partitions under their share of the in-flight limit.

        Each assigned partition may have ``max_in_flight / partitions`` records in flight (at
        least one), so a key with a backlog holds back its own partition only. A full
        partition is not paused (that would make aiokafka drop and refetch its buffer): its
        records wait in the fetcher, which buffers at most one fetch per partition. One
        fetch returns at most one share, which bounds the records in flight by twice
        ``max_in_flight``.
        """
        assignment = self._consumer.assignment()
        share = max(1, self._max_in_flight // max(1, len(assignment)))

        def has_room(tp: TopicPartition) -> bool:
            tracked = self._partitions.get(tp)
            return tracked is None or tracked.in_flight < share

        open_ = [tp for tp in assignment if has_room(tp)]
        if assignment and not open_:
            if not await self._wait_until(lambda: any(map(has_room, assignment)), 1.0):
                await self._keep_membership(assignment)
            return
        full = assignment - set(open_)
        fetch = asyncio.ensure_future(
            self._consumer.getmany(*open_, timeout_ms=200, max_records=share)
        )
        self._last_poll = time.monotonic()
        if not full:
            self._dispatch(await fetch)
            return
        # Stop waiting for new records as soon as a full partition has room again.
        room = asyncio.ensure_future(self._wait_until(lambda: any(map(has_room, full)), 0.2))
        await asyncio.wait({fetch, room}, return_when=asyncio.FIRST_COMPLETED)
        room.cancel()
        if not fetch.done():
            fetch.cancel()  # safe: aiokafka hands out records only after its last await
        await asyncio.wait({fetch})
        if not fetch.cancelled():
            self._dispatch(fetch.result())

    async def _keep_membership(self, assignment: set[TopicPartition]) -> None:
        """While every partition is full, poll now and then without taking records, or
        the group would take this member for dead after max.poll.interval.ms."""
        if time.monotonic() - self._last_poll < self._keepalive_interval:
            return
        self._consumer.pause(*assignment)
        try:
            self._dispatch(await self._consumer.getmany(timeout_ms=0))
        finally:
            self._consumer.resume(*assignment)
        self._last_poll = time.monotonic()

    def _dispatch(self, batch: dict[TopicPartition, list[Record]]) -> None:
        for tp, records in batch.items():
            offsets = self._partitions.get(tp)
            if offsets is None:
                offsets = self._partitions[tp] = PartitionOffsets()
            for record in records:
                offsets.started(record.offset)
                self._in_flight += 1
                self._dispatcher.submit(ordering_key(record), self._job(record, offsets))

    async def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds after some record finished, at most ``timeout``."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(condition), timeout)
            return condition()

    def _job(self, record: Record, offsets: PartitionOffsets) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            while True:
                try:
                    await self._handler(record)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "handler failed on %s[%d]@%d; retrying in %.1fs",
                        record.topic,
                        record.partition,
                        record.offset,
                        self._retry_backoff,
                    )
                    await asyncio.sleep(self._retry_backoff)
            offsets.finished(record.offset)
            self._in_flight -= 1
            async with self._progress:
                self._progress.notify_all()

        return job

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit every partition (or those given) whose committable position moved."""
        positions: dict[TopicPartition, tuple[PartitionOffsets, int]] = {}
        for tp, tracked in self._partitions.items():
            if partitions is not None and tp not in partitions:
                continue
            position = tracked.committable()
            if position is not None:
                positions[tp] = (tracked, position)
        if not positions:
            return
        offsets = {tp: OffsetAndMetadata(position, "") for tp, (_, position) in positions.items()}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %d partitions failed (%s); will retry", len(offsets), exc)
            return
        for tracked, position in positions.values():
            tracked.committed = position

    async def _drain(self, partitions: set[TopicPartition], timeout: float) -> None:
        """Wait until nothing of ``partitions`` is in flight, or ``timeout`` passes."""

        def drained() -> bool:
            return not any(
                self._partitions[tp].in_flight for tp in partitions if tp in self._partitions
            )

        if not await self._wait_until(drained, timeout):
            log.warning("gave up waiting for in-flight records of %s", sorted(partitions))

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        await self._drain(partitions, self._drain_timeout)
        await self.commit(partitions)
        for tp in partitions:
            self._partitions.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions go to another member: finish their records and commit them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            log.info("partitions revoked: %s", sorted(revoked))
            await self._engine._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(assigned))
