"""The ADF client's request building and failure rules, against an in-memory transport.

The same client runs against the emulator over real sockets in tests/integration.
"""

import json

import httpx
import pytest
from pydantic import ValidationError

from bridge.auth import AccessToken
from bridge.backends import FollowedRun
from bridge.backends.adf import (
    AdfBackend,
    AdfTarget,
    create_run_request,
    run_status,
    segment,
)
from bridge.errors import (
    AuthenticationFailed,
    BackendRejected,
    InvalidIdentifier,
    TransientBackendError,
)
from contracts import AdfCancel, AdfRun, RunState

TARGET = AdfTarget.model_validate(
    {
        "base_url": "https://arm.test",
        "subscription_id": "12345678-1234-1234-1234-12345678abcd",
        "resource_group": "rg",
        "factory": "my-factory",
        "credential": {
            "type": "client_secret",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "s",
        },
    }
)


class StaticTokens:
    def __init__(self) -> None:
        self.fetched = 0

    async def fetch(self) -> AccessToken:
        self.fetched += 1
        return AccessToken(token=f"token-{self.fetched}", expires_at=4e9)

    async def aclose(self) -> None:
        pass


def followed(run_id: str) -> FollowedRun:
    return FollowedRun(run_id, AdfRun(pipelineName="p"))  # type: ignore[call-arg]


def backend(handler) -> tuple[AdfBackend, StaticTokens]:  # type: ignore[no-untyped-def]
    tokens = StaticTokens()
    return AdfBackend(TARGET, tokens=tokens, transport=httpx.MockTransport(handler)), tokens


def test_every_recovery_option_goes_into_the_query() -> None:
    run = AdfRun.model_validate(
        {
            "pipelineName": "copy data(1)",
            "referencePipelineRunId": "2f7fdb90",
            "isRecovery": True,
            "startActivityName": "Copy1",
        }
    )
    path, query, body = create_run_request(TARGET, run)
    assert path.endswith("/factories/my-factory/pipelines/copy%20data%281%29/createRun")
    assert query == {
        "api-version": "2018-06-01",
        "referencePipelineRunId": "2f7fdb90",
        "isRecovery": "true",
        "startActivityName": "Copy1",
    }
    assert body == {}


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("pipeline", "a/b"),
        ("pipeline", "../x"),
        ("pipeline", "x?y"),
        ("pipeline", "a" * 261),
        ("factory", "ab"),
        ("factory", "-ab"),
        ("resource group", "rg/../../x"),
        ("run id", "x/../y"),
    ],
)
def test_names_that_break_the_rules_never_reach_a_url(kind: str, value: str) -> None:
    with pytest.raises(InvalidIdentifier):
        segment(kind, value)


async def test_create_run_sends_parameters_and_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"runId": "r-1"})

    adf, _ = backend(handler)
    created = await adf.create_run(
        AdfRun.model_validate({"pipelineName": "p", "parameters": {"n": 1}}), request_id="q-1"
    )
    assert created.run_id == "r-1"
    assert seen[0].headers["Authorization"] == "Bearer token-1"
    assert seen[0].headers["x-ms-client-request-id"] == "q-1"
    assert json.loads(seen[0].content) == {"n": 1}


async def test_a_401_fetches_a_new_token_once() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer token-1":
            return httpx.Response(401, json={"error": {"code": "ExpiredAuthenticationToken"}})
        return httpx.Response(200, json={"runId": "r-2"})

    adf, tokens = backend(handler)
    assert (await adf.create_run(AdfRun(pipelineName="p"), request_id="q")).run_id == "r-2"  # type: ignore[call-arg]
    assert tokens.fetched == 2


async def test_a_401_with_a_fresh_token_is_an_authentication_failure() -> None:
    adf, tokens = backend(lambda request: httpx.Response(401, json={"error": {"code": "X"}}))
    with pytest.raises(AuthenticationFailed):
        await adf.create_run(AdfRun(pipelineName="p"), request_id="q")  # type: ignore[call-arg]
    assert tokens.fetched == 2


@pytest.mark.parametrize(
    ("status", "headers", "transient", "ambiguous"),
    [
        (429, {"Retry-After": "3"}, True, False),
        (503, {"Retry-After": "1"}, True, False),
        (503, {}, True, True),
        (500, {}, True, True),
        (502, {}, True, True),
        (504, {}, True, True),
        (408, {}, True, False),
        (400, {}, False, False),
        (403, {}, False, False),
        (404, {}, False, False),
    ],
)
async def test_status_codes_are_classified(
    status: int, headers: dict[str, str], transient: bool, ambiguous: bool
) -> None:
    body = {"error": {"code": "Code", "message": "text"}}
    adf, _ = backend(lambda request: httpx.Response(status, json=body, headers=headers))
    with pytest.raises((TransientBackendError, BackendRejected)) as caught:
        await adf.create_run(AdfRun(pipelineName="p"), request_id="q")  # type: ignore[call-arg]
    error = caught.value
    assert isinstance(error, TransientBackendError) is transient
    assert error.code == "Code"
    if isinstance(error, TransientBackendError):
        assert error.ambiguous is ambiguous
        if "Retry-After" in headers:
            assert error.retry_after == float(headers["Retry-After"])


