"""Records that used to stop, stall or loop the bridge, each on the real broker and emulator.

One test per observation of the hostile-input report; each failed before the change
(checked on the commit before it). The wide battery is in test_hostile_battery.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.cloudevents import EnvelopeMode
from contracts import DeadLetterHeaders
from devenv.client import as_record, consume, create_topics, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer, Fault
from tests.kafka_raw import Out, produce_raw
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]

CE_HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"poison-1"),
    ("ce_source", b"/tests"),
    ("ce_type", b"org.runbridge.run.requested.v1"),
    ("content-type", b"application/json"),
]


def reasons(dead: list) -> list[str]:  # type: ignore[type-arg]
    return [DeadLetterHeaders.from_kafka(record.headers).reason for record in dead]


def created_ids(created: list) -> list[str]:  # type: ignore[type-arg]
    return [event_data(record)["request_id"] for record in created]


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_a_header_name_that_is_not_utf8_stops_no_partition(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 1: aiokafka cannot read such a record; it used to stop every partition."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=6)
    before = [run_request(parameters={"n": n}) for n in range(6)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"k{n}".encode(), *as_record(r)) for n, r in enumerate(before)],
    )
    value, _ = as_record(run_request())
    neighbour_before, neighbour_after = run_request(), run_request()
    raw_headers = [(name.encode(), raw) for name, raw in CE_HEADERS]
    batch = [
        Out(b"same-batch-1", as_record(neighbour_before)[0], raw_headers),
        Out(b"poison", value, [(b"\xff\xfebad", b"x"), *raw_headers]),
        Out(b"same-batch-2", as_record(neighbour_after)[0], raw_headers),
    ]
    offsets = await produce_raw(kafka_bootstrap, settings.requests_topic, 0, batch)
    after = [run_request(parameters={"n": n}) for n in range(12)]
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(f"after-{n}".encode(), *as_record(r)) for n, r in enumerate(after)],
    )

    async with running_bridge(settings) as bridge:
        created = await consume(
            kafka_bootstrap, settings.created_topic, at_least=20, timeout=30, settle=0.5
        )
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1, timeout=10)

    expected = {r["request_id"] for r in [*before, *after, neighbour_before, neighbour_after]}
    assert sorted(created_ids(created)) == sorted(expected), "every partition went on"
    assert len(dead) == 1
    error = DeadLetterHeaders.from_kafka(dead[0].headers)
    assert (error.reason, error.source_partition, error.source_offset) == (
        "undecodable",
        0,
        offsets[1],
    )
    assert "header name is not UTF-8" in error.message
    assert dead[0].key == b"poison" and dead[0].value == value, "key and value kept as stored"
    assert "ff fe 62 61 64" in (error.original_dropped or ""), "the raw name bytes are named"
    assert [(n, v) for n, v in dead[0].headers if not n.startswith("runbridge.")] == CE_HEADERS
    assert bridge.metrics.unreadable_records == 1
    assert len(adf.runs()) == len(expected), "the unreadable request never reached ADF"


async def test_a_one_mib_key_ends_in_a_dead_letter_not_a_loop(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 2: outputs that echo such a key are refused by Kafka; that used to loop."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    big_key = b"k" * 1_047_700  # the request fits the broker's 1 MiB; anything echoing it not
    huge, good = run_request(), run_request()
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(big_key, *as_record(huge)), (b"k", *as_record(good))],
        max_request_size=2_000_000,
    )
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1, timeout=20)
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1, timeout=20)

    assert reasons(dead) == ["too-large"]
    error = DeadLetterHeaders.from_kafka(dead[0].headers)
    assert dead[0].key == b"" and dead[0].value is None, "Kafka refused the full dead letter"
    assert "key (1047700 bytes)" in (error.original_dropped or "")
    assert created_ids(created) == [good["request_id"]]
    assert len(adf.runs()) == 1, "the oversized request never reached ADF"


async def test_a_lone_surrogate_in_correlation_id_is_a_contract_violation(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 2: a value no output can carry used to loop while building the event."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    broken, good = run_request(), run_request()
    value, headers = as_record(broken)
    value = value.replace(b'"target"', b'"correlation_id":"\\udfff","target"')
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(b"k", value, headers), (b"k", *as_record(good))],
    )
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1, timeout=20)
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=1, timeout=10)
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=1, timeout=10)

    assert reasons(dead) == ["contract-violation"]
    assert "correlation_id" in DeadLetterHeaders.from_kafka(dead[0].headers).message
    rejected = event_data(state[0])
    assert rejected["request_id"] == broken["request_id"]
    assert "correlation_id" not in rejected, "an unusable value is not repeated"
    assert created_ids(created) == [good["request_id"]]
    assert len(adf.runs()) == 1


async def test_bad_records_do_not_freeze_their_partition_s_commits(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 3: a stuck record froze the commits, and a restart ran everything again."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    first, surrogate, last = run_request(), run_request(), run_request()
    value, headers = as_record(surrogate)
    value = value.replace(b'"target"', b'"correlation_id":"\\udfff","target"')
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [
            (b"a", *as_record(first)),
            (b"k" * 1_047_700, *as_record(run_request())),
            (b"b", value, headers),
            (b"c", *as_record(last)),
        ],
        max_request_size=2_000_000,
    )
    async with running_bridge(settings):
        await consume(kafka_bootstrap, settings.created_topic, at_least=2, timeout=20)
        await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=2, timeout=20)
    tp = TopicPartition(settings.requests_topic, 0)
    assert await committed(kafka_bootstrap, settings.group_id, tp) == 4

    async with running_bridge(settings) as restarted:
        await asyncio.sleep(3)
    assert restarted.metrics.received == 0, "a restart starts after every finished record"
    assert len(adf.runs()) == 2


async def test_health_turns_red_while_a_record_is_stuck_and_names_it(
    kafka_bootstrap: str,
    adf_server: BackgroundServer,
    adf: AdminClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Observation 4: health stayed green while a partition made no progress."""
    from bridge import health
    from bridge.cli import main

    health_file = tmp_path / "health.json"
    monkeypatch.setenv("RUNBRIDGE_HEALTH_FILE", str(health_file))
    settings = settings_for(
        kafka_bootstrap, adf_server.url, health_file=health_file, stall_timeout_seconds=1
    )
    await create_topics(settings, partitions=1)
    adf.inject(Fault(operation="createRun", kind="timeout", delay_seconds=4, count=1))
    request = run_request()
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])

    async with running_bridge(settings) as bridge:
        for _ in range(100):
            await asyncio.sleep(0.1)
            healthy, detail = health.check(health_file, max_age=30)
            if not healthy and "no progress" in detail:
                break
        assert not healthy
        assert f"{settings.requests_topic}[0]" in detail and "offset 0" in detail
        assert main(["health", "--max-age", "30"]) == 1
        await consume(kafka_bootstrap, settings.created_topic, at_least=1, timeout=30)
        await asyncio.sleep(1.5)
        assert health.check(health_file, max_age=30) == (True, "ok")
        assert main(["health", "--max-age", "30"]) == 0
    assert bridge.metrics.stalls == 1


