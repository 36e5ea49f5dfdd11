"""The Marquez client's request building and failure rules, against an in-memory transport.
(The same client runs against the real Marquez 0.50.0 in tests/integration/test_marquez.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bridge.backends import FollowedRun
from bridge.backends.marquez import MarquezBackend, MarquezTarget, run_id_for
from bridge.errors import AuthenticationFailed, BackendRejected, BridgeError, InvalidIdentifier
from contracts import MarquezRun, RunRequestedV1, RunState

TARGET = MarquezTarget(base_url="http://marquez.test")
REQUEST_ID = "3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52"


def marquez(handler: Any, **target: Any) -> MarquezBackend:
    settings = MarquezTarget.model_validate({**TARGET.model_dump(), **target})
    return MarquezBackend(settings, transport=httpx.MockTransport(handler))


def run(**fields: Any) -> MarquezRun:
    return MarquezRun.model_validate({"namespace": "sales", "job": "load daily", **fields})


def run_json(run_id: str, state: str = "NEW") -> dict[str, Any]:
    return {"id": run_id, "state": state, "args": {}, "createdAt": "2026-11-25T01:00:00Z"}


async def test_a_run_is_created_with_an_id_derived_from_the_request_and_args_as_text() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=run_json(run_id_for(REQUEST_ID)))

    spec = run(
        nominalStartTime="2026-11-25T00:00:00+01:00",
        args={"day": "2026-11-25", "full": True, "rows": 3, "ratio": 0.5},
    )
    created = await marquez(answer).create_run(spec, request_id=REQUEST_ID)
    assert created.run_id == run_id_for(REQUEST_ID) == str(uuid.UUID(created.run_id))
    [post] = seen
    assert post.url.raw_path == b"/api/v1/namespaces/sales/jobs/load%20daily/runs"
    assert json.loads(post.content) == {
        "id": created.run_id,
        "nominalStartTime": "2026-11-25T00:00:00+01:00",
        "args": {"day": "2026-11-25", "full": "true", "rows": "3", "ratio": "0.5"},
    }


async def test_a_repeat_is_recognised_by_marquez_and_is_the_same_run_when_it_is_this_job_s() -> (
    None
):
    run_id = run_id_for(REQUEST_ID)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            message = f"Run '{run_id}' already exists for 'load daily' under namespace 'sales'."
            return httpx.Response(400, json={"code": 400, "message": message})
        return httpx.Response(200, json={"runs": [run_json(run_id)], "totalCount": 1})

    created = await marquez(answer).create_run(run(), request_id=REQUEST_ID)
    assert created.run_id == run_id


async def test_a_run_id_held_by_another_job_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(400, json={"code": 400, "message": "Run 'x' already exists"})
        return httpx.Response(200, json={"runs": [], "totalCount": 0})

    with pytest.raises(BackendRejected, match="held by another job"):
        await marquez(answer).create_run(run(), request_id=REQUEST_ID)


async def test_malformed_input_answered_with_500_and_code_400_is_a_refusal_not_a_retry() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"code": 400, "message": "Unable to process JSON"})

    with pytest.raises(BackendRejected, match="Unable to process JSON"):
        await marquez(answer).create_run(run(), request_id=REQUEST_ID)


async def test_a_missing_job_is_refused_with_marquez_s_message() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": 404, "message": "Job 'load daily' not found."})

    with pytest.raises(BackendRejected, match="Job 'load daily' not found"):
        await marquez(answer).create_run(run(), request_id=REQUEST_ID)


async def test_create_missing_creates_a_namespace_and_a_batch_job_marquez_does_not_have() -> None:
    seen: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(404, json={"code": 404, "message": "not found."})
        return httpx.Response(
            201 if request.method == "POST" else 200, json=run_json(run_id_for(REQUEST_ID))
        )

    backend = marquez(answer, create_missing=True, owner="data-team")
    await backend.create_run(run(), request_id=REQUEST_ID)
    await backend.create_run(run(), request_id=str(uuid.uuid4()))
    assert seen[:4] == [
        ("GET", "/api/v1/namespaces/sales", None),
        ("PUT", "/api/v1/namespaces/sales", {"ownerName": "data-team"}),
        ("GET", "/api/v1/namespaces/sales/jobs/load daily", None),
        (
            "PUT",
            "/api/v1/namespaces/sales/jobs/load daily",
            {"type": "BATCH", "inputs": [], "outputs": []},
        ),
    ]
    assert [method for method, _, _ in seen[4:]] == ["POST", "POST"], "looked for once per job"


async def test_create_missing_leaves_a_namespace_and_a_job_that_exist_as_they_are() -> None:
    """A PUT would give the namespace a new owner, and reset the job (type, description,
    location, inputs): what exists is only read."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            return httpx.Response(201, json=run_json(run_id_for(REQUEST_ID)))
        return httpx.Response(200, json={"name": "exists"})

    backend = marquez(answer, create_missing=True)
    await backend.create_run(run(), request_id=REQUEST_ID)
    await backend.create_run(run(job="export"), request_id=str(uuid.uuid4()))
    await backend.create_run(run(job="export"), request_id=str(uuid.uuid4()))
    assert seen == [
        "GET /api/v1/namespaces/sales",
        "GET /api/v1/namespaces/sales/jobs/load daily",
        "POST /api/v1/namespaces/sales/jobs/load daily/runs",
        "GET /api/v1/namespaces/sales/jobs/export",
        "POST /api/v1/namespaces/sales/jobs/export/runs",
        "POST /api/v1/namespaces/sales/jobs/export/runs",
    ]


