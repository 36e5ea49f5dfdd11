"""The run ledger at scale: how big it gets and how long a restore takes.

Writes ``total`` settled entries of a typical size (a run that succeeded, with a few
parameters) to a fresh ledger topic of 6 partitions, then restores every partition into a
fresh ``KafkaLedger`` as a new owner would, and measures: bytes on the broker's disk,
restore time, and the memory the restored entries take. A million requests is these
figures scaled (each is linear in the number of entries).
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.ledger import KafkaLedger, LedgerEntry
from bridge.metrics import Metrics
from bridge.publisher import Publisher
from bridge.sink import EventSink
from contracts import RunState, System

PARTITIONS = 6


def typical_entry() -> LedgerEntry:
    now = datetime.now(UTC)
    request_id = uuid.uuid4()
    return LedgerEntry(
        request_id=request_id,
        target="sales-adf",
        system=System.ADF,
        key=LedgerEntry.encode_key(str(request_id).encode()),
        correlation_id="nightly-2026-11-25",
        run={
            "system": "adf",
            "pipelineName": "copy-sales",
            "parameters": {"day": "2026-11-25", "regions": ["emea", "apac"]},
        },
        intent_at=now,
        run_id=str(uuid.uuid4()),
        created_at=now,
        state=RunState.SUCCEEDED,
        state_at=now,
        previous_state=RunState.RUNNING,
        backend_status="Succeeded",
        started_at=now,
        ended_at=now,
        duration_ms=61_234,
        updated_at=now,
    )


def disk_bytes(data_dir: Path, topic: str) -> int:
    return sum(
        f.stat().st_size
        for d in data_dir.glob(f"{topic}-*")
        for f in d.iterdir()
        if f.suffix == ".log"
    )


async def bench_ledger(bootstrap: str, data_dir: Path, total: int = 100_000) -> dict[str, Any]:
    topic = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    json_bytes = 0
    try:
        pending = []
        for n in range(total):
            entry = typical_entry()
            value = entry.model_dump_json().encode()
            json_bytes += len(value)
            pending.append(
                await producer.send(
                    topic, key=str(entry.request_id).encode(), value=value, partition=n % PARTITIONS
                )
            )
        for future in pending:
            await future
    finally:
        await producer.stop()
    on_disk = disk_bytes(data_dir, topic)

    ledger = KafkaLedger(Publisher(EventSink(AIOKafkaProducer), Metrics()), bootstrap, topic)
    started = time.perf_counter()
    await ledger.restore(range(PARTITIONS))
    seconds = time.perf_counter() - started
    assert len(ledger) == total, f"restored {len(ledger)} of {total}"

    tracemalloc.start()
    again = KafkaLedger(Publisher(EventSink(AIOKafkaProducer), Metrics()), bootstrap, topic)
    await again.restore(range(PARTITIONS))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scale = 1_000_000 / total
    return {
        "workload": f"{total} settled entries (a run that succeeded), {PARTITIONS} partitions",
        "entry_json_bytes": round(json_bytes / total),
        "disk_bytes_per_entry": round(on_disk / total),
        "restore_seconds": round(seconds, 2),
        "restore_entries_per_second": round(total / seconds),
        "memory_bytes_per_entry": round(held / total),
        "at_a_million": {
            "disk_gb": round(on_disk * scale / 1e9, 2),
            "restore_seconds_one_instance": round(seconds * scale, 1),
            "memory_gb_one_instance": round(held * scale / 1e9, 2),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    million = results["at_a_million"]
    return "\n".join(
        [
            "## ledger",
            "",
            results["workload"],
            "",
            "| figure | value |",
            "|---|---|",
            f"| JSON per entry | {results['entry_json_bytes']} B |",
            f"| on the broker's disk per entry | {results['disk_bytes_per_entry']} B |",
            f"| restore | {results['restore_seconds']} s "
            f"({results['restore_entries_per_second']} entries/s) |",
            f"| memory per restored entry | {results['memory_bytes_per_entry']} B |",
            "",
            f"At a million requests: **{million['disk_gb']} GB** on disk (compacted, one "
            f"copy), restore of every partition by one instance **"
            f"{million['restore_seconds_one_instance']} s**, memory **"
            f"{million['memory_gb_one_instance']} GB** (shared out between instances by "
            "partition).",
            "",
        ]
    )
