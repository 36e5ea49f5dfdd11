"""The ADF emulator over a real loopback socket: tokens, ARM runs, throttling and faults."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from emulators.adf import AdfEmulatorConfig, AdminClient, BucketSpec, Fault, run_in_thread

pytestmark = pytest.mark.adf

TENANT = "local-tenant"
CLIENT_ID = "runbridge-local"
SECRET = "local-secret"
ARM_SCOPE = "https://management.azure.com/.default"
SUB = "0f6c5b7e-2d1a-4c3b-9e8f-1a2b3c4d5e6f"
FACTORY = f"/subscriptions/{SUB}/resourceGroups/rg-test/providers/Microsoft.DataFactory/factories"
BASE = f"{FACTORY}/fac-1"
API = {"api-version": "2018-06-01"}
FAST: dict[str, Any] = {
    "queue_seconds": 0.2,
    "run_seconds": 0.3,
    "cancel_seconds": 0.2,
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "read_bucket": BucketSpec(capacity=250, refill_per_second=25),
    "write_bucket": BucketSpec(capacity=200, refill_per_second=10),
    "known_pipelines": None,
    "failing_pipelines": frozenset(),
    "pipeline_seconds": {},
    "factories": None,
    "seed": None,
}
WINDOW = {"lastUpdatedAfter": "2000-01-01T00:00:00Z", "lastUpdatedBefore": "2100-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with run_in_thread(AdfEmulatorConfig(**FAST), host="127.0.0.1", port=0) as emu:
        yield emu.url


@pytest.fixture
def admin(emulator_url: str) -> Iterator[AdminClient]:
    with AdminClient(emulator_url) as client:
        client.reset()
        client.configure(**FAST)
        yield client


@pytest.fixture
def http(emulator_url: str, admin: AdminClient) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_url, timeout=5.0) as client:
        yield client


def v2_token(http: httpx.Client, scope: str = ARM_SCOPE) -> str:
    response = http.post(
        f"/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": scope,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    return str(body["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_run(
    http: httpx.Client,
    token: str,
    pipeline: str = "copy",
    body: Any = None,
    **query: str,
) -> httpx.Response:
    return http.post(
        f"{BASE}/pipelines/{pipeline}/createRun",
        params={**API, **query},
        json=body,
        headers=bearer(token),
    )


def get_run(http: httpx.Client, token: str, run_id: str) -> dict[str, Any]:
    response = http.get(f"{BASE}/pipelineruns/{run_id}", params=API, headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(http: httpx.Client, token: str, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        run = get_run(http, token, run_id)
        if run["status"] == status:
            return run
        time.sleep(0.03)
    raise AssertionError(f"run {run_id} never reached {status}")


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_v2_token_then_run_walks_queued_inprogress_succeeded(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    response = create_run(http, token, body={"when": "2024-01-01", "n": 3, "tags": ["a", "b"]})
    assert response.status_code == 200
    run_id = response.json()["runId"]
    assert response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"
    assert response.headers["x-ms-request-id"]

    seen: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not seen or seen[-1] != "Succeeded"):
        status = get_run(http, token, run_id)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)
    assert seen == ["Queued", "InProgress", "Succeeded"]

    run = get_run(http, token, run_id)
    assert run["runGroupId"] == run_id and run["isLatest"] is True
    assert run["parameters"] == {"when": "2024-01-01", "n": "3", "tags": '["a","b"]'}
    assert run["invokedBy"]["invokedByType"] == "Manual"
    assert run["runEnd"].endswith("Z") and run["durationInMs"] == 300
    assert run["lastUpdated"] == run["runEnd"]
    [record] = admin.runs()
    assert record["principal"] == CLIENT_ID
    assert admin.stats()["created"] == 1


def test_parameter_outcome_failed_and_failing_pipeline(
    http: httpx.Client, admin: AdminClient
) -> None:
    admin.configure(failing_pipelines={"broken"})
    token = v2_token(http)
    by_param = create_run(http, token, body={"_emulatorOutcome": "Failed"}).json()["runId"]
    by_config = create_run(http, token, "broken").json()["runId"]
    for run_id in (by_param, by_config):
        run = wait_for(http, token, run_id, "Failed")
        assert run["message"] and run["runEnd"]


def test_client_request_id_and_correlation_are_echoed(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    headers = {**bearer(token), "x-ms-client-request-id": "req-1"}
    response = http.post(f"{BASE}/pipelines/copy/createRun", params=API, headers=headers)
    assert response.headers["x-ms-client-request-id"] == "req-1"
    assert response.headers["x-ms-correlation-request-id"]
    assert admin.runs()[0]["clientRequestId"] == "req-1"


def test_tutorial_resource_client_id_token_is_rejected_by_arm(http: httpx.Client) -> None:
    response = http.post(
        f"/{TENANT}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "resource": CLIENT_ID,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["resource"] == CLIENT_ID
    assert isinstance(body["expires_in"], str) and isinstance(body["expires_on"], str)

    denied = create_run(http, body["access_token"])
    assert denied.status_code == 401
    assert error_code(denied) == "InvalidAuthenticationTokenAudience"
    assert 'error="invalid_token"' in denied.headers["WWW-Authenticate"]


def test_v1_token_for_arm_resource_and_basic_client_auth(http: httpx.Client) -> None:
    v1 = http.post(
        f"/{TENANT}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "resource": "https://management.core.windows.net/",
        },
        auth=(CLIENT_ID, SECRET),
    )
    assert v1.status_code == 200
    assert create_run(http, v1.json()["access_token"]).status_code == 200


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error"),
    [
        (TENANT, {"client_secret": "wrong"}, 401, "invalid_client"),
        (TENANT, {"client_id": "stranger"}, 401, "invalid_client"),
        ("other-tenant", {}, 400, "invalid_request"),
        (TENANT, {"grant_type": "password"}, 400, "unsupported_grant_type"),
        (TENANT, {"scope": ""}, 400, "invalid_scope"),
        (
            TENANT,
            {"scope": "https://management.azure.com/user_impersonation"},
            400,
            "invalid_scope",
        ),
    ],
)
def test_token_errors(
    http: httpx.Client, tenant: str, form: dict[str, str], status: int, error: str
) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": ARM_SCOPE,
        **form,
    }
    response = http.post(f"/{tenant}/oauth2/v2.0/token", data=data)
    assert response.status_code == status
    assert response.json()["error"] == error
    if form.get("client_secret") == "wrong":
        assert "AADSTS7000215" in response.json()["error_description"]


def test_arm_auth_failures(http: httpx.Client, admin: AdminClient) -> None:
    missing = http.post(f"{BASE}/pipelines/copy/createRun", params=API)
    assert (missing.status_code, error_code(missing)) == (401, "AuthenticationFailed")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    unknown = create_run(http, "not-a-token")
    assert (unknown.status_code, error_code(unknown)) == (401, "InvalidAuthenticationToken")
    assert admin.stats()["unauthorized"] == 2


def test_expired_tokens_get_401_and_a_fresh_token_works(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    assert create_run(http, token).status_code == 200
    admin.expire_tokens()
    expired = create_run(http, token)
    assert (expired.status_code, error_code(expired)) == (401, "ExpiredAuthenticationToken")
    assert create_run(http, v2_token(http)).status_code == 200


def test_managed_identity_requires_metadata_header(http: httpx.Client, admin: AdminClient) -> None:
    query = {"api-version": "2018-02-01", "resource": "https://management.azure.com/"}
    refused = http.get("/metadata/identity/oauth2/token", params=query)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_request",
        "error_description": "Required metadata header not specified",
    }
    granted = http.get(
        "/metadata/identity/oauth2/token", params=query, headers={"Metadata": "true"}
    )
    assert granted.status_code == 200
    body = granted.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], str)
    assert create_run(http, body["access_token"]).status_code == 200
    assert admin.runs()[0]["principal"] == "managed-identity"


def test_api_version_is_required_and_checked(http: httpx.Client) -> None:
    token = v2_token(http)
    url = f"{BASE}/pipelines/copy/createRun"
    missing = http.post(url, headers=bearer(token))
    assert (missing.status_code, error_code(missing)) == (400, "MissingApiVersionParameter")
    assert missing.json()["error"]["target"] is None
    wrong = http.post(url, params={"api-version": "2017-09-01-preview"}, headers=bearer(token))
    assert (wrong.status_code, error_code(wrong)) == (400, "InvalidApiVersionParameter")


@pytest.mark.parametrize(
    "path",
    [
        f"{FACTORY}/ab/pipelines/copy/createRun",
        f"{FACTORY}/bad_factory/pipelines/copy/createRun",
        f"{FACTORY}/fac-1/pipelines/a%2Fb/createRun",
        f"{FACTORY}/fac-1/pipelines/.hidden/createRun",
        f"/subscriptions/{SUB}/resourceGroups/rg%20x/providers/Microsoft.DataFactory"
        "/factories/fac-1/pipelines/copy/createRun",
    ],
)
def test_invalid_names_are_rejected(http: httpx.Client, path: str) -> None:
    response = http.post(path, params=API, headers=bearer(v2_token(http)))
    assert (response.status_code, error_code(response)) == (400, "InvalidResourceName")


def test_encoded_pipeline_name_with_space_accent_and_paren(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    name = "Load Sales é (daily)"
    response = create_run(http, token, quote(name, safe=""))
    assert response.status_code == 200, response.text
    assert get_run(http, token, response.json()["runId"])["pipelineName"] == name


def test_unknown_pipeline_and_bad_body(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(known_pipelines={"copy"})
    token = v2_token(http)
    missing = create_run(http, token, "other")
    assert (missing.status_code, error_code(missing)) == (404, "PipelineNotFound")
    not_object = create_run(http, token, body=[1, 2])
    assert (not_object.status_code, error_code(not_object)) == (400, "BadRequest")
    assert create_run(http, token, body={}).status_code == 200
    unknown_run = http.get(f"{BASE}/pipelineruns/nope", params=API, headers=bearer(token))
    assert (unknown_run.status_code, error_code(unknown_run)) == (404, "PipelineRunNotFound")


def test_recovery_rerun_shares_group_and_copies_parameters(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    first = create_run(http, token, body={"day": "2024-05-01", "_emulatorOutcome": "Failed"})
    first_id = first.json()["runId"]
    wait_for(http, token, first_id, "Failed")

    rerun = create_run(
        http,
        token,
        body={"day": "ignored"},
        referencePipelineRunId=first_id,
        isRecovery="true",
        startFromFailure="true",
    )
    assert rerun.status_code == 200
    rerun_id = rerun.json()["runId"]
    new = get_run(http, token, rerun_id)
    assert new["runGroupId"] == first_id and new["isLatest"] is True
    assert new["parameters"]["day"] == "2024-05-01"
    assert get_run(http, token, first_id)["isLatest"] is False
    assert admin.run(rerun_id)["recovery"] == {
        "referencePipelineRunId": first_id,
        "isRecovery": True,
        "startActivityName": None,
        "startFromFailure": True,
    }

    plain = create_run(http, token, referencePipelineRunId=first_id).json()["runId"]
    assert get_run(http, token, plain)["runGroupId"] == plain

    bogus = create_run(http, token, referencePipelineRunId="00000000-0000-0000-0000-000000000000")
    assert (bogus.status_code, error_code(bogus)) == (400, "ReferencedPipelineRunNotValid")
    assert bogus.json()["error"]["target"] == "pipeline/copy/"
    other = create_run(http, token, "other", referencePipelineRunId=first_id)
    assert (other.status_code, error_code(other)) == (400, "ReferencedPipelineRunNotValid")
    assert other.json()["error"] == {
        "code": "ReferencedPipelineRunNotValid",
        "message": f"Referenced pipeline run id {first_id} is not a valid run id.",
        "target": "pipeline/other/",
        "details": None,
    }
    by_case = create_run(http, token, "COPY", referencePipelineRunId=first_id.upper())
    assert by_case.status_code == 200, "pipeline names and run ids match whatever their case"
    assert get_run(http, token, by_case.json()["runId"])["pipelineName"] == "COPY"


def test_cancel_walks_canceling_to_cancelled_and_finished_runs_refuse(
    http: httpx.Client, admin: AdminClient
) -> None:
    admin.configure(queue_seconds=0.05, run_seconds=30)
    token = v2_token(http)
    run_id = create_run(http, token).json()["runId"]
    wait_for(http, token, run_id, "InProgress")

    url = f"{BASE}/pipelineruns/{run_id}/cancel"
    cancel = http.post(url, params={**API, "isRecursive": "true"}, headers=bearer(token))
    assert cancel.status_code == 200 and cancel.content == b""
    assert cancel.headers["x-ms-ratelimit-remaining-subscription-writes"]
    assert get_run(http, token, run_id)["status"] == "Canceling"
    done = wait_for(http, token, run_id, "Cancelled")
    assert done["runEnd"] is not None and done["runStart"] is not None

    again = http.post(url, params=API, headers=bearer(token))
    assert (again.status_code, error_code(again)) == (400, "PipelineRunNotRunning")
    unknown = http.post(f"{BASE}/pipelineruns/nope/cancel", params=API, headers=bearer(token))
    assert unknown.status_code == 404


def test_cancel_while_queued_leaves_run_end_null(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(queue_seconds=30)
    token = v2_token(http)
    run_id = create_run(http, token).json()["runId"]
    assert get_run(http, token, run_id)["status"] == "Queued"
    http.post(f"{BASE}/pipelineruns/{run_id}/cancel", params=API, headers=bearer(token))
    run = wait_for(http, token, run_id, "Cancelled")
    assert run["runStart"] is None and run["runEnd"] is None and run["durationInMs"] is None


def test_query_pipeline_runs_filters_and_pages(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(run_seconds=30)
    token = v2_token(http)
    ids = [create_run(http, token, "bulk").json()["runId"] for _ in range(105)]
    create_run(http, token, "other")
    url = f"{BASE}/queryPipelineRuns"
    filters = [{"operand": "PipelineName", "operator": "Equals", "values": ["bulk"]}]

    first = http.post(url, params=API, headers=bearer(token), json={**WINDOW, "filters": filters})
    assert first.status_code == 200
    assert "x-ms-ratelimit-remaining-subscription-reads" in first.headers
    page1 = first.json()
    assert len(page1["value"]) == 100 and page1["continuationToken"]
    second = http.post(
        url,
        params=API,
        headers=bearer(token),
        json={**WINDOW, "filters": filters, "continuationToken": page1["continuationToken"]},
    ).json()
    assert len(second["value"]) == 5 and "continuationToken" not in second
    assert [r["runId"] for r in page1["value"] + second["value"]] == ids

    not_bulk = http.post(
        url,
        params=API,
        headers=bearer(token),
        json={
            **WINDOW,
            "filters": [
                {"operand": "PipelineName", "operator": "NotEquals", "values": ["bulk"]},
                {"operand": "Status", "operator": "In", "values": ["Queued", "InProgress"]},
                {"operand": "LatestOnly", "operator": "Equals", "values": ["true"]},
            ],
            "orderBy": [{"orderBy": "RunStart", "order": "DESC"}],
        },
    ).json()
    assert [r["pipelineName"] for r in not_bulk["value"]] == ["other"]

    future = {"lastUpdatedAfter": "2099-01-01T00:00:00Z", "lastUpdatedBefore": "2100-01-01"}
    assert http.post(url, params=API, headers=bearer(token), json=future).json()["value"] == []

    bad = http.post(url, params=API, headers=bearer(token), json={"lastUpdatedAfter": "x"})
    assert (bad.status_code, error_code(bad)) == (400, "BadRequest")


def test_write_bucket_throttles_with_retry_after(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(write_bucket=BucketSpec(capacity=2, refill_per_second=1))
    token = v2_token(http)
    remaining = [
        create_run(http, token).headers["x-ms-ratelimit-remaining-subscription-writes"]
        for _ in range(2)
    ]
    assert remaining == ["1", "0"]
    throttled = create_run(http, token)
    assert (throttled.status_code, error_code(throttled)) == (429, "SubscriptionRequestsThrottled")
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.json()["error"]["message"] == (
        f"Number of 'write' requests for subscription '{SUB}' actor '{CLIENT_ID}' exceeded. "
        "Please try again after '1' seconds after additional tokens are available. "
        "Refer to https://aka.ms/arm-throttling for additional information."
    )
    reads = http.post(f"{BASE}/queryPipelineRuns", params=API, headers=bearer(token), json=WINDOW)
    assert reads.status_code == 200
    assert admin.stats()["throttled"] == 1
    time.sleep(1.05)
    assert create_run(http, token).status_code == 200


def test_fault_status_with_retry_after(http: httpx.Client, admin: AdminClient) -> None:
    token = v2_token(http)
    admin.inject(Fault(operation="createRun", kind="status", status=503, retry_after=2))
    failed = create_run(http, token)
    assert (failed.status_code, error_code(failed)) == (503, "ServiceUnavailable")
    assert failed.headers["Retry-After"] == "2"
    assert admin.runs() == []
    assert create_run(http, token).status_code == 200
    assert admin.stats()["faults"] == 1


def test_fault_on_token_endpoint(http: httpx.Client, admin: AdminClient) -> None:
    admin.inject({"operation": "token", "status": 500, "code": "InternalServerError"})
    response = http.post(f"/{TENANT}/oauth2/v2.0/token", data={})
    assert response.status_code == 500
    v2_token(http)


def test_fault_timeout_makes_client_time_out(
    http: httpx.Client, admin: AdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = v2_token(http)
    run_id = create_run(http, token).json()["runId"]
    admin.inject(Fault(operation="getRun", kind="timeout", delay_seconds=0.6))
    with pytest.raises(httpx.ReadTimeout):
        http.get(f"{BASE}/pipelineruns/{run_id}", params=API, headers=bearer(token), timeout=0.2)
    time.sleep(0.6)
    assert get_run(http, token, run_id)["runId"] == run_id
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_fault_drop_closes_connection_without_response(
    http: httpx.Client, admin: AdminClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = v2_token(http)
    admin.inject(Fault(operation="createRun", kind="drop", count=2))
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            create_run(http, token)
    assert admin.runs() == []
    assert create_run(http, token).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_fault_drop_after_effect_still_creates_the_run(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    admin.inject(Fault(operation="*", kind="drop", after_effect=True))
    with pytest.raises(httpx.RemoteProtocolError):
        create_run(http, token, body={"key": "k1"})
    [run] = admin.runs()
    assert run["parameters"] == {"key": "k1"}
    assert admin.faults() == []


def test_cli_announces_url_and_stops_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.adf",
            "--port",
            "0",
            "--client",
            "a:b",
            "--run-seconds",
            "1",
            "--pipeline-seconds",
            "Six=Hours=21600",
            "--factory",
            f"{SUB}/rg-test/fac-1",
            "--seed",
            "7",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ADF emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        config = AdminClient(url).config()
        assert config["clients"] == ["a"] and config["run_seconds"] == 1
        assert config["pipeline_seconds"] == {"Six=Hours": 21600}
        assert config["factories"] == [f"{SUB}/rg-test/fac-1"] and config["seed"] == 7
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


class FakeClock:
    """Epoch seconds that only move when the test says so (read from the server thread)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_injected_clock_drives_states_expiry_and_refill() -> None:
    clock = FakeClock()
    config = AdfEmulatorConfig(
        queue_seconds=10,
        run_seconds=60,
        token_lifetime_seconds=3599,
        write_bucket=BucketSpec(capacity=1, refill_per_second=0.5),
    )
    with run_in_thread(config, clock=clock) as emu, httpx.Client(base_url=emu.url) as http:
        token = v2_token(http)
        run_id = create_run(http, token).json()["runId"]
        assert create_run(http, token).headers["Retry-After"] == "2"
        assert get_run(http, token, run_id)["status"] == "Queued"
        clock.now += 10
        assert get_run(http, token, run_id)["runStart"] == "2023-11-14T22:13:30.0000000Z"
        clock.now += 60
        run = get_run(http, token, run_id)
        assert (run["status"], run["durationInMs"]) == ("Succeeded", 60_000)
        assert create_run(http, token).status_code == 200
        clock.now += 3600
        expired = create_run(http, token)
        assert error_code(expired) == "ExpiredAuthenticationToken"