async def test_create_missing_creates_nothing_when_the_look_fails_otherwise_than_404() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(403, json={"code": 403, "message": "forbidden"})

    with pytest.raises(AuthenticationFailed):
        await marquez(answer, create_missing=True).create_run(run(), request_id=REQUEST_ID)
    assert seen == ["GET"]


@pytest.mark.parametrize("namespace", ["sales ns", "a" * 1025, "ns?x"])
async def test_a_namespace_marquez_would_not_take_never_leaves_the_bridge(namespace: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call")

    with pytest.raises((InvalidIdentifier, ValidationError)):
        await marquez(answer).create_run(run(namespace=namespace), request_id=REQUEST_ID)


@pytest.mark.parametrize(
    "names", [{"namespace": "."}, {"namespace": ".."}, {"job": "."}, {"job": ".."}]
)
async def test_dot_names_are_refused_before_any_call(names: dict[str, str]) -> None:
    """quote() leaves dots alone and a URL resolves "." and ".." away: job ".." would
    name /api/v1/namespaces/sales/runs."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call")

    backend = marquez(answer, create_missing=True)
    with pytest.raises(InvalidIdentifier, match="path segments"):
        await backend.create_run(run(**names), request_id=REQUEST_ID)


class FakeMarquez:
    """Just enough of Marquez's reads of runs: a job's run list, in Marquez's order
    (started_at DESC NULLS LAST: runs not started yet come last) a page per limit and
    offset, and a run by id. A deleted job's list answers 404; every request is kept."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        self.requests: list[httpx.Request] = []

    def add(self, job: str, *, started: int = 0, new: list[str] | None = None) -> list[str]:
        """``started`` runs of the job's history, then the runs ``new`` (not started)."""
        history = [run_json(str(uuid.uuid4()), "COMPLETED") for _ in range(started)]
        self.jobs.setdefault(job, []).extend([*history, *(run_json(i) for i in new or [])])
        return [r["id"] for r in history]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.startswith("/api/v1/jobs/runs/"):
            run_id = path.rsplit("/", 1)[1]
            for runs in self.jobs.values():
                for found in runs:
                    if found["id"] == run_id:
                        return httpx.Response(200, json=found)
            return httpx.Response(404, json={"code": 404, "message": f"Run '{run_id}' not found."})
        if request.method == "GET" and path.endswith("/runs"):
            job = path.rsplit("/", 2)[1]
            if job in self.deleted or job not in self.jobs:
                return httpx.Response(404, json={"code": 404, "message": f"Job '{job}' not found."})
            limit = int(request.url.params["limit"])
            offset = int(request.url.params["offset"])
            runs = self.jobs[job]
            return httpx.Response(
                200, json={"runs": runs[offset : offset + limit], "totalCount": len(runs)}
            )
        if request.method == "POST" and path.endswith("/runs"):
            run_id = json.loads(request.content)["id"]
            message = f"Run '{run_id}' already exists for 'x' under namespace 'sales'."
            return httpx.Response(400, json={"code": 400, "message": message})
        raise AssertionError(f"unexpected {request.method} {path}")

    def reads(self) -> list[str]:
        """The reads made, as "list <offset>" or "get <run id>"."""
        return [
            f"list {r.url.params['offset']}"
            if r.url.path.endswith("/runs")
            else f"get {r.url.path.rsplit('/', 1)[1]}"
            for r in self.requests
            if r.method == "GET"
        ]


def followed(*run_ids: str, job: str = "load daily") -> list[FollowedRun]:
    return [FollowedRun(run_id, run(job=job)) for run_id in run_ids]


async def test_a_poll_reads_one_page_of_a_job_s_runs_and_gets_the_followed_runs_not_on_it() -> None:
    """Marquez lists a job's runs started_at DESC NULLS LAST: the runs started lately are
    on the first page, runs still NEW are after a long history. So a poll reads that page
    and GETs the others: never more than one read per followed run and one per job."""
    fake = FakeMarquez()
    queued = [str(uuid.uuid4()) for _ in range(3)]
    history = fake.add("load daily", started=5_000, new=queued)
    backend = marquez(fake)
    since = datetime(2026, 11, 25, tzinfo=UTC)

    poll = await backend.poll(followed(*queued), since=since)
    assert sorted(s.run_id for s in poll.statuses) == sorted(queued)
    assert {s.state for s in poll.statuses} == {RunState.QUEUED}
    assert fake.reads() == ["list 0", *(f"get {i}" for i in sorted(queued))]
    assert poll.reads == 4 == 1 + len(queued), "not 51 pages of history"
    assert fake.requests[0].url.params["limit"] == "100"

    fake.requests.clear()
    poll = await backend.poll(followed(history[0], history[99], queued[0]), since=since)
    assert len(poll.statuses) == 3
    assert fake.reads() == ["list 0", f"get {queued[0]}"], (
        "those on the first page are not read again"
    )
    assert poll.reads == 2

    fake.requests.clear()
    poll = await backend.poll(followed(queued[1]), since=since)
    assert fake.reads() == [f"get {queued[1]}"], "one run of a job: one GET, no list"


async def test_a_deleted_job_s_runs_are_read_one_by_one_and_a_vanished_run_spoils_no_other() -> (
    None
):
    """A deleted job's run list answers 404 while its runs still answer a GET; a run that
    answers 404 is left out of the poll (no news to the tracker), and the rest of the
    target is still polled."""
    fake = FakeMarquez()
    mine = [str(uuid.uuid4()) for _ in range(2)]
    fake.add("hidden", new=mine)
    fake.deleted.add("hidden")
    elsewhere = [str(uuid.uuid4()) for _ in range(2)]
    fake.add("load daily", new=elsewhere)
    gone = str(uuid.uuid4())
    backend = marquez(fake)

    poll = await backend.poll(
        [*followed(*mine, gone, job="hidden"), *followed(*elsewhere)],
        since=datetime(2026, 11, 25, tzinfo=UTC),
    )
    assert sorted(s.run_id for s in poll.statuses) == sorted([*mine, *elsewhere])
    assert fake.reads() == [
        "list 0",
        *(f"get {i}" for i in sorted([*mine, gone])),
        "list 0",
    ]
    assert poll.reads == 5


async def test_a_poll_still_fails_on_what_is_not_a_404() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"code": 503, "message": "busy"})

    backend = marquez(answer)
    with pytest.raises(BridgeError):
        await backend.poll(
            followed(str(uuid.uuid4()), str(uuid.uuid4())),
            since=datetime(2026, 11, 25, tzinfo=UTC),
        )


