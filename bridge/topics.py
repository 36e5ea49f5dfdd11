"""The ledger topic: created on first use, co-partitioned with the requests topic."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .errors import ConfigurationError

log = logging.getLogger(__name__)


async def describe(admin: AIOKafkaAdminClient, topic: str) -> tuple[int, int] | None:
    """The partition count and replication factor of ``topic``, or None if it does not
    exist. Listed first: describing a missing topic would have a broker that creates topics
    on first use create it, with its default partition count."""
    if topic not in await admin.list_topics():
        return None
    [described] = await admin.describe_topics([topic])
    partitions = described.get("partitions") or []
    if described.get("error_code") or not partitions:
        return None
    return len(partitions), len(partitions[0].get("replicas") or [1])


async def ensure_ledger_topic(
    bootstrap_servers: str, requests_topic: str, ledger_topic: str, *, retention_ms: int
) -> int:
    """Create the ledger topic with the requests topic's partition count, compacted and
    deleted after ``retention_ms``; or check that the existing one matches. Returns the
    partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        requests = await describe(admin, requests_topic)
        if requests is None:
            raise ConfigurationError(f"the requests topic {requests_topic} does not exist")
        wanted, replication = requests
        ledger = await describe(admin, ledger_topic)
        if ledger is None:
            topic = NewTopic(
                ledger_topic,
                num_partitions=wanted,
                replication_factor=replication,  # as safe as the requests it records
                topic_configs={
                    "cleanup.policy": "compact,delete",
                    "retention.ms": str(retention_ms),
                },
            )
            try:
                await admin.create_topics([topic])
                log.info("created the ledger topic %s with %d partitions", ledger_topic, wanted)
            except TopicAlreadyExistsError:  # another instance was quicker
                pass
            for _ in range(50):  # metadata reaches every broker soon after creation
                ledger = await describe(admin, ledger_topic)
                if ledger is not None:
                    break
                await asyncio.sleep(0.1)
        have = ledger[0] if ledger is not None else None
        if have != wanted:
            raise ConfigurationError(
                f"the ledger topic {ledger_topic} has {have} partitions and the requests "
                f"topic {requests_topic} {wanted}: they must match (one ledger partition per "
                "requests partition); give the ledger topic as many partitions"
            )
        return wanted
    finally:
        await admin.close()