def test_unrouted_and_admin_errors_are_json(http: httpx.Client, admin: AdminClient) -> None:
    token = v2_token(http)
    wrong_method = http.get(f"{BASE}/pipelines/copy/createRun", params=API, headers=bearer(token))
    assert (wrong_method.status_code, error_code(wrong_method)) == (405, "HttpMethodNotAllowed")
    unknown = http.get(f"{BASE}/datasets", params=API, headers=bearer(token))
    assert (unknown.status_code, error_code(unknown)) == (404, "NotFound")
    assert http.get("/nowhere").json()["error"]["code"] == "NotFound"
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(tenant_id="other")
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(queue_seconds=-1)


def test_port_in_use_fails_start(emulator_url: str) -> None:
    port = int(emulator_url.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="failed to start"), run_in_thread(port=port):
        pass


def test_a_fault_for_one_pipeline_leaves_the_others_alone(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    admin.inject(Fault(operation="createRun", pipeline="fragile", status=400, code="BadRequest"))
    assert create_run(http, token, pipeline="sturdy").status_code == 200
    assert create_run(http, token, pipeline="fragile").status_code == 400
    assert create_run(http, token, pipeline="fragile").status_code == 200


def test_an_empty_fault_answers_success_without_a_run_id(
    http: httpx.Client, admin: AdminClient
) -> None:
    token = v2_token(http)
    admin.inject(Fault(operation="createRun", kind="empty"))
    answer = create_run(http, token)
    assert (answer.status_code, answer.json()) == (200, {})
    assert admin.runs() == []
    admin.inject(Fault(operation="createRun", kind="empty", after_effect=True))
    assert create_run(http, token).json() == {}
    assert len(admin.runs()) == 1, "after_effect: the run exists, the answer does not say so"


# -- intermittent faults ----------------------------------------------------------------------


def _dropped_calls(http: httpx.Client, token: str, calls: int) -> list[int]:
    dropped = []
    for i in range(calls):
        try:
            response = create_run(http, token, body={"i": i})
        except httpx.RemoteProtocolError:
            dropped.append(i)
        else:
            assert response.status_code == 200, response.text
    return dropped


def test_intermittent_drop_after_effect_is_seeded_and_counts_only_served_faults(
    http: httpx.Client, admin: AdminClient
) -> None:
    admin.configure(seed=20240501, write_bucket=BucketSpec(capacity=5000, refill_per_second=10))
    token = v2_token(http)
    fault = Fault(
        operation="createRun", kind="drop", after_effect=True, probability=0.05, count=10_000
    )
    admin.inject(fault)
    dropped = _dropped_calls(http, token, 400)

    assert 5 <= len(dropped) <= 40, f"5% of 400 calls, got {len(dropped)}"
    assert len(admin.runs()) == 400, "after_effect: every call created its run"
    assert admin.stats()["faults"] == len(dropped)
    [active] = admin.faults()
    assert active["probability"] == 0.05
    assert active["remaining"] == 10_000 - len(dropped), "only served faults are counted"

    admin.reset()
    admin.inject(fault)
    assert _dropped_calls(http, token, 400) == dropped, "reset re-seeds: same calls dropped"
    admin.configure(seed=1)
    admin.reset()
    admin.inject(fault)
    assert _dropped_calls(http, token, 400) != dropped, "another seed, other calls"


def test_probability_draws_fall_through_to_the_next_fault_and_stop_at_count() -> None:
    from emulators.adf._state import EmulatorState

    state = EmulatorState(AdfEmulatorConfig(seed=3))
    state.add_faults(
        [
            Fault(operation="getRun", probability=0.25, count=100_000, code="Rare"),
            Fault(operation="getRun", count=3, code="Fallback"),
        ]
    )
    codes = [getattr(state.take_fault("getRun"), "code", None) for _ in range(4000)]
    assert codes[:3].count("Fallback") + codes[:3].count("Rare") == 3
    assert codes.count("Fallback") == 3, "requests that escape the first fault meet the next"
    assert 850 <= codes.count("Rare") <= 1150, codes.count("Rare")
    assert state.stats.faults == codes.count("Rare") + 3
    assert state.faults[0].remaining == 100_000 - codes.count("Rare")

    again = EmulatorState(AdfEmulatorConfig(seed=3))
    again.add_faults(
        [
            Fault(operation="getRun", probability=0.25, count=100_000, code="Rare"),
            Fault(operation="getRun", count=3, code="Fallback"),
        ]
    )
    assert [getattr(again.take_fault("getRun"), "code", None) for _ in range(4000)] == codes

    certain = EmulatorState(AdfEmulatorConfig())
    certain.add_faults([Fault(operation="cancel", count=2)])
    assert certain.take_fault("cancel") is not None and certain.take_fault("cancel") is not None
    assert certain.take_fault("cancel") is None and certain.faults == []


@pytest.mark.parametrize("probability", [0, -0.1, 1.5])
def test_fault_probability_must_be_in_0_1(
    admin: AdminClient, emulator_url: str, probability: float
) -> None:
    assert Fault(probability=0.5).probability == 0.5 and Fault().probability == 1
    with pytest.raises(ValueError, match=r"probability\n  Input should be"):
        Fault(probability=probability)
    bad = httpx.post(
        f"{emulator_url}/_emulator/faults", json={"faults": [{"probability": probability}]}
    )
    assert bad.status_code == 400
    assert admin.faults() == []


# -- per-pipeline durations and finishing runs early --------------------------------------------

SIX_HOURS = 6 * 3600


def test_pipeline_seconds_override_run_seconds_case_insensitively() -> None:
    clock = FakeClock()
    config = AdfEmulatorConfig(
        queue_seconds=1,
        run_seconds=60,
        pipeline_seconds={"NightlyLoad": SIX_HOURS},
        token_lifetime_seconds=2 * SIX_HOURS,
    )
    with run_in_thread(config, clock=clock) as emu, httpx.Client(base_url=emu.url) as http:
        token = v2_token(http)
        long_id = create_run(http, token, "nightlyload").json()["runId"]
        short_id = create_run(http, token, "copy").json()["runId"]
        clock.now += 61
        assert get_run(http, token, short_id)["status"] == "Succeeded"
        assert get_run(http, token, long_id)["status"] == "InProgress"
        clock.now += SIX_HOURS - 61
        assert get_run(http, token, long_id)["status"] == "InProgress"
        clock.now += 1
        done = get_run(http, token, long_id)
        assert (done["status"], done["durationInMs"]) == ("Succeeded", SIX_HOURS * 1000)
        assert done["pipelineName"] == "nightlyload", "runs keep the name they were created with"

        with AdminClient(emu.url) as admin:
            patched = admin.configure(pipeline_seconds={"Copy": 5})
            assert patched["pipeline_seconds"] == {"Copy": 5}
            quick = create_run(http, token, "COPY").json()["runId"]
            clock.now += 6
            assert get_run(http, token, quick)["durationInMs"] == 5000
            with pytest.raises(httpx.HTTPStatusError):
                admin.configure(pipeline_seconds={"copy": 1, "COPY": 2})
            with pytest.raises(httpx.HTTPStatusError):
                admin.configure(pipeline_seconds={"copy": -1})


def test_finish_ends_a_six_hour_run_now() -> None:
    clock = FakeClock()
    config = AdfEmulatorConfig(
        queue_seconds=10,
        pipeline_seconds={"six-hours": SIX_HOURS},
        token_lifetime_seconds=2 * SIX_HOURS,
    )
    with (
        run_in_thread(config, clock=clock) as emu,
        httpx.Client(base_url=emu.url) as http,
        AdminClient(emu.url) as admin,
    ):
        token = v2_token(http)
        running = create_run(http, token, "six-hours").json()["runId"]
        clock.now += 145
        assert get_run(http, token, running)["status"] == "InProgress"
        queued_later = create_run(http, token, "six-hours").json()["runId"]
        clock.now += 5
        assert get_run(http, token, queued_later)["status"] == "Queued"
        record = admin.finish(running)
        assert record["runId"] == running and record["status"] == "Succeeded"
        run = get_run(http, token, running)
        assert run["status"] == "Succeeded" and run["message"] == ""
        assert run["runStart"] == "2023-11-14T22:13:30.0000000Z"
        assert run["runEnd"] == run["lastUpdated"] == "2023-11-14T22:15:50.0000000Z"
        assert run["durationInMs"] == 140_000

        failed = admin.finish(queued_later.upper(), status="Failed", message="disk full")
        assert failed["status"] == "Failed"
        run = get_run(http, token, queued_later)
        assert (run["status"], run["message"]) == ("Failed", "disk full")
        assert run["runStart"] == run["runEnd"] == run["lastUpdated"], "started now, ended now"
        assert run["durationInMs"] == 0

        clock.now += SIX_HOURS
        assert get_run(http, token, running)["status"] == "Succeeded", "stays finished"
        assert get_run(http, token, running)["runEnd"] == "2023-11-14T22:15:50.0000000Z"
        cancel = http.post(
            f"{BASE}/pipelineruns/{running}/cancel", params=API, headers=bearer(token)
        )
        assert (cancel.status_code, error_code(cancel)) == (400, "PipelineRunNotRunning")

        with pytest.raises(httpx.HTTPStatusError) as ended:
            admin.finish(running, status="Failed")
        assert ended.value.response.status_code == 400
        assert ended.value.response.json()["error"]["code"] == "PipelineRunNotRunning"
        with pytest.raises(httpx.HTTPStatusError) as unknown:
            admin.finish("00000000-0000-0000-0000-000000000000")
        assert unknown.value.response.status_code == 404

        default_failed = create_run(http, token, "six-hours").json()["runId"]
        assert admin.finish(default_failed, "Failed")["message"], "a failure says something"
        bad = http.post(f"/_emulator/runs/{default_failed}/finish", json={"status": "Cancelled"})
        assert bad.status_code == 400


def test_finish_refuses_a_run_being_cancelled(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(queue_seconds=30, cancel_seconds=30)
    token = v2_token(http)
    run_id = create_run(http, token).json()["runId"]
    http.post(f"{BASE}/pipelineruns/{run_id}/cancel", params=API, headers=bearer(token))
    with pytest.raises(httpx.HTTPStatusError) as refused:
        admin.finish(run_id)
    assert refused.value.response.status_code == 400
    assert get_run(http, token, run_id)["status"] == "Canceling"


# -- which factories exist -----------------------------------------------------------------------

OTHER_SUB = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def arm_path(sub: str, rg: str, factory: str, rest: str = "pipelines/copy/createRun") -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataFactory"
        f"/factories/{factory}/{rest}"
    )


def test_only_configured_factories_exist(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(factories={f"{SUB}/rg-test/fac-1", f"{SUB}/rg-test/Fac-2"})
    assert admin.config()["factories"] == [f"{SUB}/rg-test/Fac-2", f"{SUB}/rg-test/fac-1"]
    token = v2_token(http)

    def post(path: str) -> httpx.Response:
        return http.post(path, params=API, headers=bearer(token), json=WINDOW)

    assert create_run(http, token).status_code == 200
    assert post(arm_path(SUB.upper(), "RG-TEST", "FAC-1")).status_code == 200
    assert post(arm_path(SUB, "rg-test", "fac-2")).status_code == 200

    no_group = post(arm_path(SUB, "rg-prod", "fac-1"))
    assert (no_group.status_code, no_group.json()["error"]["code"]) == (
        404,
        "ResourceGroupNotFound",
    )
    assert no_group.json()["error"]["message"] == "Resource group 'rg-prod' could not be found."
    no_factory = post(arm_path(SUB, "rg-test", "fac-3", "queryPipelineRuns"))
    assert no_factory.status_code == 404
    assert no_factory.json()["error"] == {
        "code": "ResourceNotFound",
        "message": "The Resource 'Microsoft.DataFactory/factories/fac-3' under resource group "
        "'rg-test' was not found. For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix",
        "target": None,
        "details": None,
    }
    missing_get = http.get(
        arm_path(SUB, "rg-test", "fac-3", "pipelineruns/abc"), params=API, headers=bearer(token)
    )
    assert (missing_get.status_code, error_code(missing_get)) == (404, "ResourceNotFound")
    other_sub = post(arm_path(OTHER_SUB, "rg-test", "fac-1"))
    assert (other_sub.status_code, error_code(other_sub)) == (404, "SubscriptionNotFound")
    assert len(admin.runs()) == 3

    admin.configure(factories=None)
    assert post(arm_path(OTHER_SUB, "rg-prod", "fac-3")).status_code == 200
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(factories={"sub-1/rg/fac"})
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(factories={f"{SUB}/fac-without-group"})


@pytest.mark.parametrize("factories", [None, {f"{SUB}/rg-test/fac-1"}])
@pytest.mark.parametrize(
    "subscription", ["sub-1", "12345678-1234-1234-1234-12345678abc", f"{SUB}0", "{" + SUB + "}"]
)
def test_a_subscription_id_that_is_not_a_guid_is_invalid_whatever_the_config(
    http: httpx.Client, admin: AdminClient, factories: set[str] | None, subscription: str
) -> None:
    admin.configure(factories=factories)
    response = http.post(
        arm_path(quote(subscription, safe=""), "rg-test", "fac-1"),
        params=API,
        headers=bearer(v2_token(http)),
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidSubscriptionId"
    assert response.json()["error"]["message"] == (
        f"The provided subscription identifier '{subscription}' is malformed or invalid."
    )
    assert admin.runs() == []


# -- names are case-insensitive ------------------------------------------------------------------


def test_pipeline_settings_and_filters_ignore_case(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(known_pipelines={"CopySales", "Broken"}, failing_pipelines={"BROKEN"})
    token = v2_token(http)
    upper = create_run(http, token, "COPYSALES")
    assert upper.status_code == 200, upper.text
    lower = create_run(http, token, "copysales").json()["runId"]
    missing = create_run(http, token, "copy-sales")
    assert (missing.status_code, error_code(missing)) == (404, "PipelineNotFound")
    broken = create_run(http, token, "broken").json()["runId"]
    assert wait_for(http, token, broken, "Failed")["pipelineName"] == "broken"
    assert wait_for(http, token, lower, "Succeeded")["pipelineName"] == "copysales"

    other_case_base = BASE.replace("rg-test", "RG-Test").replace("fac-1", "FAC-1")
    query = http.post(
        f"{other_case_base}/queryPipelineRuns",
        params=API,
        headers=bearer(token),
        json={
            **WINDOW,
            "filters": [{"operand": "PipelineName", "operator": "In", "values": ["CopySales"]}],
        },
    )
    assert query.status_code == 200
    names = sorted(r["pipelineName"] for r in query.json()["value"])
    assert names == ["COPYSALES", "copysales"]
    excluded = http.post(
        f"{BASE}/queryPipelineRuns",
        params=API,
        headers=bearer(token),
        json={
            **WINDOW,
            "filters": [{"operand": "PipelineName", "operator": "NotIn", "values": ["copySALES"]}],
        },
    ).json()
    assert [r["pipelineName"] for r in excluded["value"]] == ["broken"]
    assert (
        http.get(
            f"{other_case_base}/pipelineruns/{lower}", params=API, headers=bearer(token)
        ).json()["runId"]
        == lower
    )

    admin.inject(Fault(operation="createRun", pipeline="copySales", status=500, code="Boom"))
    assert create_run(http, token, "COPYSALES").status_code == 500


# -- OpenID discovery -------------------------------------------------------------------------------


def test_openid_configuration_points_at_this_emulator(
    http: httpx.Client, emulator_url: str, admin: AdminClient
) -> None:
    response = http.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    doc = response.json()
    authority = f"{emulator_url}/{TENANT}"
    assert doc["issuer"] == f"{authority}/v2.0"
    assert doc["token_endpoint"] == f"{authority}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{authority}/oauth2/v2.0/authorize"
    assert doc["jwks_uri"] == f"{authority}/discovery/v2.0/keys"
    assert doc["response_types_supported"] == [
        "code",
        "id_token",
        "code id_token",
        "id_token token",
    ]
    assert doc["subject_types_supported"] == ["pairwise"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert isinstance(doc["tenant_region_scope"], str) and doc["tenant_region_scope"]
    assert "client_secret_post" in doc["token_endpoint_auth_methods_supported"]

    token = http.post(
        doc["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": ARM_SCOPE,
        },
    )
    assert token.status_code == 200, "the advertised token endpoint issues tokens"
    assert create_run(http, token.json()["access_token"]).status_code == 200
    assert http.get(doc["jwks_uri"]).json() == {"keys": []}

    by_case = http.get(f"/{TENANT.upper()}/v2.0/.well-known/openid-configuration").json()
    assert by_case["token_endpoint"] == doc["token_endpoint"]
    assert admin.stats()["requests"]["discovery"] == 3


def test_openid_configuration_for_an_unknown_tenant_is_an_aadsts_error(
    http: httpx.Client, admin: AdminClient
) -> None:
    admin.inject(Fault(operation="token", status=503))
    response = http.get("/someone-else/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith("AADSTS90002: Tenant 'someone-else' not found.")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)
    assert len(admin.faults()) == 1, "discovery does not use up token faults"