@pytest.mark.parametrize(
    ("exc", "ambiguous"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow"), False),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("dropped"), True),
    ],
)
async def test_transport_errors_are_ambiguous_once_the_request_may_have_arrived(
    exc: Exception, ambiguous: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    adf, _ = backend(handler)
    with pytest.raises(TransientBackendError) as caught:
        await adf.create_run(AdfRun(pipelineName="p"), request_id="q")  # type: ignore[call-arg]
    assert caught.value.ambiguous is ambiguous
    with pytest.raises(TransientBackendError) as caught:
        await adf.get_run(followed("r-1"))
    assert caught.value.ambiguous is False, "reads are safe to repeat"


async def test_get_run_maps_adf_status_to_run_state() -> None:
    adf, _ = backend(
        lambda request: httpx.Response(200, json={"runId": "r", "status": "InProgress"})
    )
    status = await adf.get_run(followed("r"))
    assert (status.state, status.backend_status) == (RunState.RUNNING, "InProgress")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Queued", RunState.QUEUED),
        ("InProgress", RunState.RUNNING),
        ("Canceling", RunState.CANCELLING),
        ("Cancelled", RunState.CANCELLED),
        ("Succeeded", RunState.SUCCEEDED),
        ("Failed", RunState.FAILED),
        ("Paused", None),
    ],
)
def test_every_adf_status_has_its_state_and_an_unknown_one_stays_raw(
    status: str, state: RunState | None
) -> None:
    mapped = run_status({"runId": "r", "status": status, "message": "m"})
    assert (mapped.state, mapped.backend_status, mapped.message) == (state, status, "m")


def test_a_subscription_id_that_is_not_a_uuid_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="subscription_id"):
        AdfTarget.model_validate(
            {**TARGET.model_dump(mode="json"), "subscription_id": "my-subscription"}
        )


async def test_cancelling_a_finished_run_says_so_rather_than_failing() -> None:
    body = {"error": {"code": "PipelineRunNotRunning", "message": "done"}}
    adf, _ = backend(lambda request: httpx.Response(400, json=body))
    assert await adf.cancel_run(followed("r-1"), None) is False


@pytest.mark.parametrize(
    ("options", "recursive"), [(None, "false"), ({"isRecursive": True}, "true")]
)
async def test_a_cancel_is_recursive_only_when_asked(
    options: dict[str, bool] | None, recursive: str
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    adf, _ = backend(answer)
    cancel = AdfCancel.model_validate(options) if options is not None else None
    assert await adf.cancel_run(followed("r-1"), cancel) is True
    assert seen[0].url.params["isRecursive"] == recursive


@pytest.mark.parametrize(
    ("sent", "stored", "match"),
    [
        ({"day": "2026-11-25"}, {"day": "2026-11-25", "default": "x"}, True),
        ({"n": 3}, {"n": "3"}, True),
        ({"n": 3}, {"n": "3.0"}, True),
        ({"ratio": 0.5}, {"ratio": "0.5"}, True),
        ({"flag": True}, {"flag": "True"}, True),
        ({"flag": True}, {"flag": "true"}, True),
        ({"flag": True}, {"flag": "1"}, False),
        ({"ids": [1, 2]}, {"ids": "[1,2]"}, True),
        ({"ids": [1, 2]}, {"ids": "[\r\n  1,\r\n  2\r\n]"}, True),  # Newtonsoft, indented
        ({"cfg": {"a": 1, "b": [True]}}, {"cfg": '{\n  "b": [true],\n  "a": 1\n}'}, True),
        ({"cfg": {"a": 1}}, {"cfg": '{"a": 2}'}, False),
        ({"ids": [1, 2]}, {"ids": "[2,1]"}, False),
        ({"day": "2026-11-25"}, {"day": "2026-11-26"}, False),
        ({"day": "2026-11-25"}, {}, False),
        ({"n": 3}, {"n": 3}, True),  # already typed, should ADF ever answer so
        ({}, None, True),
        ({"n": 3}, None, False),
    ],
)
def test_parameters_read_back_match_what_was_sent_however_adf_wrote_them(
    sent: dict, stored: object, match: bool
) -> None:
    from bridge.backends.adf._status import parameters_match

    assert parameters_match(sent, stored) is match


async def test_find_runs_follows_continuation_tokens_and_keeps_only_matching_runs() -> None:
    from datetime import UTC, datetime, timedelta

    since = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    pages = [
        {
            "value": [
                {
                    "runId": "other-params",
                    "pipelineName": "p",
                    "status": "Queued",
                    "parameters": {"day": "2026-11-24"},
                    "lastUpdated": "2026-11-25T01:01:00Z",
                },
                {
                    "runId": "mine",
                    "pipelineName": "p",
                    "status": "InProgress",
                    "parameters": {"day": "2026-11-25", "x": "default"},
                    "runStart": "2026-11-25T01:00:30Z",
                    "lastUpdated": "2026-11-25T01:01:00Z",
                },
            ],
            "continuationToken": "page-2",
        },
        {
            "value": [
                {
                    "runId": "too-early",
                    "pipelineName": "p",
                    "status": "Succeeded",
                    "parameters": {"day": "2026-11-25"},
                    "runStart": "2026-11-25T00:59:00Z",
                    "lastUpdated": "2026-11-25T01:02:00Z",
                },
            ]
        },
    ]
    bodies: list[dict] = []

    def arm(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        return httpx.Response(200, json=pages[len(bodies) - 1])

    client, _ = backend(arm)
    run = AdfRun(pipelineName="p", parameters={"day": "2026-11-25"})  # type: ignore[call-arg]
    found = await client.find_runs(
        run, request_id="r", since=since, until=since + timedelta(minutes=10)
    )
    assert [status.run_id for status in found] == ["mine"]
    assert [b.get("continuationToken") for b in bodies] == [None, "page-2"]
    assert bodies[0]["filters"] == [
        {"operand": "PipelineName", "operator": "Equals", "values": ["p"]}
    ]
    assert bodies[0]["lastUpdatedAfter"] == "2026-11-25T01:00:00Z"
