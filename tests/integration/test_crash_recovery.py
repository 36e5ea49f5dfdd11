"""Killing the bridge mid-stream loses no request: at-least-once across a crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter, defaultdict

import pytest

from bridge.config import Settings
from devenv.client import (
    as_record,
    consume,
    create_topics,
    distinct,
    event_data,
    produce,
    run_request,
)
from emulators.adf import AdminClient, BackgroundServer
from tests.support import adf_target, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]


def bridge_env(settings: Settings, emulator_url: str) -> dict[str, str]:
    """The environment a deployed bridge would get: settings as RUNBRIDGE_* variables."""
    target = adf_target(emulator_url)
    target["credential"] = {
        **{k: v for k, v in target["credential"].items() if k != "client_secret"},
        "client_secret_env": "TEST_ADF_SECRET",
    }
    return {
        **os.environ,
        "TEST_ADF_SECRET": "local-secret",
        "RUNBRIDGE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "RUNBRIDGE_GROUP_ID": settings.group_id,
        "RUNBRIDGE_REQUESTS_TOPIC": settings.requests_topic,
        "RUNBRIDGE_CREATED_TOPIC": settings.created_topic,
        "RUNBRIDGE_STATE_TOPIC": settings.state_topic,
        "RUNBRIDGE_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "RUNBRIDGE_LEDGER_TOPIC": settings.ledger_topic,
        "RUNBRIDGE_COMMIT_INTERVAL_SECONDS": "0.5",
        "RUNBRIDGE_SESSION_TIMEOUT_MS": "6000",
        "RUNBRIDGE_MAX_IN_FLIGHT": "4",
        "RUNBRIDGE_TARGETS": json.dumps({"adf-local": target}),
        "RUNBRIDGE_LOG_LEVEL": "WARNING",
    }


async def test_killing_the_bridge_mid_stream_loses_no_request(
    kafka_bootstrap: str,
    adf_server: BackgroundServer,
    adf: AdminClient,
    record_property: pytest.RecordProperty,
) -> None:
    adf.configure(latency_ms=100)
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=6)
    requests = [run_request(parameters={"n": n}) for n in range(200)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 20}".encode(), *as_record(r)) for n, r in enumerate(requests)],
    )
    env = bridge_env(settings, adf_server.url)
    command = [sys.executable, "-m", "bridge", "run"]

    first = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        before_kill = await consume(
            kafka_bootstrap, settings.created_topic, at_least=40, timeout=60
        )
        assert 40 <= len(before_kill) < 200, "the kill must land mid-stream"
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    runs_at_kill = len(adf.runs())
    assert runs_at_kill < 200, "the kill must land mid-stream"

    second = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        await consume(
            kafka_bootstrap,
            settings.created_topic,
            until=distinct("request_id", 200),
            timeout=120,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 60) == 0, "SIGTERM is a clean shutdown"

    created = await consume(kafka_bootstrap, settings.created_topic, at_least=200, settle=1.0)
    per_request = Counter(event_data(record)["request_id"] for record in created)
    assert set(per_request) == {r["request_id"] for r in requests}, "no request is lost"
    runs_per_request = Counter(run["clientRequestId"] for run in adf.runs())
    assert set(runs_per_request) == set(per_request)
    assert max(runs_per_request.values()) == 1, "the ledger: no request started two runs"
    ids_per_request: dict[str, set[str]] = defaultdict(set)
    for record in created:
        ids_per_request[event_data(record)["request_id"]].add(
            dict(record.headers)["ce_id"].decode()
        )
    assert all(len(ids) == 1 for ids in ids_per_request.values()), "a repeat has the same id"
    repeats = sum(per_request.values()) - len(per_request)
    record_property("repeated_run_created_events", repeats)
    print(
        f"\ncrash recovery: {runs_at_kill} of 200 runs created before SIGKILL; after restart "
        f"{repeats} run-created events repeated (same CloudEvents id), 0 duplicate ADF runs"
    )
