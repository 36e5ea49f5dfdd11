"""Credentials and unclear outcomes, end to end through Kafka and the ADF emulator."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from bridge.cloudevents import EnvelopeMode
from bridge.config import RetryPolicy
from contracts import DeadLetterHeaders
from devenv import kafka
from devenv.client import as_record, consume, create_topics, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer, Fault
from tests.support import adf_target, running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]


async def test_a_managed_identity_target_gets_its_token_from_imds(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    target = adf_target(
        adf_server.url,
        credential={
            "type": "managed_identity",
            "endpoint": f"{adf_server.url}/metadata/identity/oauth2/token",
        },
    )
    settings = settings_for(
        kafka_bootstrap,
        adf_server.url,
        targets={"adf-local": target},
        envelope_mode=EnvelopeMode.STRUCTURED,
    )
    await create_topics(settings, partitions=1)
    request = run_request()
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
    async with running_bridge(settings):
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1)
    assert event_data(created[0])["request_id"] == request["request_id"]
    assert dict(created[0].headers)["content-type"].startswith(b"application/cloudevents+json")
    assert adf.runs()[0]["principal"] == "managed-identity"


async def test_a_wrong_secret_dead_letters_without_leaking_it(
    kafka_bootstrap: str,
    adf_server: BackgroundServer,
    adf: AdminClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-that-must-not-leak"
    target = adf_target(adf_server.url)
    target["credential"]["client_secret"] = secret
    settings = settings_for(kafka_bootstrap, adf_server.url, targets={"adf-local": target})
    await create_topics(settings, partitions=1)
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(run_request()))])
    caplog.set_level(logging.DEBUG)
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=1)
    error = DeadLetterHeaders.from_kafka(dead[0].headers)
    assert error.reason == "authentication-failed"
    assert "invalid_client" in error.message
    published = b"".join(
        [*(v for r in dead + state for _, v in r.headers), *(r.value or b"" for r in dead + state)]
    )
    assert secret.encode() not in published
    assert secret not in caplog.text
    assert adf.runs() == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault(operation="createRun", kind="drop", after_effect=True, count=1),
        Fault(operation="createRun", kind="timeout", after_effect=True, count=1, delay_seconds=3),
        Fault(
            operation="createRun",
            kind="status",
            status=502,
            code="BadGateway",
            after_effect=True,
            count=1,
        ),
    ],
    ids=["dropped-connection", "read-timeout", "502"],
)
async def test_a_lost_answer_is_found_by_looking_and_no_second_run_starts(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient, fault: Fault
) -> None:
    adf.inject(fault)
    target = adf_target(adf_server.url, timeout_seconds=1)
    settings = settings_for(kafka_bootstrap, adf_server.url, targets={"adf-local": target})
    await create_topics(settings, partitions=1)
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(run_request()))])
    async with running_bridge(settings) as bridge:
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1, settle=0.5)
    [run] = adf.runs()
    assert [event_data(r)["run_id"] for r in created] == [run["runId"]]
    assert (bridge.metrics.unclear_attempts, bridge.metrics.runs_found) == (1, 1)
    assert bridge.metrics.dead_lettered == 0
    assert adf.stats()["requests"]["createRun"] == 1, "it looked instead of creating again"


async def test_safe_failures_are_retried_without_looking(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.inject(
        Fault(
            operation="createRun",
            kind="status",
            status=429,
            code="TooManyRequests",
            retry_after=1,
            count=2,
        ),
        Fault(operation="token", kind="status", status=503, count=1),
    )
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(run_request()))])
    async with running_bridge(settings) as bridge:
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1, settle=0.5)
    assert len(created) == 1
    assert (bridge.metrics.unclear_attempts, bridge.metrics.looks) == (0, 0)
    assert bridge.metrics.retries == 3
    assert len(adf.runs()) == 1


async def test_a_bridge_started_before_kafka_waits_for_it(
    adf_server: BackgroundServer, adf: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bootstrap = f"127.0.0.1:{port}"
    settings = settings_for(bootstrap, adf_server.url)
    request = run_request()
    broker = None
    try:
        async with running_bridge(settings):
            await asyncio.sleep(2)
            broker = await asyncio.to_thread(
                kafka.start, port=port, work_dir=tmp_path_factory.mktemp("late")
            )
            await create_topics(settings, partitions=1)
            await produce(bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
            created = await consume(bootstrap, settings.created_topic, at_least=1, timeout=60)
    finally:
        if broker is not None:
            broker.stop()
    assert [event_data(r)["request_id"] for r in created] == [request["request_id"]]


async def test_when_a_lost_answer_cannot_be_looked_for_the_state_is_unknown_not_rejected(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.inject(
        Fault(operation="createRun", kind="drop", after_effect=True, count=1),
        Fault(operation="queryPipelineRuns", status=500, code="InternalServerError", count=10),
    )
    settings = settings_for(
        kafka_bootstrap,
        adf_server.url,
        retry=RetryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.05),
    )
    await create_topics(settings, partitions=1)
    request = run_request()
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
    async with running_bridge(settings) as bridge:
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=1)
    assert (bridge.metrics.unknown_outcomes, bridge.metrics.rejected) == (1, 0)
    assert DeadLetterHeaders.from_kafka(dead[0].headers).reason == "retries-exhausted"
    event = event_data(state[0])
    assert (event["state"], event["reason"]["code"]) == ("UNKNOWN", "retries-exhausted")
    assert len(adf.runs()) == 1, "no create without looking first: nothing was started twice"


async def test_a_request_whose_facts_cannot_be_echoed_is_still_answered_and_does_not_stall_its_key(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    broken = run_request(correlation_id="c" * 1000)
    good = run_request()
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(b"k", *as_record(broken)), (b"k", *as_record(good))],
    )
    async with running_bridge(settings):
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=1)
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1)
    rejected = event_data(state[0])
    assert rejected["request_id"] == broken["request_id"]
    assert rejected["reason"]["code"] == "contract-violation"
    assert "correlation_id" not in rejected
    assert event_data(created[0])["request_id"] == good["request_id"]


async def test_records_too_large_to_echo_are_dead_lettered_and_never_block_the_key(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    # Output topics that take smaller records than the request topic: a request fits on the
    # way in, but neither its run-created event (which echoes it) nor its dead letter does.
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1, output_config={"max.message.bytes": "100000"})
    big = run_request(parameters={"blob": "x" * 200_000})
    good = run_request()
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(b"k", *as_record(big)), (b"k", *as_record(good))],
    )
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1)
    error = DeadLetterHeaders.from_kafka(dead[0].headers)
    assert error.reason == "output-rejected"
    assert "was created but its run-created event was refused" in error.message
    assert dead[0].value is None, "the original could not be kept, the error still is"
    assert "MessageSizeTooLarge" in (error.original_dropped or "")
    assert [event_data(r)["request_id"] for r in created] == [good["request_id"]]


async def test_requests_over_the_size_limit_are_dead_lettered_unread(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    settings = settings_for(kafka_bootstrap, adf_server.url, max_request_bytes=10_000)
    await create_topics(settings, partitions=1)
    request = run_request(parameters={"blob": "y" * 20_000})
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
        state = await consume(kafka_bootstrap, settings.state_topic, timeout=1)
    error = DeadLetterHeaders.from_kafka(dead[0].headers)
    assert error.reason == "too-large"
    assert error.request_id is None, "not read, so its request id is not known"
    assert len(dead[0].value or b"") > 20_000, "the original value is kept when it fits"
    assert state == [], "the README's table: too-large is not read, so no state event"
    assert adf.runs() == []
