"""The engine on its own, against the real broker: ordering, isolation, commit safety."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.engine import Engine, Handler, Record
from devenv.client import produce

pytestmark = pytest.mark.kafka


async def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"engine-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def committed(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running_engine(
    bootstrap: str, topic: str, group: str, handler: Handler, **options: Any
) -> AsyncIterator[Engine]:
    """An engine consuming ``topic`` as ``group`` until the block ends."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    engine = Engine(
        consumer, handler, commit_interval=0.1, retry_backoff=0.05, drain_timeout=2, **options
    )
    await consumer.start()
    consumer.subscribe([topic], listener=engine.rebalance_listener())
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        yield engine
    finally:
        stop.set()
        await task
        await consumer.stop()


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


async def test_a_stuck_key_holds_back_only_its_own_partition_commit(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    release = asyncio.Event()
    handled: list[bytes] = []

    async def handler(record: Record) -> None:
        if record.key == b"slow":
            await release.wait()
        handled.append(record.value)

    await produce(
        kafka_bootstrap,
        topic,
        [(b"slow", b"s0", []), *[(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(20)]],
    )
    async with running_engine(kafka_bootstrap, topic, group, handler) as engine:
        await eventually(lambda: len(handled) == 20)
        assert len(handled) == 20, "the other keys ran while 'slow' was stuck"
        await engine.commit()
        assert (await committed(kafka_bootstrap, group, topic, 1))[0] in (None, 0), (
            "offset 0 is unfinished, so nothing after it may be committed"
        )
        release.set()
        await eventually(lambda: len(handled) == 21)
    assert (await committed(kafka_bootstrap, group, topic, 1))[0] == 21


async def test_a_failing_handler_is_retried_in_place_keeping_key_order(
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    group = f"g-{uuid.uuid4().hex[:6]}"
    failures = {b"a-1": 2}
    seen: dict[bytes, list[bytes]] = {}

    async def handler(record: Record) -> None:
        if failures.get(record.value, 0) > 0:
            failures[record.value] -= 1
            raise RuntimeError("boom")
        seen.setdefault(record.key, []).append(record.value)

    await produce(
        kafka_bootstrap,
        topic,
        [(key, f"{key.decode()}-{n}".encode(), []) for n in range(5) for key in (b"a", b"b", b"c")],
    )
    async with running_engine(kafka_bootstrap, topic, group, handler, max_in_flight=4):
        await eventually(lambda: sum(map(len, seen.values())) == 15)
    assert seen == {
        key: [f"{key.decode()}-{n}".encode() for n in range(5)] for key in (b"a", b"b", b"c")
    }
    offsets = await committed(kafka_bootstrap, group, topic, 3)
    assert sum(o or 0 for o in offsets.values()) == 15, "everything handled is committed on stop"


async def test_a_key_with_a_backlog_holds_back_only_its_own_partition(kafka_bootstrap: str) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    release = asyncio.Event()
    others_done: list[bytes] = []

    async def handler(record: Record) -> None:
        if record.key == b"hot":
            await release.wait()
        else:
            others_done.append(record.value)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(50):
            await producer.send(topic, key=b"hot", value=b"h%d" % n, partition=0)
        for n in range(10):
            await producer.send(topic, key=b"k%d" % n, value=b"v%d" % n, partition=1)
        await producer.flush()
    finally:
        await producer.stop()

    async with running_engine(kafka_bootstrap, topic, group, handler, max_in_flight=8) as engine:
        await eventually(lambda: len(others_done) == 10)
        assert len(others_done) == 10, "partition 1 kept flowing while partition 0 was backed up"
        assert engine.in_flight <= 2 * 8, "memory stays bounded"
        release.set()


async def test_while_every_partition_is_full_nothing_is_skipped(kafka_bootstrap: str) -> None:
    """Polls made to stay in the group while every partition is full lose no records."""
    topic = await new_topic(kafka_bootstrap, partitions=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    gate = asyncio.Event()
    seen: list[bytes] = []

    async def handler(record: Record) -> None:
        await gate.wait()
        seen.append(record.value)

    await produce(kafka_bootstrap, topic, [(b"k%d" % (n % 7), b"%d" % n, []) for n in range(40)])
    async with running_engine(
        kafka_bootstrap, topic, group, handler, max_in_flight=2, keepalive_interval=0.2
    ):
        await asyncio.sleep(2.5)  # every partition full: only polls that take no records
        assert seen == []
        gate.set()
        await eventually(lambda: len(seen) == 40)
    assert sorted(seen, key=int) == [b"%d" % n for n in range(40)]
    offsets = await committed(kafka_bootstrap, group, topic, 2)
    assert sum(o or 0 for o in offsets.values()) == 40
