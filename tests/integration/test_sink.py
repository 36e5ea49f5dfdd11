"""The sink on the real broker: a refused record does not break the records after it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.errors import OutputRejected
from bridge.sink import EventSink, OutputRecord
from devenv.client import consume

pytestmark = pytest.mark.kafka


async def test_a_record_the_broker_refuses_leaves_the_partition_usable(
    kafka_bootstrap: str,
) -> None:
    """aiokafka's idempotent producer keeps the sequence number of a refused batch, so every
    later batch to the partition failed with OutOfOrderSequenceNumber; the sink replaces
    a producer in that state."""
    topic = f"sink-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"})]
        )
    finally:
        await admin.close()
    sink = EventSink(
        lambda: AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )
    )
    await sink.start()
    try:
        await sink.send(OutputRecord(topic, b"k", b"before"))
        with pytest.raises(OutputRejected, match="MessageSizeTooLarge"):
            await sink.send(OutputRecord(topic, b"k", b"x" * 50_000))
        await sink.send(OutputRecord(topic, b"k", b"after"))
    finally:
        await sink.stop()
    records = await consume(kafka_bootstrap, topic, at_least=2)
    assert [r.value for r in records] == [b"before", b"after"]
