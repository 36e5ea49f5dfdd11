"""Scaling out: bridges joining and leaving the consumer group hand partitions over cleanly."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict

import pytest

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
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]


async def test_a_member_joining_and_leaving_loses_nothing_and_repeats_nothing(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(latency_ms=100)  # slow enough that the stream outlasts both hand-overs
    settings = settings_for(kafka_bootstrap, adf_server.url, max_in_flight=4)
    await create_topics(settings, partitions=6)
    requests = [run_request(parameters={"key": f"k{n % 30}", "seq": n // 30}) for n in range(300)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 30}".encode(), *as_record(r)) for n, r in enumerate(requests)],
    )

    async with running_bridge(settings) as first:
        await consume(kafka_bootstrap, settings.created_topic, at_least=40)
        async with running_bridge(settings) as second:
            for _ in range(600):  # until the new member has taken over some partitions
                if second.metrics.runs_created >= 20:
                    break
                await asyncio.sleep(0.05)
            assert second.metrics.runs_created >= 20, "the second member got partitions"
        assert first.metrics.runs_created + second.metrics.runs_created < 300, "left mid-stream"
        # the second member left: the first takes its partitions back
        created = await consume(
            kafka_bootstrap,
            settings.created_topic,
            until=distinct("request_id", 300),
            timeout=90,
            settle=1.0,
        )

    per_request = Counter(event_data(record)["request_id"] for record in created)
    assert set(per_request) == {r["request_id"] for r in requests}
    assert max(per_request.values()) == 1, "a revoked partition is finished and committed first"
    assert first.metrics.runs_created > 0 and second.metrics.runs_created > 0
    assert first.metrics.runs_created + second.metrics.runs_created == 300

    seqs: dict[str, list[int]] = defaultdict(list)
    for run in adf.runs():
        seqs[run["parameters"]["key"]].append(json.loads(run["parameters"]["seq"]))
    assert all(s == sorted(s) for s in seqs.values()), "per-key order holds across hand-overs"
