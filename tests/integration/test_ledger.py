"""The run ledger on the real broker: written per partition, restored per partition."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.errors import ConfigurationError
from bridge.ledger import KafkaLedger, LedgerEntry, NotOwned
from bridge.metrics import Metrics
from bridge.publisher import Publisher
from bridge.sink import EventSink
from bridge.topics import ensure_ledger_topic
from contracts import RunState

pytestmark = pytest.mark.kafka


def entry(state: RunState | None, run_id: str | None = None) -> LedgerEntry:
    now = datetime.now(UTC)
    return LedgerEntry(
        request_id=uuid.uuid4(),
        target="sales",
        system="adf",
        key=LedgerEntry.encode_key(b"k"),
        run={"system": "adf", "pipelineName": "copy", "parameters": {"n": 1}},
        intent_at=now,
        run_id=run_id,
        state=state,
        updated_at=now,
    )


async def new_topics(bootstrap: str, partitions: int) -> tuple[str, str]:
    prefix = f"ledger-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.requests", partitions, 1)])
    finally:
        await admin.close()
    return f"{prefix}.requests", f"{prefix}.ledger"


async def test_entries_come_back_per_partition_newest_first_and_in_play_ones_to_follow(
    kafka_bootstrap: str,
) -> None:
    requests, ledger_topic = await new_topics(kafka_bootstrap, 3)
    assert (
        await ensure_ledger_topic(kafka_bootstrap, requests, ledger_topic, retention_ms=60_000) == 3
    )
    sink = EventSink(lambda: AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all"))
    await sink.start()
    try:
        publisher = Publisher(sink, Metrics())
        writer = KafkaLedger(publisher, kafka_bootstrap, ledger_topic)
        await writer.restore([0, 1])
        intent = entry(None)
        answered = intent.with_(run_id="run-1", state=RunState.QUEUED)
        ended = entry(RunState.SUCCEEDED, "run-2")
        elsewhere = entry(RunState.RUNNING, "run-3")
        await writer.put(0, intent)
        await writer.put(0, answered)
        await writer.put(0, ended)
        await writer.put(1, elsewhere)
        with pytest.raises(NotOwned):
            await writer.put(2, entry(None))

        reader = KafkaLedger(publisher, kafka_bootstrap, ledger_topic)
        in_play = await reader.restore([0])
    finally:
        await sink.stop()
    assert in_play == [(0, answered)], "the newest entry wins; settled ones are not followed"
    assert reader.get(0, intent.request_id) == answered
    assert reader.get(0, ended.request_id) == ended, "settled entries come back whole"
    assert reader.get(1, elsewhere.request_id) is None, "only the partitions asked for"
    assert reader.claimed_run_ids() == {"run-1", "run-2"}


async def test_a_ledger_topic_with_another_partition_count_is_refused(kafka_bootstrap: str) -> None:
    requests, ledger_topic = await new_topics(kafka_bootstrap, 3)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(ledger_topic, 2, 1)])
    finally:
        await admin.close()
    with pytest.raises(ConfigurationError, match="must match"):
        await ensure_ledger_topic(kafka_bootstrap, requests, ledger_topic, retention_ms=60_000)
