"""The README's table of dead-letter reasons, walked row by row on the real broker.

For every reason the table lists, one record that must get it; the dead letter carries
that reason, and a run-state-changed event is published exactly when the table says so.
A reason added to the code or the table without the other fails here.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.backends.adf import AdfBackend
from bridge.config import RetryPolicy
from contracts import DeadLetterHeaders
from devenv.client import as_record, consume, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer, Fault
from tests.support import adf_target, documented_reasons, running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.adf]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_every_reason_in_the_readme_is_produced_as_documented(
    kafka_bootstrap: str,
    adf_server: BackgroundServer,
    adf: AdminClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = adf_server.url
    wrong_secret = adf_target(url)
    wrong_secret["credential"] = {**wrong_secret["credential"], "client_secret": "wrong"}
    settings = settings_for(
        kafka_bootstrap,
        url,
        max_request_bytes=200_000,
        retry=RetryPolicy(max_attempts=2, initial_backoff_seconds=0.01, max_backoff_seconds=0.05),
        targets={
            "adf-local": adf_target(url),
            "adf-wrong-secret": wrong_secret,
            "adf-down": adf_target(url, base_url=f"http://127.0.0.1:{closed_port()}"),
        },
    )
    # The run-created topic takes smaller records than the request topic: a request that
    # fits on the way in, echoed in its run-created event, does not.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(settings.requests_topic, 1, 1),
                NewTopic(
                    settings.created_topic, 1, 1, topic_configs={"max.message.bytes": "100000"}
                ),
                NewTopic(settings.state_topic, 1, 1),
                NewTopic(settings.dead_letter_topic, 1, 1),
            ]
        )
    finally:
        await admin.close()

    adf.configure(known_pipelines=["copy", "echo-big", "answers-nothing", "explodes"])
    adf.inject(
        Fault(operation="createRun", pipeline="answers-nothing", kind="empty"),
        # as ADF answers a cancel of a run that has just ended
        Fault(operation="cancel", status=400, code="PipelineRunNotRunning", message="ended"),
    )
    real_create_run = AdfBackend.create_run

    async def create_run_with_a_bug(self: AdfBackend, run: Any, **ids: Any) -> Any:
        if run.pipeline_name == "explodes":
            raise RuntimeError("a bug, simulated")
        return await real_create_run(self, run, **ids)

    monkeypatch.setattr(AdfBackend, "create_run", create_run_with_a_bug)

    def request(**fields: Any) -> dict[str, Any]:
        return run_request("copy", **fields)

    violation = request()
    del violation["run"]["pipelineName"]
    recipes: dict[str, tuple[bytes | None, list[tuple[str, bytes]], dict[str, Any] | None]] = {}

    def add(reason: str, data: dict[str, Any] | None, record: Any = None) -> None:
        value, headers = record if record is not None else as_record(data)
        recipes[reason] = (value, headers, data)

    add("too-large", None, as_record(request(parameters={"blob": "x" * 210_000})))
    add("undecodable", None, (b"\xff\xfe", [("ce_id", b"1")]))
    add("not-a-cloudevent", None, (json.dumps(request()).encode(), []))
    unknown_type = request()
    add(
        "unknown-event-type",
        unknown_type,
        as_record(unknown_type, type="org.runbridge.run.requested.v9"),
    )
    add("contract-violation", violation)
    add("unknown-target", request(target="nowhere"))
    mismatch = request()
    mismatch["run"] = {"system": "marquez", "namespace": "ns", "job": "j"}
    add("target-mismatch", mismatch)
    add("invalid-identifier", run_request("../../secrets"))
    add("backend-rejected", run_request("not-in-the-factory"))
    add("authentication-failed", request(target="adf-wrong-secret"))
    add("retries-exhausted", request(target="adf-down"))
    add("outcome-unknown", run_request("answers-nothing"))
    add("output-rejected", run_request("echo-big", parameters={"blob": "y" * 150_000}))
    add("internal-error", run_request("explodes"))
    refused_request_id = recipes["backend-rejected"][2]["request_id"]  # type: ignore[index]
    cancel_type = "org.runbridge.run.cancel-requested.v1"
    add(
        "nothing-to-cancel",
        None,
        as_record({"request_id": refused_request_id}, type=cancel_type),
    )
    to_cancel = request()
    recipes["(a run to cancel)"] = (*as_record(to_cancel), None)
    add(
        "run-already-ended",
        None,
        as_record({"request_id": to_cancel["request_id"]}, type=cancel_type),
    )

    table = documented_reasons()
    reasons = [reason for reason in recipes if not reason.startswith("(")]
    assert set(reasons) == set(table), "one recipe per row of the README's table"
    await produce(
        kafka_bootstrap,
        settings.requests_topic,
        [(b"one-key", value, headers) for value, headers, _ in recipes.values()],
    )
    async with running_bridge(settings):
        dead = await consume(
            kafka_bootstrap, settings.dead_letter_topic, at_least=len(reasons), timeout=60
        )
        state = await consume(kafka_bootstrap, settings.state_topic, timeout=5, settle=1)

    got = [DeadLetterHeaders.from_kafka(record.headers).reason for record in dead]
    assert got == reasons, "each record got its reason, in order"
    decided = [event_data(r) for r in state if event_data(r)["state"] in ("REJECTED", "UNKNOWN")]
    events = {event["request_id"]: event for event in decided}
    assert len(events) == len(decided), "one REJECTED or UNKNOWN event per request at most"
    assert "CANCELLING" not in [event_data(r)["state"] for r in state], "no cancel took effect"
    for reason, (_, _, data) in recipes.items():
        if reason.startswith("("):
            continue
        documented = table[reason]
        event = events.get(data["request_id"]) if data else None
        if documented.startswith("no"):
            assert event is None, f"{reason}: the table says no state event"
        elif documented.startswith("if"):
            assert data is not None and event is not None, reason
        else:
            assert event is not None, f"{reason}: the table says {documented!r}"
            assert event["reason"]["code"] == reason
            expected = {"UNKNOWN"} if documented == "UNKNOWN" else {"REJECTED", "UNKNOWN"}
            if documented == "yes" or documented.startswith("yes,"):
                expected = {"REJECTED"}
            assert event["state"] in expected, (reason, event["state"])
    output_rejected = DeadLetterHeaders.from_kafka(dead[reasons.index("output-rejected")].headers)
    assert "was created" in output_rejected.message
