"""The Marquez client's request building and failure rules, against an in-memory transport.
(The same client runs against the real Marquez 0.50.0 in tests/integration/test_marquez.py.)"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bridge.backends import FollowedRun
from bridge.backends.marquez import MarquezBackend, MarquezTarget, run_id_for
from bridge.errors import AuthenticationFailed, BackendRejected, InvalidIdentifier
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


async def test_create_missing_puts_the_namespace_and_a_batch_job_first() -> None:
    seen: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        return httpx.Response(
            201 if request.method == "POST" else 200, json=run_json(run_id_for(REQUEST_ID))
        )

    backend = marquez(answer, create_missing=True, owner="data-team")
    await backend.create_run(run(), request_id=REQUEST_ID)
    await backend.create_run(run(), request_id=str(uuid.uuid4()))
    assert seen[:2] == [
        ("PUT", "/api/v1/namespaces/sales", {"ownerName": "data-team"}),
        (
            "PUT",
            "/api/v1/namespaces/sales/jobs/load daily",
            {"type": "BATCH", "inputs": [], "outputs": []},
        ),
    ]
    assert [method for method, _, _ in seen] == ["PUT", "PUT", "POST", "POST"], "once per job"


@pytest.mark.parametrize("namespace", ["sales ns", "a" * 1025, "ns?x"])
async def test_a_namespace_marquez_would_not_take_never_leaves_the_bridge(namespace: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call")

    with pytest.raises((InvalidIdentifier, ValidationError)):
        await marquez(answer).create_run(run(namespace=namespace), request_id=REQUEST_ID)


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
