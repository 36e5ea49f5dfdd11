"""Small clients for local runs: create topics, send run requests, read events back.

Used by the demo, the tests and the benchmarks; the bridge itself does not need them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.cloudevents import EnvelopeMode, decode
from bridge.config import Settings
from bridge.convert import request_record
from contracts import RunRequestedV1


async def create_topics(
    settings: Settings, partitions: int = 6, *, output_config: dict[str, str] | None = None
) -> None:
    """The bridge's four topics; ``output_config`` applies to the three it writes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        outputs = [settings.created_topic, settings.state_topic, settings.dead_letter_topic]
        topics = [NewTopic(settings.requests_topic, partitions, 1)]
        topics += [
            NewTopic(name, partitions, 1, topic_configs=output_config or {}) for name in outputs
        ]
        await admin.create_topics(topics)
    finally:
        await admin.close()


def run_request(
    pipeline: str = "copy-sales",
    *,
    target: str = "adf-local",
    parameters: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "target": target,
        "run": {"system": "adf", "pipelineName": pipeline, "parameters": parameters or {}},
        **extra,
    }


def as_record(
    data: Any, mode: EnvelopeMode = EnvelopeMode.BINARY, **attrs: Any
) -> tuple[bytes, list[tuple[str, bytes]]]:
    return request_record(
        data, mode=mode, source="/tests", event_type=attrs.pop("type", RunRequestedV1.event_type)
    )


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]],
    **producer_options: Any,
) -> None:
    """Send (key, value, headers) records in order and wait for every ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **producer_options
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, headers=list(headers))
            for key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


Records = list[ConsumerRecord[bytes, bytes]]


async def consume(
    bootstrap: str,
    topic: str,
    *,
    at_least: int = 0,
    until: Callable[[Records], bool] | None = None,
    timeout: float = 60.0,
    settle: float = 0.0,
) -> Records:
    """Every record of ``topic`` from the start, read until there are ``at_least`` of them
    and ``until`` (if given) holds, or the timeout passes; then ``settle`` seconds more."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )

    def satisfied() -> bool:
        return len(records) >= at_least and (until is None or until(records))

    await consumer.start()
    records: Records = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not satisfied():
            await _read(consumer, records)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            await _read(consumer, records)
    finally:
        await consumer.stop()
    return records


async def _read(consumer: AIOKafkaConsumer, into: Records) -> None:
    batch = await consumer.getmany(timeout_ms=200)
    for partition_records in batch.values():
        into.extend(partition_records)


def distinct(field: str, count: int) -> Callable[[Records], bool]:
    """An ``until`` for consume: ``count`` different values of a field of the event data."""
    return lambda records: len({event_data(record)[field] for record in records}) >= count


def event_data(record: ConsumerRecord[bytes, bytes]) -> Any:
    return decode(record.value, list(record.headers)).data
