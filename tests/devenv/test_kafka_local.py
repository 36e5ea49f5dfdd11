"""End-to-end check of devenv.kafka: a real broker must take admin, produce and consume calls."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

# The repo is not installed into the venv and pytest's rootdir import mode only puts this test's
# folder on sys.path, so make the repo root importable (no-op if pyproject sets pythonpath).
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from devenv import kafka as devkafka  # noqa: E402

pytestmark = pytest.mark.kafka


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


async def test_local_kafka_roundtrip(tmp_path: Path) -> None:
    broker = await asyncio.to_thread(devkafka.start, work_dir=tmp_path)
    try:
        bootstrap = broker.bootstrap_servers
        assert bootstrap.startswith("127.0.0.1:")
        topic = "devenv-roundtrip"

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            described = await admin.describe_topics([topic])
            assert len(described[0]["partitions"]) == 3
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(10)}
            for key, value in sent.items():
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id="devenv-roundtrip",
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        received: dict[bytes, bytes] = {}
        partitions: set[int] = set()
        try:
            async with asyncio.timeout(60):
                while len(received) < len(sent):
                    batch = await consumer.getmany(timeout_ms=1000)
                    for tp, records in batch.items():
                        for rec in records:
                            assert rec.key is not None and rec.value is not None
                            received[rec.key] = rec.value
                            partitions.add(tp.partition)
        finally:
            await consumer.stop()
        assert received == sent
        assert partitions <= {0, 1, 2}
    finally:
        await asyncio.to_thread(broker.stop)

    assert _pid_gone(broker.pid)
    assert _port_closed(broker.port)
    assert not broker.data_dir.exists()
    assert broker.log_path.exists()
