"""Engine corner cases that a real broker cannot produce on demand, with a stand-in consumer.
(The engine's normal paths run against the real broker in tests/integration/test_engine.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from bridge.engine import Engine

TP = TopicPartition("requests", 0)


class StandInConsumer:
    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def getmany(self, *partitions: TopicPartition, **options: Any) -> dict[Any, Any]:
        await asyncio.sleep(0.01)
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        return batch

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp: meta.offset for tp, meta in offsets.items()})

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def seek_to_committed(self, *partitions: TopicPartition) -> None:
        pass


def record(offset: int, key: bytes = b"k") -> Any:
    return SimpleNamespace(
        topic=TP.topic, partition=TP.partition, offset=offset, key=key, value=b""
    )


async def test_records_left_waiting_after_a_timed_out_hand_over_are_not_started_here() -> None:
    started: list[int] = []
    release = asyncio.Event()

    async def handler(rec: Any) -> None:
        started.append(rec.offset)
        if rec.offset == 0:
            await release.wait()

    consumer = StandInConsumer([])
    engine = Engine(consumer, handler, drain_timeout=0.1)  # type: ignore[arg-type]
    engine._dispatch({TP: [record(0), record(1), record(2)]})
    await asyncio.sleep(0.02)
    assert started == [0]

    await engine._revoked({TP})  # record 0 is still running: the drain times out
    assert consumer.commits == [{TP: 0}], "nothing past the unfinished record is committed"
    release.set()
    await asyncio.sleep(0.05)
    assert started == [0], "1 and 2 belong to the partition's new owner now"
    assert engine.in_flight == 0


async def test_a_failed_read_goes_back_to_the_next_expected_offset() -> None:
    consumer = StandInConsumer([{TP: [record(0), record(1)]}, KafkaConnectionError(), {}])
    done: list[int] = []

    async def handler(rec: Any) -> None:
        done.append(rec.offset)

    engine = Engine(consumer, handler, retry_backoff=0.01)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert done == [0, 1]
    assert consumer.seeks == [(TP, 2)]
    assert consumer.commits[-1] == {TP: 2}


async def test_an_offset_that_goes_back_starts_a_new_tracker_instead_of_failing() -> None:
    consumer = StandInConsumer([{TP: [record(5), record(6)]}, {TP: [record(0)]}])
    done: list[int] = []

    async def handler(rec: Any) -> None:
        done.append(rec.offset)

    engine = Engine(consumer, handler)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert 0 in done, "the engine kept going after the offset reset"


async def test_a_record_whose_handler_keeps_failing_is_given_up_and_the_partition_moves_on() -> (
    None
):
    consumer = StandInConsumer([{TP: [record(0), record(1)]}])
    tries: list[int] = []
    given_up: list[tuple[int, str]] = []

    async def handler(rec: Any) -> None:
        tries.append(rec.offset)
        if rec.offset == 0:
            raise RuntimeError("a bug")

    async def give_up(rec: Any, error: Exception) -> None:
        given_up.append((rec.offset, str(error)))

    engine = Engine(  # type: ignore[arg-type]
        consumer, handler, retry_backoff=0.01, handler_attempts=3, on_give_up=give_up
    )
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert tries == [0, 0, 0, 1], "three tries, then the key goes on"
    assert given_up == [(0, "a bug")]
    assert consumer.commits[-1] == {TP: 2}
    assert engine.metrics.handler_failures == 3


async def test_an_unreadable_batch_whose_handler_keeps_failing_is_tried_again_in_place() -> None:
    """Its bare dead letter is the last resort, so there is nothing to give up to: the
    handler is tried again (not a give-up that cannot take it) until it gets through."""
    from bridge.raw_records import UnreadableBatch

    consumer = StandInConsumer([])
    tries: list[int] = []

    async def on_unreadable(tp: TopicPartition, batch: UnreadableBatch) -> None:
        tries.append(batch.first_offset)
        if len(tries) < 5:
            raise RuntimeError("a bug, for a while")

    async def give_up(rec: Any, error: Exception) -> None:
        raise AssertionError("an unreadable batch is not a record to give up on")

    engine = Engine(  # type: ignore[arg-type]
        consumer,
        lambda rec: asyncio.sleep(0),
        retry_backoff=0.01,
        handler_attempts=2,
        on_give_up=give_up,
        on_unreadable=on_unreadable,
    )
    engine._dispatch_raw(TP, [UnreadableBatch(0, 2, "gzip decompression failed")])
    for _ in range(100):
        if engine.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert tries == [0] * 5, "tried past handler_attempts, and it got through"
    assert engine.in_flight == 0


async def test_after_a_failed_read_only_prepared_partitions_are_read_as_stored(
    monkeypatch: Any,
) -> None:
    """A partition whose ledger is not restored yet is not read at all, not even below the
    client: its records would be started before the bridge knows what it did."""
    from bridge import engine as engine_module

    unprepared = TopicPartition("requests", 1)

    class TwoPartitions(StandInConsumer):
        def assignment(self) -> set[TopicPartition]:  # the second one comes in a rebalance
            return {TP, unprepared} if len(self.batches) < 3 else {TP}

        async def committed(self, tp: TopicPartition) -> int:
            return 0

    read_as_stored: list[TopicPartition] = []

    async def fetch_raw(consumer: Any, tp: TopicPartition, offset: int) -> list[Any]:
        read_as_stored.append(tp)
        return []

    async def prepare(partitions: set[TopicPartition]) -> None:
        if unprepared in partitions:
            raise RuntimeError("its ledger cannot be restored yet")

    monkeypatch.setattr(engine_module, "fetch_raw", fetch_raw)
    consumer = TwoPartitions([{}, KafkaConnectionError(), {}])
    engine = Engine(  # type: ignore[arg-type]
        consumer, lambda rec: asyncio.sleep(0), retry_backoff=0.01, prepare=prepare
    )
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert read_as_stored == [TP]
