"""A record whose header name is not UTF-8, on a real broker: aiokafka's consumer cannot get
past it, fetch_raw reads it and everything around it exactly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.raw_records import RawFetchError, RawRecord, fetch_raw
from tests.kafka_raw import Out, produce_raw

pytestmark = pytest.mark.kafka

POISON = b"\xff\xfebad"
T0 = 1_700_000_000_000


async def new_topic(bootstrap: str) -> str:
    name = f"raw-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return name


@pytest.fixture
async def poisoned(kafka_bootstrap: str) -> tuple[str, list[RawRecord]]:
    """Offsets 0-2 from aiokafka's producer, 3-5 one hand-built batch whose middle record
    (4) has the header name b"\\xff\\xfebad", 6-7 from aiokafka's producer again."""
    topic = await new_topic(kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):
            meta = await producer.send_and_wait(
                topic, b"v%d" % i, key=b"k%d" % i, partition=0, timestamp_ms=T0 + i,
                headers=[("n", b"%d" % i)],
            )  # fmt: skip
            assert meta.offset == i
        raw = [
            Out(b"k3", b"v3", [(b"n", b"3")], T0 + 3),
            Out(b"k4", b"v4", [(b"n", b"4"), (POISON, b"x"), (b"nul", None)], T0 + 4),
            Out(None, b"v5", [], T0 + 5),
        ]
        assert await produce_raw(kafka_bootstrap, topic, 0, raw) == [3, 4, 5]
        for i in range(6, 8):
            meta = await producer.send_and_wait(
                topic, b"v%d" % i, key=b"k%d" % i, partition=0, timestamp_ms=T0 + i
            )
            assert meta.offset == i
    finally:
        await producer.stop()
    want = [
        RawRecord(0, T0, 0, b"k0", b"v0", ((b"n", b"0"),)),
        RawRecord(1, T0 + 1, 0, b"k1", b"v1", ((b"n", b"1"),)),
        RawRecord(2, T0 + 2, 0, b"k2", b"v2", ((b"n", b"2"),)),
        RawRecord(3, T0 + 3, 0, b"k3", b"v3", ((b"n", b"3"),)),
        RawRecord(4, T0 + 4, 0, b"k4", b"v4", ((b"n", b"4"), (POISON, b"x"), (b"nul", None))),
        RawRecord(5, T0 + 5, 0, None, b"v5", ()),
        RawRecord(6, T0 + 6, 0, b"k6", b"v6", ()),
        RawRecord(7, T0 + 7, 0, b"k7", b"v7", ()),
    ]
    return topic, want


@pytest.fixture
async def consumer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    c = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def test_getmany_cannot_get_past_the_poison(
    poisoned: tuple[str, list[RawRecord]], consumer: AIOKafkaConsumer
) -> None:
    """Documents aiokafka 0.14: getmany() raises UnicodeDecodeError, the good records 0-3
    fetched with the poison are never returned, the position stays put, and it happens
    again on every call and after every seek."""
    topic, _ = poisoned
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    for _ in range(3):
        with pytest.raises(UnicodeDecodeError, match="can't decode byte 0xff in position 0"):
            await consumer.getmany(tp, timeout_ms=10_000)
        assert await consumer.position(tp) == 0
        consumer.seek(tp, 2)
        with pytest.raises(UnicodeDecodeError):
            await consumer.getmany(tp, timeout_ms=10_000)
        assert await consumer.position(tp) == 2
        consumer.seek(tp, 0)
    # One record a call gets up to the poison, then stops there for good.
    got = []
    for _ in range(4):
        batch = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        got += [m.offset for m in batch[tp]]
    assert got == [0, 1, 2, 3]
    for _ in range(2):
        with pytest.raises(UnicodeDecodeError):
            await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
        assert await consumer.position(tp) == 4


async def test_fetch_raw_reads_every_record_exactly(
    poisoned: tuple[str, list[RawRecord]], consumer: AIOKafkaConsumer
) -> None:
    topic, want = poisoned
    tp = TopicPartition(topic, 0)
    assert await fetch_raw(consumer, tp, 0) == want
    assert await fetch_raw(consumer, tp, 4) == want[4:]  # mid-batch: 3 is skipped
    assert await fetch_raw(consumer, tp, 5) == want[5:]
    assert await fetch_raw(consumer, tp, 6) == want[6:]
    assert await fetch_raw(consumer, tp, 8) == []  # at the end: returns at once, empty


async def test_fetch_raw_returns_whole_batches_beyond_max_bytes(
    poisoned: tuple[str, list[RawRecord]], consumer: AIOKafkaConsumer
) -> None:
    """KIP-74: at least one whole batch comes back however small max_bytes is."""
    topic, want = poisoned
    tp = TopicPartition(topic, 0)
    assert await fetch_raw(consumer, tp, 3, max_bytes=1) == want[3:6]
    assert await fetch_raw(consumer, tp, 0, max_bytes=1) == want[:1]


async def test_fetch_raw_works_alongside_the_consumers_own_fetching(
    poisoned: tuple[str, list[RawRecord]], consumer: AIOKafkaConsumer
) -> None:
    """The engine's case: the consumer is assigned and stuck; fetch_raw shares its client.

    Seeking just past the poison (5) is not enough: the broker sends the whole batch 3-5
    and aiokafka decodes record 4 before skipping it. Resuming after the last record
    fetch_raw returned (its results are whole batches) gets the consumer going again.
    """
    topic, want = poisoned
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    with pytest.raises(UnicodeDecodeError):
        await consumer.getmany(tp, timeout_ms=10_000)
    position = await consumer.position(tp)
    assert await fetch_raw(consumer, tp, position, max_bytes=1) == want[:1]
    raw = await fetch_raw(consumer, tp, 3, max_bytes=1)
    assert raw == want[3:6]
    consumer.seek(tp, 5)
    with pytest.raises(UnicodeDecodeError):
        await consumer.getmany(tp, timeout_ms=10_000)
    consumer.seek(tp, raw[-1].offset + 1)  # type: ignore[union-attr]
    batch = await consumer.getmany(tp, timeout_ms=10_000)
    assert [m.offset for m in batch[tp]] == [6, 7]


async def test_fetch_raw_raises_on_a_partition_error(
    poisoned: tuple[str, list[RawRecord]], consumer: AIOKafkaConsumer
) -> None:
    topic, _ = poisoned
    with pytest.raises(RawFetchError, match="OffsetOutOfRangeError") as info:
        await fetch_raw(consumer, TopicPartition(topic, 0), 1_000)
    assert info.value.error_code == 1
