"""At-least-once processing of a Kafka topic with per-key ordering.

The consumer loop hands records to a KeyedDispatcher (different keys in parallel, one key
in order), shares ``max_in_flight`` between the assigned partitions (a partition whose
share is in flight is not read from), and commits per partition only offsets below which
every record is finished. A record is finished when the handler returns, and the handler
returns only once its outputs are acknowledged by Kafka, so a commit never covers a record
whose outputs could be lost.

No record can stop a partition for good:
- a record that aiokafka cannot read (a header name that is not UTF-8, a batch it cannot
  decompress) is read at a lower level (``raw_records``), handed on as it is stored, and
  reading goes on after it;
- a partition with work that makes no progress for ``stall_timeout`` is reported by
  ``stalled()``, which the health check reads, and logged with the record holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from .dispatch import KeyedDispatcher
from .metrics import Metrics
from .offsets import PartitionOffsets
from .raw_records import RawRecord, UnreadableBatch, fetch_raw

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Handler = Callable[[Record], Awaitable[None]]
UnreadableHandler = Callable[[TopicPartition, UnreadableBatch], Awaitable[None]]
PartitionsHook = Callable[[set[TopicPartition]], Awaitable[None]]
GiveUpHandler = Callable[[Record, Exception], Awaitable[None]]
"""Called for a record whose handler failed ``handler_attempts`` times (a bug): it must
report the record (e.g. dead-letter it) so that the partition moves on."""


def ordering_key(record: Record) -> Hashable:
    """Records with the same key stay in order; a record without a key orders with nothing."""
    if record.key is None:
        return (record.topic, record.partition, record.offset)
    return (record.topic, record.key)


@dataclass(frozen=True)
class Stall:
    """A partition with work that has made no progress for a while."""

    partition: TopicPartition
    seconds: float
    offset: int | None
    """The record in flight that holds the commits back; None if nothing could be read."""

    def describe(self) -> str:
        where = f"{self.partition.topic}[{self.partition.partition}]"
        what = (
            f"the record at offset {self.offset} is still in flight"
            if self.offset is not None
            else "reading or preparing it keeps failing"
        )
        return f"{where} has made no progress for {self.seconds:.0f}s: {what}"


class Engine:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        *,
        on_unreadable: UnreadableHandler | None = None,
        prepare: PartitionsHook | None = None,
        release: PartitionsHook | None = None,
        max_in_flight: int = 256,
        commit_interval: float = 1.0,
        commit_timeout: float = 10.0,
        drain_timeout: float = 30.0,
        retry_backoff: float = 1.0,
        keepalive_interval: float = 60.0,
        stall_timeout: float = 300.0,
        handler_attempts: int = 5,
        on_give_up: GiveUpHandler | None = None,
        metrics: Metrics | None = None,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._on_unreadable = on_unreadable
        self._prepare = prepare
        self._release = release
        self._max_in_flight = max_in_flight
        self._commit_interval = commit_interval
        self._commit_timeout = commit_timeout
        self._drain_timeout = drain_timeout
        self._retry_backoff = retry_backoff
        self._keepalive_interval = keepalive_interval
        self._stall_timeout = stall_timeout
        self._handler_attempts = handler_attempts
        self._on_give_up = on_give_up
        self.metrics = metrics or Metrics()
        self._on_poll = on_poll
        self._dispatcher = KeyedDispatcher()
        self._partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._in_flight = 0
        self._progress = asyncio.Condition()
        self._last_read = time.monotonic()
        self._reads_failing_since: float | None = None
        self._stalled: dict[TopicPartition, Stall] = {}
        self._ready: set[TopicPartition] = set()
        self._assigned_at: dict[TopicPartition, float] = {}
        self._next_prepare = 0.0

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
                except Exception as exc:
                    await self._read_failed(exc)
                self._check_progress()
                if self._on_poll is not None:
                    self._on_poll()
                if time.monotonic() - last_commit >= self._commit_interval:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._drain(set(self._partitions), self._drain_timeout)
            await self.commit()
            await self._dispatcher.aclose()

    def _share(self) -> int:
        return max(1, self._max_in_flight // max(1, len(self._consumer.assignment())))

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
        await self._prepare_new(assignment)
        share = self._share()

        def has_room(tp: TopicPartition) -> bool:
            tracked = self._partitions.get(tp)
            return tp in self._ready and (tracked is None or tracked.in_flight < share)

        readable = [tp for tp in assignment if has_room(tp)]
        if not readable:  # getmany() without partitions would read every partition
            has_room_again = await self._wait_until(
                lambda: any(map(has_room, assignment)), 1.0 if assignment else 0.2
            )
            if not has_room_again and time.monotonic() - self._last_read > self._keepalive_interval:
                await self._poll_without_reading()
            return
        timeout_ms = 50 if len(readable) < len(assignment) else 200
        batch = await self._consumer.getmany(*readable, timeout_ms=timeout_ms, max_records=share)
        self._last_read = time.monotonic()
        self._reads_failing_since = None
        self._dispatch(batch)

    async def _prepare_new(self, assignment: set[TopicPartition]) -> None:
        """Partitions are read only once ``prepare`` has run for them (the bridge restores
        their ledger then). It runs here, in the loop, not in the rebalance callback, so a
        slow or failing restore holds back only those partitions; it is tried again after
        a pause, and a partition never made ready shows as stalled."""
        new = assignment - self._ready
        for tp in new:
            self._assigned_at.setdefault(tp, time.monotonic())
        if not new:
            return
        if self._prepare is None:
            self._ready |= new
            return
        if time.monotonic() < self._next_prepare:
            return
        try:
            await self._prepare(set(new))
        except Exception:
            log.exception("preparing %s failed; trying again", sorted(new))
            self._next_prepare = time.monotonic() + self._retry_backoff
            return
        self._ready |= new

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

    def _tracker(self, tp: TopicPartition, first_offset: int) -> PartitionOffsets:
        offsets = self._partitions.get(tp)
        if offsets is None or not offsets.accepts(first_offset):
            if offsets is not None:
                log.warning("%s went back to offset %d (reset?)", tp, first_offset)
            offsets = self._partitions[tp] = PartitionOffsets()
        return offsets

    def _dispatch(self, batch: dict[TopicPartition, list[Record]]) -> None:
        for tp, records in batch.items():
            if not records:
                continue
            offsets = self._tracker(tp, records[0].offset)
            for record in records:
                self._submit(tp, offsets, record.offset, ordering_key(record), record)

    def _submit(
        self,
        tp: TopicPartition,
        offsets: PartitionOffsets,
        offset: int,
        key: Hashable,
        work: Record | UnreadableBatch,
    ) -> None:
        through = work.last_offset if isinstance(work, UnreadableBatch) else None
        offsets.started(offset, through=through)
        self._in_flight += 1
        self._dispatcher.submit(key, self._job(work, tp, offset, offsets))

    # -- records aiokafka cannot read ----------------------------------------------------

    async def _read_failed(self, error: Exception) -> None:
        """A read failed. If a partition holds a record aiokafka cannot read, read it at a
        lower level and go on after it; otherwise (an outage) wait and try again. Either
        way every partition goes back to the next record it expects, because a failed read
        may have moved positions past records it then dropped."""
        self.metrics.read_failures += 1
        if self._reads_failing_since is None:
            self._reads_failing_since = time.monotonic()
        expected: dict[TopicPartition, int] = {}

        async def expected_offset(tp: TopicPartition) -> int:  # asked for once per failure
            if tp not in expected:
                expected[tp] = await self._expected_offset(tp)
            return expected[tp]

        moved_on: set[TopicPartition] = set()
        try:
            moved_on = await self._read_past_unreadable(expected_offset)
        except Exception as raw_error:
            log.warning("reading records as stored failed too: %r", raw_error)
        if not moved_on:
            log.error("reading records failed: %r; retrying in %.1fs", error, self._retry_backoff)
            await asyncio.sleep(self._retry_backoff)
        with contextlib.suppress(KafkaError):
            for tp in self._consumer.assignment() - moved_on:
                self._consumer.seek(tp, await expected_offset(tp))

    async def _expected_offset(self, tp: TopicPartition) -> int:
        tracked = self._partitions.get(tp)
        if tracked is not None and tracked.next_offset is not None:
            return tracked.next_offset
        committed = await self._consumer.committed(tp)
        if committed is not None:
            return int(committed)
        return int((await self._consumer.beginning_offsets([tp]))[tp])

    async def _read_past_unreadable(
        self, expected_offset: Callable[[TopicPartition], Awaitable[int]]
    ) -> set[TopicPartition]:
        """Partitions where a record no client can read was found: what precedes it and its
        whole batch are handed on as stored (aiokafka decodes a batch as a whole, so it can
        only resume after one), and reading goes on after the batch. At most one fetch's
        worth of records is handed on beyond the partition's share. Only partitions already
        prepared are looked at: the others are not read yet (their ledger is not restored)."""
        moved_on: set[TopicPartition] = set()
        for tp in sorted(self._consumer.assignment() & self._ready):
            items = await fetch_raw(self._consumer, tp, await expected_offset(tp))
            poison = next((item for item in items if _unreadable(item)), None)
            if poison is None:
                continue
            resume_at = _batch_end(poison)
            self._dispatch_raw(tp, [item for item in items if _first_offset(item) < resume_at])
            self._consumer.seek(tp, resume_at)
            moved_on.add(tp)
            self.metrics.unreadable_records += 1
            log.warning(
                "%s[%d]@%d cannot be read by the Kafka client (%s); read as stored instead",
                tp.topic,
                tp.partition,
                _first_offset(poison),
                _why_unreadable(poison),
            )
        return moved_on

    def _dispatch_raw(
        self, tp: TopicPartition, items: Sequence[RawRecord | UnreadableBatch]
    ) -> None:
        offsets = self._tracker(tp, _first_offset(items[0]))
        for item in items:
            if isinstance(item, UnreadableBatch):
                key: Hashable = (tp.topic, tp.partition, item.first_offset)
                self._submit(tp, offsets, item.first_offset, key, item)
            else:
                record = _consumer_record(tp, item)
                self._submit(tp, offsets, item.offset, ordering_key(record), record)

    # -- progress ------------------------------------------------------------------------

    def stalled(self) -> list[Stall]:
        """Partitions with work that made no progress for ``stall_timeout``."""
        return list(self._stalled.values())

    def _check_progress(self) -> None:
        now = time.monotonic()
        stalls: dict[TopicPartition, Stall] = {}
        reads_failing = (
            self._reads_failing_since is not None
            and now - self._reads_failing_since > self._stall_timeout
        )
        for tp in self._consumer.assignment():
            tracked = self._partitions.get(tp)
            if tp not in self._ready:
                waiting = now - self._assigned_at.get(tp, now)
                if waiting > self._stall_timeout:
                    stalls[tp] = Stall(tp, waiting, None)
            elif tracked is not None and tracked.in_flight:
                idle = now - tracked.last_progress
                if idle > self._stall_timeout:
                    stalls[tp] = Stall(tp, idle, tracked.oldest_in_flight)
            elif reads_failing and self._reads_failing_since is not None:
                stalls[tp] = Stall(tp, now - self._reads_failing_since, None)
        for tp, stall in stalls.items():
            if tp not in self._stalled:
                self.metrics.stalls += 1
                log.error("stalled: %s", stall.describe())
        for tp in self._stalled.keys() - stalls.keys():
            log.info("%s[%d] makes progress again", tp.topic, tp.partition)
        self._stalled = stalls

    async def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition`` holds after some record finished, at most ``timeout``."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(condition), timeout)
            return condition()

    def _job(
        self,
        work: Record | UnreadableBatch,
        tp: TopicPartition,
        offset: int,
        offsets: PartitionOffsets,
    ) -> Callable[[], Awaitable[None]]:
        def still_ours() -> bool:
            """False once the partition was handed over (or reset) while the record waited:
            its new owner processes it, so starting it here would only repeat it."""
            return self._partitions.get(tp) is offsets

        async def handle() -> None:
            if isinstance(work, UnreadableBatch):
                if self._on_unreadable is None:
                    raise RuntimeError("an unreadable batch and no handler for it")
                await self._on_unreadable(tp, work)
            else:
                await self._handler(work)

        async def job() -> None:
            failures = 0
            last_error: Exception = RuntimeError("no failure yet")
            while still_ours():
                try:
                    if (
                        failures < self._handler_attempts
                        or self._on_give_up is None
                        or isinstance(work, UnreadableBatch)  # its bare dead letter is the last
                    ):  # resort: tried again in place, and the stall check names it
                        await handle()
                    else:  # the handler keeps failing: report the record, and go on
                        await self._on_give_up(work, last_error)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    failures += 1
                    last_error = error
                    self.metrics.handler_failures += 1
                    log.exception(
                        "handler failed on %s[%d]@%d (%d times); retrying in %.1fs",
                        tp.topic,
                        tp.partition,
                        offset,
                        failures,
                        self._retry_backoff,
                    )
                    await asyncio.sleep(self._retry_backoff)
            offsets.finished(offset)
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
            self._stalled.pop(tp, None)
            self._assigned_at.pop(tp, None)
        released = partitions & self._ready
        self._ready -= partitions
        if released and self._release is not None:
            try:
                await self._release(released)
            except Exception:
                log.exception("releasing %s failed", sorted(released))


def _unreadable(item: RawRecord | UnreadableBatch) -> bool:
    """What aiokafka cannot hand over: an unreadable batch, or a header name not UTF-8."""
    if isinstance(item, UnreadableBatch):
        return True
    try:
        for name, _ in item.headers:
            name.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _why_unreadable(item: RawRecord | UnreadableBatch) -> str:
    return item.reason if isinstance(item, UnreadableBatch) else "a header name is not UTF-8"


def _first_offset(item: RawRecord | UnreadableBatch) -> int:
    return item.first_offset if isinstance(item, UnreadableBatch) else item.offset


def _batch_end(item: RawRecord | UnreadableBatch) -> int:
    if isinstance(item, UnreadableBatch):
        return item.last_offset + 1
    return item.batch_end if item.batch_end >= 0 else item.offset + 1


def _consumer_record(tp: TopicPartition, raw: RawRecord) -> Record:
    """The record as aiokafka would have given it; a header name that is not UTF-8 keeps
    its bytes as surrogates (``surrogateescape``), which the decoder reports."""
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=raw.offset,
        timestamp=raw.timestamp,
        timestamp_type=raw.timestamp_type,
        key=raw.key,
        value=raw.value,
        checksum=None,
        serialized_key_size=len(raw.key) if raw.key is not None else -1,
        serialized_value_size=len(raw.value) if raw.value is not None else -1,
        headers=tuple(
            (name.decode("utf-8", "surrogateescape"), value) for name, value in raw.headers
        ),
    )


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