async def test_a_repeat_of_a_run_not_started_yet_is_found_without_reading_the_whole_history() -> (
    None
):
    """Marquez's "already exists" is checked across jobs, so the run must be on this
    job's list to be adopted. A run not started yet is on the last page, read second."""
    fake = FakeMarquez()
    run_id = run_id_for(REQUEST_ID)
    fake.add("load daily", started=5_000, new=[run_id])
    backend = marquez(fake)

    assert (await backend.create_run(run(), request_id=REQUEST_ID)).run_id == run_id
    assert fake.reads() == ["list 0", "list 4901"]

    fake.requests.clear()
    since = datetime(2026, 11, 25, tzinfo=UTC)
    found = await backend.find_runs(run(), request_id=REQUEST_ID, since=since, until=since)
    assert [s.run_id for s in found] == [run_id]
    assert fake.reads() == [f"get {run_id}", "list 0", "list 4901"]


async def test_a_run_id_held_by_another_job_is_refused_only_after_every_page_was_read() -> None:
    fake = FakeMarquez()
    run_id = run_id_for(REQUEST_ID)
    fake.add("load daily", started=250)
    fake.add("other", new=[run_id])
    backend = marquez(fake)

    with pytest.raises(BackendRejected, match="held by another job"):
        await backend.create_run(run(), request_id=REQUEST_ID)
    assert fake.reads() == ["list 0", "list 150", "list 100"], "each page once"
    assert [r.url.params["limit"] for r in fake.requests[1:]] == ["100", "100", "50"]

    # a run that started long ago is found on a page between
    fake.requests.clear()
    old = fake.add("load daily", started=1)[0]
    fake.jobs["load daily"].insert(120, fake.jobs["load daily"].pop())
    assert await backend._is_run_of(run(), old)
    assert fake.reads() == ["list 0", "list 151", "list 100"]


