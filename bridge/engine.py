"""At-least-once processing of a Kafka topic with per-key ordering.

The consumer loop hands records to a KeyedDispatcher (different keys in parallel, one key
in order), shares ``max_in_flight`` between the assigned partitions (a partition whose
share is in flight is not read from), and commits per partition only offsets below which
every record is finished. A record is finished when the handler returns, and the handler
returns only once its outputs are acknowledged by Kafka, so a commit never covers a record
whose outputs could be lost.
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
        commit_timeout: float = 10.0,
        drain_timeout: float = 30.0,
        retry_backoff: float = 1.0,
        keepalive_interval: float = 60.0,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._commit_interval = commit_interval
        self._commit_timeout = commit_timeout
        self._drain_timeout = drain_timeout
        self._retry_backoff = retry_backoff
        self._keepalive_interval = keepalive_interval
        self._on_poll = on_poll
        self._dispatcher = KeyedDispatcher()
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._in_flight = 0
        self._progress = asyncio.Condition()
        self._last_read = time.monotonic()

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
                try:
                    await self._poll_once()
                except Exception as exc:  # e.g. a record aiokafka cannot decode
                    await self._recover(exc)
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
        partition is not paused (aiokafka would drop and refetch its buffer): its records
        wait in the fetcher, which buffers at most one fetch per partition. One read returns
        at most one share, which bounds the records in flight by twice ``max_in_flight``.
        While a partition is full, reads are short, so it is served soon after it has room.
        """
        assignment = self._consumer.assignment()
        share = max(1, self._max_in_flight // max(1, len(assignment)))

        def has_room(tp: TopicPartition) -> bool:
            tracked = self._partitions.get(tp)
            return tracked is None or tracked.in_flight < share

        readable = [tp for tp in assignment if has_room(tp)]
        if assignment and not readable:
            has_room_again = await self._wait_until(lambda: any(map(has_room, assignment)), 1.0)
            if not has_room_again and time.monotonic() - self._last_read > self._keepalive_interval:
                await self._poll_without_reading()
            return
        timeout_ms = 50 if len(readable) < len(assignment) else 200
        batch = await self._consumer.getmany(*readable, timeout_ms=timeout_ms, max_records=share)
        self._last_read = time.monotonic()
        self._dispatch(batch)

    async def _poll_without_reading(self) -> None:
        """While every partition stays full, poll now and then without taking records, or
        the group would take this member for dead after max.poll.interval.ms. (Pausing
        drops aiokafka's buffered records; they are fetched again.)"""
        self._consumer.pause(*self._consumer.assignment())
        try:
            batch = await self._consumer.getmany(timeout_ms=0)
        finally:
            paused = self._consumer.paused()  # only partitions still assigned
            if paused:
                self._consumer.resume(*paused)
        self._last_read = time.monotonic()
        self._dispatch(batch)

    def _dispatch(self, batch: dict[TopicPartition, list[Record]]) -> None:
        for tp, records in batch.items():
            offsets = self._partitions.get(tp)
            if offsets is None or (records and not offsets.accepts(records[0].offset)):
                if offsets is not None:
                    log.warning("%s went back to offset %d (reset?)", tp, records[0].offset)
                offsets = self._partitions[tp] = PartitionOffsets()
            for record in records:
                offsets.started(record.offset)
                self._in_flight += 1
                self._dispatcher.submit(ordering_key(record), self._job(record, tp, offsets))

    async def _recover(self, error: Exception) -> None:
        """A failed read may have moved positions past records it then dropped: go back to
        the next record each partition expects, then try again after a pause."""
        log.error("reading records failed: %r; retrying in %.1fs", error, self._retry_backoff)
        await asyncio.sleep(self._retry_backoff)
        with contextlib.suppress(KafkaError):
            for tp in self._consumer.assignment():
                tracked = self._partitions.get(tp)
                if tracked is not None and tracked.next_offset is not None:
                    self._consumer.seek(tp, tracked.next_offset)
                else:
                    await self._consumer.seek_to_committed(tp)

    async def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds after some record finished, at most ``timeout``."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(condition), timeout)
            return condition()

    def _job(
        self, record: Record, tp: TopicPartition, offsets: PartitionOffsets
    ) -> Callable[[], Awaitable[None]]:
        def still_ours() -> bool:
            """False once the partition was handed over (or reset) while the record waited:
            its new owner processes it, so starting it here would only repeat it."""
            return self._partitions.get(tp) is offsets

        async def job() -> None:
            while still_ours():
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
            # Shielded: a slow coordinator must not hold the loop (or a stop) for ever, but a
            # commit already sent is left to finish.
            await asyncio.wait_for(
                asyncio.shield(self._consumer.commit(offsets)), self._commit_timeout
            )
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            log.warning("commit of %d partitions failed (%r); will retry", len(offsets), exc)
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
