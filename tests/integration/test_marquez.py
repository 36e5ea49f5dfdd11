"""The Marquez backend against the real Marquez 0.50.0 server (built from its source by
devenv/marquez.py, or MARQUEZ_URL), with the real broker; and OpenLineage events for ADF
runs, sent to that Marquez."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bridge.backends import FollowedRun
from bridge.backends.marquez import MarquezBackend, MarquezTarget, run_id_for
from contracts import DeadLetterHeaders, MarquezRun, RunState
from devenv.client import as_record, consume, create_topics, event_data, produce, run_request
from emulators.adf import AdminClient, BackgroundServer
from tests.support import running_bridge, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.marquez]

CANCEL = "org.runbridge.run.cancel-requested.v1"
FAST = {"min_interval_seconds": 0.2, "max_interval_seconds": 1}


def marquez_target(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "system": "marquez",
        "base_url": url,
        "create_missing": True,
        "tracking": FAST,
        **overrides,
    }


def marquez_request(namespace: str, job: str, **run: Any) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "target": "marquez",
        "run": {"system": "marquez", "namespace": namespace, "job": job, **run},
    }


def states_of(records: list[Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    ids: set[str] = set()
    for record in records:
        event_id = dict(record.headers)["ce_id"]
        if event_id in ids:
            continue
        ids.add(event_id)
        data = event_data(record)
        seen[data["request_id"]].append(data["state"])
    return seen


def ended(*request_ids: str) -> Any:
    def condition(records: list[Any]) -> bool:
        done = {e["request_id"] for r in records if (e := event_data(r))["terminal"]}
        return done >= set(request_ids)

    return condition


async def test_requests_become_marquez_runs_that_are_followed_through_their_states(
    kafka_bootstrap: str, marquez_url: str, adf_server: BackgroundServer
) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        kafka_bootstrap, adf_server.url, targets={"marquez": marquez_target(marquez_url)}
    )
    await create_topics(settings, partitions=3)
    completes = marquez_request(
        namespace,
        "load daily",
        nominalStartTime="2026-11-25T00:00:00+00:00",
        nominalEndTime="2026-11-26T00:00:00+00:00",
        args={"day": "2026-11-25", "full": True, "rows": 3},
    )
    fails = marquez_request(namespace, "load daily")
    key = b"marquez"
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api, running_bridge(settings):
        await produce(
            kafka_bootstrap,
            settings.requests_topic,
            [(key, *as_record(completes)), (key, *as_record(completes)), (key, *as_record(fails))],
        )
        created = await consume(kafka_bootstrap, settings.created_topic, at_least=3, timeout=30)
        run_id = run_id_for(completes["request_id"])
        listed = (await api.get(f"/api/v1/namespaces/{namespace}/jobs/load daily/runs")).json()
        assert listed["totalCount"] == 2, "the duplicate request created nothing new"
        run = (await api.get(f"/api/v1/jobs/runs/{run_id}")).json()
        assert run["args"] == {"day": "2026-11-25", "full": "true", "rows": "3"}
        assert run["nominalStartTime"].startswith("2026-11-25T00:00:00")
        assert run["nominalEndTime"].startswith("2026-11-26T00:00:00")
        # a job elsewhere runs them, and tells Marquez
        failing_id = run_id_for(fails["request_id"])
        for path in (
            f"{run_id}/start",
            f"{run_id}/complete",
            f"{failing_id}/start",
            f"{failing_id}/fail",
        ):
            assert (await api.post(f"/api/v1/jobs/runs/{path}")).status_code == 200
        states = await consume(
            kafka_bootstrap,
            settings.state_topic,
            until=ended(completes["request_id"], fails["request_id"]),
            timeout=30,
        )
    assert [event_data(r)["run_id"] for r in created] == [run_id, run_id, failing_id]
    seen = states_of(states)
    assert seen[completes["request_id"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert seen[fails["request_id"]] == ["QUEUED", "RUNNING", "FAILED"]


async def test_a_cancel_aborts_the_marquez_run(
    kafka_bootstrap: str, marquez_url: str, adf_server: BackgroundServer
) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        kafka_bootstrap, adf_server.url, targets={"marquez": marquez_target(marquez_url)}
    )
    await create_topics(settings, partitions=1)
    request = marquez_request(namespace, "export")
    cancel = {"request_id": request["request_id"], "reason": "not needed"}
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api, running_bridge(settings):
        await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
        await consume(kafka_bootstrap, settings.created_topic, at_least=1, timeout=30)
        run_id = run_id_for(request["request_id"])
        await api.post(f"/api/v1/jobs/runs/{run_id}/start")
        await produce(
            kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(cancel, type=CANCEL))]
        )
        states = await consume(
            kafka_bootstrap, settings.state_topic, until=ended(request["request_id"]), timeout=30
        )
        run = (await api.get(f"/api/v1/jobs/runs/{run_id}")).json()
    assert run["state"] == "ABORTED"
    assert states_of(states)[request["request_id"]][-2:] == ["CANCELLING", "CANCELLED"]


async def test_refusals_carry_marquez_s_message_and_bad_args_never_leave_the_bridge(
    kafka_bootstrap: str, marquez_url: str, adf_server: BackgroundServer
) -> None:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        kafka_bootstrap,
        adf_server.url,
        targets={
            "marquez": marquez_target(marquez_url),
            "strict": marquez_target(marquez_url, create_missing=False),
        },
    )
    await create_topics(settings, partitions=1)
    missing_namespace = marquez_request(f"absent-{uuid.uuid4().hex[:6]}", "job")
    missing_namespace["target"] = "strict"
    missing_job = marquez_request(namespace, "no-such-job")
    missing_job["target"] = "strict"
    nested = marquez_request(namespace, "job", args={"deep": {"a": 1}})
    taken = marquez_request(namespace, "job-b")
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api:
        # the namespace exists, and another job already holds taken's run id
        await api.put(f"/api/v1/namespaces/{namespace}", json={"ownerName": "me"})
        for job in ("job-a", "job-b"):
            await api.put(
                f"/api/v1/namespaces/{namespace}/jobs/{job}",
                json={"type": "BATCH", "inputs": [], "outputs": []},
            )
        held = await api.post(
            f"/api/v1/namespaces/{namespace}/jobs/job-a/runs",
            json={"id": run_id_for(taken["request_id"])},
        )
        assert held.status_code == 201
    bad = [missing_namespace, missing_job, nested, taken]
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(r)) for r in bad])
    async with running_bridge(settings):
        dead = await consume(kafka_bootstrap, settings.dead_letter_topic, at_least=4, timeout=30)
        state = await consume(kafka_bootstrap, settings.state_topic, at_least=4, timeout=10)
    errors = [DeadLetterHeaders.from_kafka(r.headers) for r in dead]
    assert [e.reason for e in errors] == [
        "backend-rejected",
        "backend-rejected",
        "contract-violation",
        "backend-rejected",
    ]
    assert "Namespace" in errors[0].message and "not found" in errors[0].message
    assert "Job 'no-such-job' not found" in errors[1].message
    assert "deep" in errors[2].message
    assert "held by another job" in errors[3].message
    assert {event_data(r)["state"] for r in state} == {"REJECTED"}


async def test_a_run_marquez_already_has_under_the_request_s_id_becomes_the_request_s_run(
    kafka_bootstrap: str, marquez_url: str, adf_server: BackgroundServer
) -> None:
    """A request's run id is derived from its request id, so Marquez itself recognises a
    repeat the ledger does not know of (say, the run was made by an instance that then
    lost its ledger): "Run '…' already exists". The run is on the job's list, so it is the
    request's run; nothing else is created. The namespace and the job existed: they are
    left as they were (create_missing only creates what Marquez answers 404 for)."""
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    job = f"/api/v1/namespaces/{namespace}/jobs/load daily"
    settings = settings_for(
        kafka_bootstrap, adf_server.url, targets={"marquez": marquez_target(marquez_url)}
    )
    await create_topics(settings, partitions=1)
    request = marquez_request(namespace, "load daily")
    run_id = run_id_for(request["request_id"])
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api:
        await api.put(f"/api/v1/namespaces/{namespace}", json={"ownerName": "data-team"})
        await api.put(
            job, json={"type": "BATCH", "inputs": [], "outputs": [], "description": "kept"}
        )
        assert (await api.post(f"{job}/runs", json={"id": run_id})).status_code == 201
        again = await api.post(f"{job}/runs", json={"id": run_id})
        assert again.status_code == 400 and "already exists" in again.json()["message"]

        await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
        async with running_bridge(settings):
            created = await consume(kafka_bootstrap, settings.created_topic, at_least=1, timeout=30)
        listed = (await api.get(f"{job}/runs")).json()
        owner = (await api.get(f"/api/v1/namespaces/{namespace}")).json()["ownerName"]
        description = (await api.get(job)).json()["description"]
    assert [event_data(r)["run_id"] for r in created] == [run_id]
    assert [r["id"] for r in listed["runs"]] == [run_id], "no second run"
    assert (owner, description) == ("data-team", "kept")


async def test_a_long_history_of_a_job_costs_polls_and_repeats_a_page_or_two(
    marquez_url: str,
) -> None:
    """Marquez lists a job's runs started_at DESC NULLS LAST: runs started lately first,
    runs not started yet last. A poll reads the first page and GETs the rest; a repeat
    reads the first and the last page. (The backend on its own, with its read count.)"""
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    job = f"/api/v1/namespaces/{namespace}/jobs/load daily"
    spec = MarquezRun(namespace=namespace, job="load daily")
    target = MarquezTarget.model_validate(marquez_target(marquez_url, create_missing=False))
    async with (
        httpx.AsyncClient(base_url=marquez_url, timeout=10) as api,
        contextlib.aclosing(MarquezBackend(target)) as backend,
    ):
        await api.put(f"/api/v1/namespaces/{namespace}", json={"ownerName": "data-team"})
        await api.put(job, json={"type": "BATCH", "inputs": [], "outputs": []})
        for _ in range(130):  # a history longer than a page
            history = (await api.post(f"{job}/runs", json={})).json()["id"]
            await api.post(f"/api/v1/jobs/runs/{history}/start")
            await api.post(f"/api/v1/jobs/runs/{history}/complete")
        requests = [str(uuid.uuid4()) for _ in range(3)]
        followed = [
            FollowedRun((await backend.create_run(spec, request_id=r)).run_id, spec)
            for r in requests
        ]
        since = datetime.now(UTC)

        reads = backend.reads
        poll = await backend.poll(followed, since=since)
        assert {s.run_id: s.state for s in poll.statuses} == {
            f.run_id: RunState.QUEUED for f in followed
        }
        assert poll.reads == backend.reads - reads == 1 + 3, "first page, then a GET each"

        for f in followed[:2]:
            await api.post(f"/api/v1/jobs/runs/{f.run_id}/start")
        poll = await backend.poll(followed, since=since)
        assert [s.state for s in poll.statuses] == [RunState.RUNNING] * 2 + [RunState.QUEUED]
        assert poll.reads == 1 + 1, "the started ones are on the first page"

        reads = backend.reads
        again = await backend.create_run(spec, request_id=requests[2])
        assert again.run_id == followed[2].run_id
        assert backend.reads - reads == 2, "the first page and the last, where runs not started are"
        assert (await api.get(f"{job}/runs")).json()["totalCount"] == 130 + 3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.adf
async def test_adf_runs_show_up_in_marquez_as_openlineage_events_and_go_on_without_it(
    kafka_bootstrap: str, marquez_url: str, adf_server: BackgroundServer, adf: AdminClient
) -> None:
    adf.configure(queue_seconds=0.2, run_seconds=0.8)
    namespace = f"lineage-{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        kafka_bootstrap,
        adf_server.url,
        lineage={"url": marquez_url, "namespace": namespace},
    )
    await create_topics(settings, partitions=1)
    request = run_request("copy-sales")
    await produce(kafka_bootstrap, settings.requests_topic, [(b"k", *as_record(request))])
    async with running_bridge(settings) as bridge:
        await consume(
            kafka_bootstrap, settings.state_topic, until=ended(request["request_id"]), timeout=30
        )
    assert bridge.metrics.lineage_sent == 2
    async with httpx.AsyncClient(base_url=marquez_url, timeout=10) as api:
        run = (await api.get(f"/api/v1/jobs/runs/{request['request_id']}")).json()
        events = (await api.get("/api/v1/events/lineage", params={"limit": 200})).json()["events"]
    assert run["state"] == "COMPLETED"
    mine = [e for e in events if e["run"]["runId"] == request["request_id"]]
    assert sorted(e["eventType"] for e in mine) == ["COMPLETE", "START"]
    assert {e["job"]["name"] for e in mine} == {"adf-local.copy-sales"}

    # Marquez away: the runs go on, and what could not be sent is counted
    away = settings_for(
        kafka_bootstrap,
        adf_server.url,
        lineage={"url": f"http://127.0.0.1:{closed_port()}", "max_attempts": 2},
    )
    await create_topics(away, partitions=1)
    others = [run_request("copy-sales") for _ in range(3)]
    await produce(kafka_bootstrap, away.requests_topic, [(b"k", *as_record(r)) for r in others])
    async with running_bridge(away) as bridge:
        states = await consume(
            kafka_bootstrap,
            away.state_topic,
            until=ended(*(r["request_id"] for r in others)),
            timeout=30,
        )
    assert all(s[-1] == "SUCCEEDED" for s in states_of(states).values())
    assert bridge.metrics.lineage_failed >= 3 and bridge.metrics.lineage_sent == 0
