"""Every run owned from request to end, on the real broker and the ADF emulator: the exact
states each kind of run publishes, one run per request id whatever is delivered twice,
and tracking that holds back no partition."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts import DeadLetterHeaders
from devenv.client import as_record, consume, create_topics, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer, Fault
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf, pytest.mark.lifecycle]

CANCEL = "org.runbridge.run.cancel-requested.v1"


def by_request(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        data = event_data(record)
        events[data["request_id"]].append(data)
    return events


def ended(*request_ids: str) -> Any:
    """A ``consume`` condition: every given request has a terminal state event."""

    def condition(records: list[Any]) -> bool:
        done = {e["request_id"] for r in records if (e := event_data(r))["terminal"]}
        return done >= set(request_ids)

    return condition


async def test_a_run_that_succeeds_one_that_fails_and_one_cancelled_publish_their_exact_states(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(queue_seconds=0.5, run_seconds=2.5, failing_pipelines=["etl-broken"])
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=3)
    succeeds, fails, cancelled = run_request("copy"), run_request("etl-broken"), run_request("long")
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(r["request_id"].encode(), *as_record(r)) for r in (succeeds, fails, cancelled)],
    )
    async with running_bridge(settings):

        def running(records: list[Any]) -> bool:
            return any(
                (e := event_data(r))["request_id"] == cancelled["request_id"]
                and e["state"] == "RUNNING"
                for r in records
            )

        await consume(kafka_bootstrap, settings.state_topic, until=running, timeout=30)
        cancel = {"request_id": cancelled["request_id"], "reason": "wrong day"}
        await produce(
            kafka_bootstrap,
            settings.requests_topic,
            [(cancelled["request_id"].encode(), *as_record(cancel, type=CANCEL))],
        )
        states = await consume(
            kafka_bootstrap,
            settings.state_topic,
            until=ended(*(r["request_id"] for r in (succeeds, fails, cancelled))),
            timeout=30,
            settle=1.0,
        )
    events = by_request(states)
    runs = {run["clientRequestId"]: run for run in adf.runs()}
    expected = {
        succeeds["request_id"]: ["QUEUED", "RUNNING", "SUCCEEDED"],
        fails["request_id"]: ["QUEUED", "RUNNING", "FAILED"],
        cancelled["request_id"]: ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"],
    }
    for request_id, sequence in expected.items():
        got = events[request_id]
        assert [e["state"] for e in got] == sequence, request_id
        assert [e.get("previous_state") for e in got] == [None, *sequence[:-1]]
        assert [e["terminal"] for e in got] == [False] * (len(sequence) - 1) + [True]
        assert {e["run_id"] for e in got} == {runs[request_id]["runId"]}
        last = got[-1]
        assert last["backend_status"] == runs[request_id]["status"], "the run API's own word"
        assert last["ended_at"] is not None and last["started_at"] is not None
        assert last["duration_ms"] == runs[request_id]["durationInMs"]
    assert "failed" in (events[fails["request_id"]][-1]["backend_message"] or "").lower()
    assert events[cancelled["request_id"]][2]["reason"]["message"] == "wrong day"
    assert runs[cancelled["request_id"]]["cancelIsRecursive"] is False


async def test_a_request_delivered_twice_and_replayed_from_the_dead_letters_starts_one_run(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    settings = settings_for(kafka_bootstrap, adf_server.url)
    # run-created events that echo a big request are refused, as a dead letter keeps it
    await create_topics(settings, partitions=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, settings.created_topic, {"max.message.bytes": "50000"}
                )
            ]
        )
        twice = run_request("copy")
        big = run_request("copy", parameters={"blob": "x" * 80_000})
        key = twice["request_id"].encode()
        await produce(
            kafka_bootstrap,
            settings.requests_topic,
            [(key, *as_record(twice)), (key, *as_record(twice)), (b"big", *as_record(big))],
        )
        async with running_bridge(settings) as bridge:
            dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
            assert DeadLetterHeaders.from_kafka(dead[0].headers).reason == "output-rejected"
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        settings.created_topic,
                        {"max.message.bytes": "1000000"},
                    )
                ]
            )
            replayed = [(dead[0].key, dead[0].value, list(dead[0].headers))]
            await produce(kafka_bootstrap, settings.requests_topic, replayed)
            created = await consume(
                kafka_bootstrap, settings.created_topic, at_least=3, timeout=30, settle=1.0
            )
    finally:
        await admin.close()
    runs = defaultdict(list)
    for run in adf.runs():
        runs[run["clientRequestId"]].append(run["runId"])
    assert {rid: len(ids) for rid, ids in runs.items()} == {
        twice["request_id"]: 1,
        big["request_id"]: 1,
    }, "one ADF run per request id"
    announced = by_request(created)
    assert [e["run_id"] for e in announced[twice["request_id"]]] == runs[twice["request_id"]] * 2
    assert [e["run_id"] for e in announced[big["request_id"]]] == runs[big["request_id"]], (
        "the replayed dead letter started nothing and named the run"
    )
    ids = [
        dict(r.headers)["ce_id"]
        for r in created
        if event_data(r)["request_id"] == twice["request_id"]
    ]
    assert len(set(ids)) == 1, "announced again with the same CloudEvents id"
    assert bridge.metrics.repeats == 2


async def test_a_six_hour_run_holds_back_no_commits_and_is_followed_to_its_end(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(pipeline_seconds={"six-hours": 6 * 3600})
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    long, after = run_request("six-hours"), run_request("copy")
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(b"same", *as_record(long)), (b"same", *as_record(after))],
    )
    async with running_bridge(settings) as bridge:
        await consume(
            kafka_bootstrap, settings.state_topic, until=ended(after["request_id"]), timeout=30
        )
        for _ in range(150):
            if await committed(kafka_bootstrap, settings.group_id, settings.requests_topic) == 2:
                break
            await asyncio.sleep(0.2)
        assert await committed(kafka_bootstrap, settings.group_id, settings.requests_topic) == 2
        six_hour_run = next(r for r in adf.runs() if r["pipelineName"] == "six-hours")
        assert six_hour_run["status"] == "InProgress"
        for _ in range(50):  # the quick run's end is published just before it is let go
            if bridge.tracker.followed() == 1:
                break
            await asyncio.sleep(0.1)
        assert bridge.tracker.followed() == 1
        adf.finish(six_hour_run["runId"], status="Succeeded")
        states = await consume(
            kafka_bootstrap, settings.state_topic, until=ended(long["request_id"]), timeout=30
        )
    assert [e["state"] for e in by_request(states)[long["request_id"]]] == [
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
    ]


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


def distinct_states(records: list[Any]) -> tuple[dict[str, list[str]], int]:
    """Each request's states once each, in order, and how many events were repeats; a
    repeat must be identical to the first (same CloudEvents id, same data)."""
    first: dict[str, Any] = {}
    states: dict[str, list[str]] = defaultdict(list)
    repeats = 0
    for record in records:
        event_id = dict(record.headers)["ce_id"]
        data = event_data(record)
        if event_id in first:
            assert first[event_id] == data, ("a repeated event is identical", first[event_id], data)
            repeats += 1
            continue
        first[event_id] = data
        states[data["request_id"]].append(data["state"])
    return states, repeats


async def test_a_rebalance_during_tracking_loses_no_transition(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(queue_seconds=1.0, run_seconds=4.0)
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=6)
    requests = [run_request("copy", parameters={"n": n}) for n in range(60)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 12}".encode(), *as_record(r)) for n, r in enumerate(requests)],
    )
    ids = [r["request_id"] for r in requests]
    async with running_bridge(settings) as first:
        await consume(kafka_bootstrap, settings.created_topic, at_least=60, timeout=30)
        assert first.tracker.followed() > 0, "runs are being followed when the group changes"
        async with running_bridge(settings) as second:
            states = await consume(
                kafka_bootstrap, settings.state_topic, until=ended(*ids), timeout=60, settle=1.0
            )
            assert second.tracker.followed() == 0 and first.tracker.followed() == 0
    per_request, repeats = distinct_states(states)
    assert {rid: per_request[rid] for rid in ids} == {
        rid: ["QUEUED", "RUNNING", "SUCCEEDED"] for rid in ids
    }
    assert len(adf.runs()) == 60
    print(f"\nrebalance during tracking: {repeats} repeated state events (identical, allowed)")


async def test_2000_concurrent_runs_are_tracked_within_the_read_budget(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(
        queue_seconds=2.0,
        run_seconds=15.0,
        write_bucket={"capacity": 5000, "refill_per_second": 1000},  # creates are not the point
        read_bucket={"capacity": 250, "refill_per_second": 25},  # ARM's reads, per principal
    )
    settings = settings_for(kafka_bootstrap, adf_server.url, max_in_flight=256)
    await create_topics(settings, partitions=6)
    requests = [run_request("copy", parameters={"n": n}) for n in range(2000)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 100}".encode(), *as_record(r)) for n, r in enumerate(requests)],
    )
    ids = [r["request_id"] for r in requests]
    async with running_bridge(settings) as bridge:
        states = await consume(
            kafka_bootstrap, settings.state_topic, until=ended(*ids), timeout=240
        )
    per_request, _ = distinct_states(states)
    assert all(per_request[rid][-1] == "SUCCEEDED" for rid in ids)
    stats = adf.stats()
    reads = stats["requests"].get("queryPipelineRuns", 0) + stats["requests"].get("getRun", 0)
    print(
        f"\n2000 runs tracked with {reads} reads ({stats['requests'].get('queryPipelineRuns', 0)} "
        f"queryPipelineRuns pages, {stats['requests'].get('getRun', 0)} getRun), "
        f"{bridge.metrics.polls} polls, {stats['throttled']} throttled"
    )
    assert stats["throttled"] == 0, "no 429: the read budget kept the bridge under ARM's"
    assert stats["requests"].get("getRun", 0) == 0, "queryPipelineRuns, not a GET per run"
    assert reads < 2000, "far fewer reads than runs"


async def test_500_requests_through_three_sigkills_and_lost_answers_start_one_run_each(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """The bridge is killed at three random moments while the emulator drops the answer to
    5 % of createRun calls after creating the run: exactly one ADF run per request id, no
    UNKNOWN, and every run followed to its end, whose state is published."""
    import os
    import random
    import signal
    import sys

    from tests.integration.test_crash_recovery import bridge_env

    adf.configure(
        queue_seconds=0.3,
        run_seconds=3.0,
        latency_ms=20,
        seed=11,
        write_bucket={"capacity": 2000, "refill_per_second": 200},  # throttling is not the point
    )
    adf.inject(
        Fault(operation="createRun", kind="drop", after_effect=True, probability=0.05, count=10_000)
    )
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=6)
    requests = [run_request("copy", parameters={"n": n}) for n in range(500)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 50}".encode(), *as_record(r)) for n, r in enumerate(requests)],
    )
    env = {**bridge_env(settings, adf_server.url), "RUNBRIDGE_MAX_IN_FLIGHT": "64"}
    command = [sys.executable, "-m", "bridge", "run"]
    rng = random.Random(os.getpid())
    ids = [r["request_id"] for r in requests]
    for kill in range(3):
        before = len(adf.runs())
        bridge = await asyncio.create_subprocess_exec(*command, env=env)
        try:
            for _ in range(300):  # until this bridge makes progress, then at a random moment
                if len(adf.runs()) >= before + 20:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.0, 1.5))
        finally:
            bridge.send_signal(signal.SIGKILL)
            await bridge.wait()
        runs = adf.runs()
        unfinished = sum(run["status"] in ("Queued", "InProgress") for run in runs)
        print(f"\nkill {kill + 1}: {before} → {len(runs)} ADF runs, {unfinished} not ended")
        assert len(runs) < 500 or unfinished, "the kill landed while runs were in flight"
    last = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        states = await consume(
            kafka_bootstrap, settings.state_topic, until=ended(*ids), timeout=180, settle=1.0
        )
    finally:
        last.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(last.wait(), 60) == 0
    runs_per_request: dict[str, int] = defaultdict(int)
    for run in adf.runs():
        runs_per_request[run["clientRequestId"]] += 1
    without_run = set(ids) - set(runs_per_request)
    assert not without_run, [
        (e["state"], e.get("reason"))
        for rid in sorted(without_run)
        for e in by_request(states)[rid]
    ][:3]
    assert max(runs_per_request.values()) == 1, "no request started two runs"
    per_request, repeats = distinct_states(states)
    assert not [rid for rid in ids if "UNKNOWN" in per_request[rid]], "no UNKNOWN"
    assert all(per_request[rid][-1] == "SUCCEEDED" for rid in ids), "every end published"
    dropped = adf.stats()["faults"]
    print(
        f"500 requests, 3 SIGKILLs, {dropped} answers dropped: {len(adf.runs())} runs, "
        f"{repeats} repeated state events"
    )
    assert dropped > 0, "some answers were lost"