UNTRAVELLED = {
    "NaN": b'{"n": NaN}',
    "Infinity": b'{"n": Infinity}',
    "-Infinity": b'{"n": -Infinity}',
    "1e999": b'{"n": 1e999}',
    "lone surrogate value": b'{"s": "\\udfff"}',
    "lone surrogate key": b'{"\\ud800": 1}',
}
BAD_NAMES = ["copy\u0007sales", "copy\u200bsales", "copy\nsales", "copy\u202esales"]


async def test_values_that_cannot_travel_are_refused_before_any_call(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 5: these reached the run API or failed there as internal-error."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=3)
    records = []
    for n, parameters in enumerate(UNTRAVELLED.values()):
        value, headers = as_record(run_request(parameters={"placeholder": 1}))
        value = value.replace(b'{"placeholder":1}', parameters)
        records.append((f"p{n}".encode(), value, headers))
    for n, name in enumerate(BAD_NAMES):
        records.append((f"n{n}".encode(), *as_record(run_request(pipeline=name))))
    await produce(kafka_bootstrap, settings.requests_topic, records)

    async with running_bridge(settings) as bridge:
        dead = await consume(
            kafka_bootstrap, settings.dead_letter_topic, at_least=len(records), timeout=30
        )
    assert adf.stats()["requests"].get("createRun", 0) == 0, "nothing reached the run API"
    got = [DeadLetterHeaders.from_kafka(r.headers).reason for r in dead]
    assert "internal-error" not in got
    assert got.count("undecodable") == 3, "NaN and Infinity are not JSON"
    assert got.count("contract-violation") == len(records) - 3
    assert bridge.metrics.dead_lettered == len(records)


async def test_an_api_error_message_with_control_characters_is_escaped_in_headers(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 5: a raw newline from the API's error message landed in a header."""
    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    adf.inject(
        Fault(
            operation="createRun",
            status=400,
            code="BadRequest",
            message="line one\nline two\x00\u202e",
        )
    )
    request = run_request()
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1)
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=1)
    message = dict(dead[0].headers)["runbridge.error.message"].decode()
    assert "line one\\nline two\\x00\\u202e" in message
    assert "\n" not in message and "\x00" not in message
    assert "\n" not in event_data(state[0])["reason"]["message"]


async def test_what_the_docs_say_about_headers_base64_and_request_ids(
    kafka_bootstrap: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    """Observation 6: docs and code disagreed on these; the README's table is now the rule.
    - headers the bridge does not read (null, not UTF-8) are carried, not refused;
    - a structured event with data_base64 is a CloudEvent like any other;
    - a request id in another spelling than the canonical one is refused, not rewritten."""
    from cloudevents.core.bindings.kafka import to_structured
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    settings = settings_for(kafka_bootstrap, adf_server.url)
    await create_topics(settings, partitions=1)
    odd_headers, base64_data, urn = run_request(), run_request(), run_request()
    value, headers = as_record(odd_headers)
    sdk_event = CloudEvent(
        attributes={
            "type": "org.runbridge.run.requested.v1",
            "source": "/sdk",
            "datacontenttype": "application/json",
        },
        data=json.dumps(base64_data).encode(),  # bytes: the SDK writes data_base64
    )
    message = to_structured(sdk_event, JSONFormat())
    assert b"data_base64" in message.value
    urn["request_id"] = uuid.UUID(urn["request_id"]).urn
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [
            (b"k", value, [*headers, ("traceparent-bin", b"\xff\x00"), ("empty", None)]),
            (b"k", message.value, list(message.headers.items())),
            (b"k", *as_record(urn, EnvelopeMode.STRUCTURED)),
        ],
    )
    async with running_bridge(settings):
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=2, timeout=20)
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=1, timeout=10)
    assert created_ids(created) == [odd_headers["request_id"], base64_data["request_id"]]
    assert reasons(dead) == ["contract-violation"]
    assert "canonical lowercase form" in DeadLetterHeaders.from_kafka(dead[0].headers).message
