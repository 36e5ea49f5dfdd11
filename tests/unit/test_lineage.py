"""OpenLineage RunEvents for bridged runs: what is sent, and that failures stay aside."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from bridge.ledger import LedgerEntry
from bridge.lineage import LineageReporter, LineageSettings, run_event
from bridge.metrics import Metrics
from contracts import RunState, System

AT = datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)


def entry(system: System = System.ADF) -> LedgerEntry:
    return LedgerEntry(
        request_id=uuid.uuid4(),
        target="sales-adf",
        system=system,
        run={"system": "adf", "pipelineName": "copy-sales"},
        intent_at=AT,
        run_id="adf-run-1",
        updated_at=AT,
    )


def test_a_run_s_states_become_start_then_its_end_named_after_target_and_pipeline() -> None:
    e = entry()
    kinds = {
        state: json.loads(body)["eventType"]
        if (body := run_event(e, state, AT, namespace="rb"))
        else None
        for state in RunState
    }
    assert kinds[RunState.RUNNING] == "START"
    assert (kinds[RunState.SUCCEEDED], kinds[RunState.FAILED], kinds[RunState.CANCELLED]) == (
        "COMPLETE",
        "FAIL",
        "ABORT",
    )
    assert kinds[RunState.QUEUED] is None and kinds[RunState.REJECTED] is None
    event = json.loads(run_event(e, RunState.FAILED, AT, namespace="rb", message="boom") or b"")
    assert event["job"] == {**event["job"], "namespace": "rb", "name": "sales-adf.copy-sales"}
    assert event["run"]["runId"] == str(e.request_id), "the same run id on START and the end"
    assert event["run"]["facets"]["errorMessage"]["message"] == "boom"
    assert event["run"]["facets"]["externalQuery"]["externalQueryId"] == "adf-run-1"
    assert event["eventTime"] == AT.isoformat()
    assert event["schemaURL"].startswith("https://openlineage.io/spec/")


async def send_all(reporter: LineageReporter) -> None:
    stop = asyncio.Event()
    stop.set()
    await reporter.run(stop)


async def test_a_failing_endpoint_is_retried_within_bounds_and_never_raises() -> None:
    answers = [503, 503, 201]
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 503)

    metrics = Metrics()
    settings = LineageSettings(url="http://lineage.test", max_attempts=3)
    reporter = LineageReporter(
        settings, metrics, transport=httpx.MockTransport(endpoint), backoff=0
    )
    reporter.report(entry(), RunState.RUNNING, AT, None)
    reporter.report(entry(), RunState.SUCCEEDED, AT, None)
    await send_all(reporter)
    assert (metrics.lineage_sent, metrics.lineage_failed) == (1, 1)
    assert len(seen) == 6, "three attempts each, no more"
    assert seen[0].url.path == "/api/v1/lineage"


async def test_a_refused_event_is_not_sent_again_and_marquez_runs_are_not_reported() -> None:
    seen: list[Any] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(422)

    metrics = Metrics()
    reporter = LineageReporter(
        LineageSettings(url="http://lineage.test"), metrics, transport=httpx.MockTransport(endpoint)
    )
    reporter.report(entry(), RunState.RUNNING, AT, None)
    reporter.report(entry(System.MARQUEZ), RunState.RUNNING, AT, None)
    await send_all(reporter)
    assert len(seen) == 1 and metrics.lineage_failed == 1


async def test_shutdown_drains_within_its_limit_in_all_and_counts_what_is_left() -> None:
    """An endpoint that never answers must not hold up a stopping bridge: the drain has one
    limit for all queued events, and what it cuts off is counted as dropped."""

    async def hanging(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    metrics = Metrics()
    settings = LineageSettings(url="http://lineage.test", drain_seconds=0.2)
    reporter = LineageReporter(settings, metrics, transport=httpx.MockTransport(hanging))
    for _ in range(5):
        reporter.report(entry(), RunState.RUNNING, AT, None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send_all(reporter)
    assert loop.time() - started < 2, "one limit for the whole drain, not one per event"
    assert (metrics.lineage_sent, metrics.lineage_dropped) == (0, 5)


def test_one_source_for_the_api_key() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        LineageSettings(url="http://l.test", api_key_env="K", api_key_file="/run/secrets/k")
