"""The HERE backend on the real broker against the HERE emulator over real sockets: the
activate call, 307s, signed tokens, refusals, exactly one job, and cancellation."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections import defaultdict
from typing import Any

import pytest

from bridge.backends.here import request_header_id
from bridge.config import RetryPolicy
from contracts import DeadLetterHeaders
from devenv.client import as_record, consume, create_topics, event_data, produce
from emulators import here as emulator
from emulators._server import BackgroundServer
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.here]

CANCEL = "org.runbridge.run.cancel-requested.v1"
FAST = {"min_interval_seconds": 0.2, "max_interval_seconds": 1}


def here_target(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "system": "here",
        "base_url": url + emulator.PIPELINE_BASE_PATH,
        "credentials": {
            "access_key_id": emulator.DEFAULT_ACCESS_KEY_ID,
            "access_key_secret": emulator.DEFAULT_ACCESS_KEY_SECRET,
            "token_endpoint_url": url + emulator.TOKEN_PATH,
            "client_id": emulator.DEFAULT_CLIENT_ID,  # a lost answer is matched by clientId
        },
        "tracking": FAST,
        **overrides,
    }


def here_request(version_id: str = emulator.DEFAULT_VERSION_ID, **run: Any) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "target": "here",
        "run": {
            "system": "here",
            "pipelineId": emulator.DEFAULT_PIPELINE_ID,
            "versionId": version_id,
            **run,
        },
    }


def settings(kafka: str, url: str, **target: Any) -> Any:
    return settings_for(
        kafka, "http://unused.invalid", targets={"here": here_target(url, **target)}
    )


def states_of(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids: set[str] = set()
    for record in records:
        event_id = dict(record.headers)["ce_id"]
        if event_id not in ids:
            ids.add(event_id)
            seen[event_data(record)["request_id"]].append(event_data(record))
    return seen


def ended(*request_ids: str) -> Any:
    def condition(records: list[Any]) -> bool:
        done = {e["request_id"] for r in records if (e := event_data(r))["terminal"]}
        return done >= set(request_ids)

    return condition


async def test_a_request_becomes_an_activate_call_then_the_job_s_states_to_its_end(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    body = {
        "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
        "outputCatalog": {"baseVersion": 3},
        "runAsId": f"hrn:here:account::{here.config()['org']}:app/runbridge",
        "highAvailability": True,  # not HERE's default, so that it shows it was sent
    }
    request = {**here_request(**body), "correlation_id": "nightly-7"}
    key = request["request_id"].encode()
    await produce(
        kafka_bootstrap,
        config.requests_topic,
        [(key, *as_record(request)), (key, *as_record(request))],
    )
    async with running_bridge(config):
        created = await consume(kafka_bootstrap, config.created_topic, at_least=2, timeout=30)
        states = await consume(
            kafka_bootstrap, config.state_topic, until=ended(request["request_id"]), timeout=30
        )
    [activation] = here.operations()
    assert activation["requestType"] == "activate"
    assert activation["requestId"] == request_header_id(request["request_id"], "activate")
    assert activation["correlationId"] == "nightly-7"
    assert activation["runAsId"] == body["runAsId"]
    assert activation["options"] == {"highAvailability": True}
    assert activation["clientId"] == emulator.DEFAULT_CLIENT_ID
    [job] = here.jobs()
    assert job["catalogVersions"] == {k: body[k] for k in ("inputCatalogs", "outputCatalog")}
    assert (job["runAsId"], job["highAvailability"]) == (body["runAsId"], True)
    assert [event_data(r)["run_id"] for r in created] == [activation["id"]] * 2, (
        "a duplicate delivery starts nothing and names the same run"
    )
    events = states_of(states)[request["request_id"]]
    assert [e["state"] for e in events] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert events[1]["details"]["jobId"] == job["id"] == events[2]["details"]["jobId"]
    assert events[2]["details"]["loggingUrl"] == job["loggingUrl"]
    assert events[2]["backend_status"] == "completed"


async def test_a_307_is_followed_to_an_allowed_host_and_refused_to_another(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    other_base = here_server.url.replace("127.0.0.1", "localhost") + emulator.PIPELINE_BASE_PATH
    redirect = {"operation": "activate", "kind": "redirect", "location": other_base}
    for allowed, expected in ((["localhost"], "created"), ([], "refused")):
        here.reset()
        here.inject(redirect)
        config = settings(kafka_bootstrap, here_server.url, allowed_redirect_hosts=allowed)
        await create_topics(config, partitions=1)
        request = here_request()
        await produce(kafka_bootstrap, config.requests_topic, [(b"k", *as_record(request))])
        async with running_bridge(config):
            topic = config.created_topic if expected == "created" else config.dead_letter_topic
            [out] = await consume(kafka_bootstrap, topic, at_least=1, timeout=30)
        if expected == "created":
            assert len(here.operations()) == 1, "activated once, at the host it was sent to"
        else:
            error = DeadLetterHeaders.from_kafka(out.headers)
            assert error.reason == "backend-rejected" and "does not allow" in error.message
            assert here.operations() == []


async def test_bad_signatures_reused_nonces_and_expired_tokens(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    # a wrong secret: the token endpoint refuses the signature, the request is REJECTED
    wrong = settings(
        kafka_bootstrap,
        here_server.url,
        credentials={
            "access_key_id": emulator.DEFAULT_ACCESS_KEY_ID,
            "access_key_secret": "not-the-secret",
            "token_endpoint_url": here_server.url + emulator.TOKEN_PATH,
        },
    )
    await create_topics(wrong, partitions=1)
    refused = here_request()
    await produce(kafka_bootstrap, wrong.requests_topic, [(b"k", *as_record(refused))])
    async with running_bridge(wrong):
        [dead] = await consume(kafka_bootstrap, wrong.dead_letter_topic, at_least=1, timeout=30)
    error = DeadLetterHeaders.from_kafka(dead.headers)
    assert error.reason == "authentication-failed" and "401300" in error.message
    assert "not-the-secret" not in json.dumps([(n, v.decode()) for n, v in dead.headers if v])

    # a reused nonce once: signed again, then the run; an expired token: fetched again
    here.reset()
    here.inject({"operation": "token", "status": 401, "error_code": 401207, "count": 1})
    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    first, second = here_request(), here_request()
    async with running_bridge(config):
        await produce(kafka_bootstrap, config.requests_topic, [(b"k", *as_record(first))])
        await consume(
            kafka_bootstrap, config.state_topic, until=ended(first["request_id"]), timeout=30
        )
        tokens_before = here.stats()["tokens_issued"]
        here.expire_tokens()
        await produce(kafka_bootstrap, config.requests_topic, [(b"k", *as_record(second))])
        created = await consume(kafka_bootstrap, config.created_topic, at_least=2, timeout=30)
    assert here.stats()["faults"] == 1, "the refused nonce was signed again, once"
    assert here.stats()["tokens_issued"] >= tokens_before + 1, "a new token after the 401"
    assert {event_data(r)["request_id"] for r in created} == {
        first["request_id"],
        second["request_id"],
    }

    # a nonce refused again and again: REJECTED with the reason
    here.reset()
    here.inject({"operation": "token", "status": 401, "error_code": 401207, "count": 100})
    again = settings(kafka_bootstrap, here_server.url)
    await create_topics(again, partitions=1)
    await produce(kafka_bootstrap, again.requests_topic, [(b"k", *as_record(here_request()))])
    async with running_bridge(again):
        [dead] = await consume(kafka_bootstrap, again.dead_letter_topic, at_least=1, timeout=30)
    error = DeadLetterHeaders.from_kafka(dead.headers)
    assert error.reason == "authentication-failed" and "nonce" in error.message


async def test_bad_hrns_and_processing_types_never_leave_the_bridge_and_a_busy_version_is_rejected(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    bad_hrn = here_request()
    bad_hrn["run"]["pipelineId"] = "hrn:here:pipeline::org:not-a-uuid"
    bad_type = here_request(inputCatalogs={"rib": {"processingType": "everything", "version": 1}})
    bad_run_as = here_request(runAsId="hrn:here:account::olp-acme:app/x.y")  # HERE: no "."
    first, busy = here_request(), here_request()
    records = [(b"k", *as_record(r)) for r in (bad_hrn, bad_type, bad_run_as, first, busy)]
    await produce(kafka_bootstrap, config.requests_topic, records)
    async with running_bridge(config):
        dead = await consume(kafka_bootstrap, config.dead_letter_topic, at_least=4, timeout=30)
    errors = [DeadLetterHeaders.from_kafka(r.headers) for r in dead]
    assert [e.reason for e in errors] == ["contract-violation"] * 3 + ["backend-rejected"]
    assert here.stats()["requests"].get("activate") == 2, "only the valid requests were sent"
    assert errors[3].request_id == uuid.UUID(busy["request_id"])
    assert "Cannot activate the PipelineVersion" in errors[3].message, "HERE's own message"


async def test_a_cancel_ends_in_cancelled(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    here.configure(job_seconds=30)
    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    request = here_request()
    key = request["request_id"].encode()
    async with running_bridge(config):
        await produce(kafka_bootstrap, config.requests_topic, [(key, *as_record(request))])

        def running(records: list[Any]) -> bool:
            return any(event_data(r)["state"] == "RUNNING" for r in records)

        await consume(kafka_bootstrap, config.state_topic, until=running, timeout=30)
        cancel = {"request_id": request["request_id"], "options": {"system": "here"}}
        await produce(
            kafka_bootstrap, config.requests_topic, [(key, *as_record(cancel, type=CANCEL))]
        )
        states = await consume(
            kafka_bootstrap, config.state_topic, until=ended(request["request_id"]), timeout=30
        )
    events = states_of(states)[request["request_id"]]
    assert [e["state"] for e in events] == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]
    assert [job["state"] for job in here.jobs()] == ["canceled"]


async def test_a_cancel_whose_answer_is_lost_still_ends_in_cancelled(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    """HERE takes the cancel but the connection drops before its answer; the retry reads the
    version, sees the cancel under way, and sends no second one (HERE would refuse it)."""
    here.configure(job_seconds=30)
    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    request = here_request()
    key = request["request_id"].encode()
    async with running_bridge(config):
        await produce(kafka_bootstrap, config.requests_topic, [(key, *as_record(request))])

        def running(records: list[Any]) -> bool:
            return any(event_data(r)["state"] == "RUNNING" for r in records)

        await consume(kafka_bootstrap, config.state_topic, until=running, timeout=30)
        here.inject({"operation": "cancel", "kind": "drop", "after_effect": True})
        cancel = {"request_id": request["request_id"]}
        await produce(
            kafka_bootstrap, config.requests_topic, [(key, *as_record(cancel, type=CANCEL))]
        )
        states = await consume(
            kafka_bootstrap, config.state_topic, until=ended(request["request_id"]), timeout=30
        )
        dead = await consume(kafka_bootstrap, config.dead_letter_topic, settle=1.0)
    events = states_of(states)[request["request_id"]]
    assert [e["state"] for e in events] == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]
    assert dead == [], "not 'run-already-ended', not refused"
    assert [op["requestType"] for op in here.operations()] == ["activate", "cancel"]
    assert here.stats()["requests"]["cancel"] == 1 and here.stats()["faults"] == 1


async def test_a_cancel_during_the_activation_waits_for_it_then_cancels(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    """The cancel comes right after the request: HERE takes no other operation on the version
    while the activation is processed, so the bridge asks again shortly, then cancels."""
    here.configure(process_seconds=1.5, job_seconds=30)
    config = settings_for(
        kafka_bootstrap,
        "http://unused.invalid",
        targets={"here": here_target(here_server.url)},
        retry=RetryPolicy(
            max_attempts=60, max_seconds=60, initial_backoff_seconds=0.05, max_backoff_seconds=0.3
        ),
    )
    await create_topics(config, partitions=1)
    request = here_request()
    key = request["request_id"].encode()
    cancel = {"request_id": request["request_id"]}
    await produce(
        kafka_bootstrap,
        config.requests_topic,
        [(key, *as_record(request)), (key, *as_record(cancel, type=CANCEL))],
    )
    async with running_bridge(config):
        states = await consume(
            kafka_bootstrap, config.state_topic, until=ended(request["request_id"]), timeout=30
        )
        dead = await consume(kafka_bootstrap, config.dead_letter_topic, settle=1.0)
    events = [e["state"] for e in states_of(states)[request["request_id"]]]
    assert events[0] == "QUEUED" and events[-2:] == ["CANCELLING", "CANCELLED"], events
    assert dead == []
    assert [op["requestType"] for op in here.operations()] == ["activate", "cancel"]
    assert here.stats()["requests"]["cancel"] == 1, "no cancel was sent while HERE was busy"
    assert [job["state"] for job in here.jobs()] == ["canceled"]


async def test_a_sigkill_during_activation_starts_exactly_one_job(
    kafka_bootstrap: str, here_server: BackgroundServer, here: emulator.AdminClient
) -> None:
    """The activate takes effect, its answer is held back, and the bridge is killed then:
    the next bridge finds the activation as the version's latest operation."""
    from tests.integration.test_crash_recovery import bridge_env

    config = settings(kafka_bootstrap, here_server.url)
    await create_topics(config, partitions=1)
    here.inject(
        {"operation": "activate", "kind": "timeout", "after_effect": True, "delay_seconds": 20}
    )
    request = here_request()
    await produce(kafka_bootstrap, config.requests_topic, [(b"k", *as_record(request))])
    env = {
        **bridge_env(config, "http://unused.invalid"),
        "RUNBRIDGE_TARGETS": json.dumps({"here": here_target(here_server.url)}),
    }
    command = [sys.executable, "-m", "bridge", "run"]
    first = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        for _ in range(300):
            if here.operations():
                break
            await asyncio.sleep(0.1)
        assert here.operations(), "the activation reached HERE"
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    second = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        states = await consume(
            kafka_bootstrap, config.state_topic, until=ended(request["request_id"]), timeout=60
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 60) == 0
    assert len(here.operations()) == 1 and len(here.jobs()) == 1, "exactly one job"
    assert [e["state"] for e in states_of(states)[request["request_id"]]][-1] == "SUCCEEDED"