async def test_a_cancel_aborts_a_live_run_and_leaves_an_ended_one_alone() -> None:
    calls: list[str] = []
    state = "RUNNING"

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json=run_json(run_id_for(REQUEST_ID), state))

    backend = marquez(answer)
    assert await backend.cancel_run(FollowedRun(run_id_for(REQUEST_ID), run()), None) is True
    state = "COMPLETED"
    assert await backend.cancel_run(FollowedRun(run_id_for(REQUEST_ID), run()), None) is False
    assert [c.split()[0] for c in calls] == ["GET", "POST", "GET"], "an ended run is not aborted"
    assert calls[1].endswith("/abort")


async def test_a_gateway_credential_goes_into_its_header() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, json={"code": 401, "message": "no"})

    backend = marquez(answer, credential={"type": "bearer", "value": "t0ken"})
    with pytest.raises(AuthenticationFailed):
        await backend.get_run(FollowedRun(run_id_for(REQUEST_ID), run()))
    assert seen[0].headers["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("NEW", RunState.QUEUED),
        ("RUNNING", RunState.RUNNING),
        ("COMPLETED", RunState.SUCCEEDED),
        ("FAILED", RunState.FAILED),
        ("ABORTED", RunState.CANCELLED),
        ("OTHER", None),
    ],
)
async def test_marquez_states_map_to_the_bridge_s(state: str, expected: RunState | None) -> None:
    backend = marquez(
        lambda request: httpx.Response(200, json=run_json(run_id_for(REQUEST_ID), state))
    )
    status = await backend.get_run(FollowedRun(run_id_for(REQUEST_ID), run()))
    assert (status.state, status.backend_status) == (expected, state)


@pytest.mark.parametrize("args", [{"x": None}, {"x": [1]}, {"x": {"y": 1}}, {"x": 1e999}])
def test_args_that_marquez_cannot_store_are_refused_by_the_contract(args: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RunRequestedV1.model_validate(
            {
                "request_id": REQUEST_ID,
                "target": "m",
                "run": {"system": "marquez", "namespace": "n", "job": "j", "args": args},
            }
        )


def test_nominal_times_need_an_offset() -> None:
    with pytest.raises(ValidationError):
        run(nominalStartTime="2026-11-25T00:00:00")
