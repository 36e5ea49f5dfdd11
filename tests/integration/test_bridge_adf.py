"""The whole path, for real: Kafka (a real broker) → bridge → ADF (the emulator over HTTP) → Kafka."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from bridge.cloudevents import EnvelopeMode
from contracts import DeadLetterHeaders
from devenv.client import as_record, consume, create_topics, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer, Fault
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]


async def test_200_requests_over_20_keys_become_200_runs_in_order_per_key(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient, tmp_path: Path
) -> None:
    health_file = tmp_path / "alive"
    settings = settings_for(
        kafka_bootstrap, adf_server.url, max_in_flight=64, health_file=health_file
    )
    await create_topics(settings, partitions=6)
    keys = [f"customer-{k}" for k in range(20)]
    sent: dict[str, tuple[str, int]] = {}
    records = []
    for seq in range(10):
        for key in keys:
            request = run_request(parameters={"key": key, "seq": seq})
            sent[request["request_id"]] = (key, seq)
            mode = EnvelopeMode.STRUCTURED if seq % 2 else EnvelopeMode.BINARY
            value, headers = as_record(request, mode)
            records.append((key.encode(), value, headers))
    await produce(kafka_bootstrap, settings.requests_topic, records)

    async with running_bridge(settings) as bridge:
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=200, settle=1.0)

    assert len(created) == 200
    events = [event_data(record) for record in created]
    assert {event["request_id"] for event in events} == set(sent)
    emulator_runs = {run["runId"]: run for run in adf.runs()}
    assert {event["run_id"] for event in events} == set(emulator_runs)
    assert len(emulator_runs) == 200

    by_key: dict[str, list[int]] = defaultdict(list)
    for record, event in zip(created, events, strict=True):
        key, seq = sent[event["request_id"]]
        assert record.key == key.encode()
        by_key[key].append(seq)
    assert all(seqs == list(range(10)) for seqs in by_key.values()), by_key

    runs_in_creation_order = [
        json.loads(run["parameters"]["seq"])
        for run in adf.runs()
        if run["parameters"]["key"] == keys[0]
    ]
    assert runs_in_creation_order == list(range(10))
    assert bridge.metrics.runs_created == 200
    assert bridge.metrics.dead_lettered == 0
    assert health_file.exists(), "the consumer loop touches the health file"


async def test_every_kind_of_bad_input_is_dead_lettered_with_its_reason(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(known_pipelines=["copy-sales"])
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=3)

    ce_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_source", b"/t"),
        ("ce_type", b"org.runbridge.run.requested.v1"),
    ]
    unknown_type = run_request()
    violation = run_request()
    del violation["run"]["pipelineName"]
    unknown_target = run_request(target="nowhere")
    bad_name = run_request(pipeline="../../secrets")
    refused = run_request(pipeline="no-such-pipeline")
    good = run_request(correlation_id="batch-7")
    bad = {
        "undecodable": (b"\xff\xfe\x00", ce_headers, None),
        "not-a-cloudevent": (json.dumps(run_request()).encode(), [], None),
        "unknown-event-type": (
            *as_record(unknown_type, type="org.runbridge.run.requested.v9"),
            unknown_type,
        ),
        "contract-violation": (*as_record(violation), violation),
        "unknown-target": (*as_record(unknown_target), unknown_target),
        "invalid-identifier": (*as_record(bad_name), bad_name),
        "backend-rejected": (*as_record(refused), refused),
    }
    records = [(b"same-key", value, headers) for value, headers, _ in bad.values()]
    records.append((b"same-key", *as_record(good)))
    await produce(kafka_bootstrap, settings.requests_topic, records)

    async with running_bridge(settings):
        dead = await consume(
            kafka_bootstrap, settings.dead_letter_topic, at_least=len(bad), settle=1.0
        )
        rejected = await consume(kafka_bootstrap, settings.state_topic, at_least=5, settle=0.5)
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1)

    assert len(dead) == len(bad)
    reasons = {}
    for record, (value, headers, _) in zip(dead, bad.values(), strict=True):
        error = DeadLetterHeaders.from_kafka(record.headers)
        reasons[error.reason] = error
        assert record.value == value, "the original value is kept byte for byte"
        assert list(record.headers)[: len(headers)] == headers, (
            "original headers come first, untouched"
        )
        assert record.key == b"same-key"
        assert error.source_topic == settings.requests_topic
        assert error.attempts >= 1
    assert list(reasons) == list(bad)
    assert reasons["backend-rejected"].message.startswith("createRun: HTTP 404")

    expected_rejections = {
        str(request["request_id"]): reason for reason, (_, _, request) in bad.items() if request
    }
    got = {
        event_data(record)["request_id"]: event_data(record)
        for record in rejected
        if event_data(record)["state"] in ("REJECTED", "UNKNOWN")
    }
    assert set(got) == set(expected_rejections)
    for request_id, reason in expected_rejections.items():
        assert got[request_id]["state"] == "REJECTED"
        assert got[request_id]["reason"]["code"] == reason
        assert reasons[reason].request_id == uuid.UUID(request_id)

    assert [event_data(record)["request_id"] for record in created] == [good["request_id"]], (
        "the good request behind the bad ones on the same key still becomes a run"
    )
    assert dict(created[0].headers)["ce_correlationid"] == b"batch-7"


async def test_throttling_and_503_bursts_end_in_success_without_dead_letters(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(write_bucket={"capacity": 5, "refill_per_second": 10})
    adf.inject(Fault(operation="createRun", kind="status", status=503, retry_after=1, count=8))
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=6)
    requests = [run_request(parameters={"n": n}) for n in range(60)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n % 12}".encode(), *as_record(request)) for n, request in enumerate(requests)],
    )

    async with running_bridge(settings) as bridge:
        created = await consume(
            kafka_bootstrap, settings.created_topic, at_least=60, timeout=90, settle=0.5
        )

    assert {event_data(record)["request_id"] for record in created} == {
        r["request_id"] for r in requests
    }
    assert len(created) == 60
    stats = adf.stats()
    assert stats["throttled"] > 0, "the write bucket was small enough to throttle"
    assert stats["faults"] == 8
    assert bridge.metrics.dead_lettered == 0
    assert bridge.metrics.unclear_attempts == 0, "429 and 503 with Retry-After are safe to retry"
    assert len(adf.runs()) == 60


async def test_an_expired_token_is_refreshed_once_and_the_run_is_created(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    first, second = run_request(), run_request()
    async with running_bridge(settings):
        await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(first))])
        await consume(kafka_bootstrap, settings.created_topic, at_least=1)
        tokens_before = adf.stats()["tokens_issued"]
        adf.expire_tokens()
        await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(second))])
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=2)
    assert [event_data(r)["request_id"] for r in created] == [
        first["request_id"],
        second["request_id"],
    ]
    assert adf.stats()["tokens_issued"] == tokens_before + 1
