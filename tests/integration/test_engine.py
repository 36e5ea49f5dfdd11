"""The engine on its own, against the real broker: ordering, isolation, commit safety."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.engine import Engine, Record
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


def engine_for(
    bootstrap: str, topic: str, group: str, handler, **options
) -> tuple[Engine, AIOKafkaConsumer]:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    engine = Engine(consumer, handler, commit_interval=0.1, retry_backoff=0.05, **options)
    return engine, consumer


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
    engine, consumer = engine_for(kafka_bootstrap, topic, group, handler)
    await consumer.start()
    consumer.subscribe([topic], listener=engine.rebalance_listener())
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        for _ in range(100):
            if len(handled) == 20:
                break
            await asyncio.sleep(0.05)
        assert len(handled) == 20, "the other keys ran while 'slow' was stuck"
        await engine.commit()
        assert (await committed(kafka_bootstrap, group, topic, 1))[0] in (None, 0), (
            "offset 0 is unfinished, so nothing after it may be committed"
        )
        release.set()
        for _ in range(100):
            if len(handled) == 21:
                break
            await asyncio.sleep(0.05)
    finally:
        release.set()
        stop.set()
        await task
        await consumer.stop()
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
    engine, consumer = engine_for(kafka_bootstrap, topic, group, handler, max_in_flight=4)
    await consumer.start()
    consumer.subscribe([topic], listener=engine.rebalance_listener())
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        for _ in range(200):
            if sum(map(len, seen.values())) == 15:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await consumer.stop()
    assert seen == {
        key: [f"{key.decode()}-{n}".encode() for n in range(5)] for key in (b"a", b"b", b"c")
    }
    offsets = await committed(kafka_bootstrap, group, topic, 3)
    assert sum(o or 0 for o in offsets.values()) == 15, "everything handled is committed on stop"
