"""The HERE client: signed tokens, the activate call, redirects, errors and states, against
an in-memory transport. (Over real sockets against the emulator: tests/integration/test_here.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import httpx
import pytest

from bridge.auth import AccessToken
from bridge.backends import FollowedRun
from bridge.backends.here import (
    HereBackend,
    HereCredentials,
    HereTarget,
    HereTokenSource,
    read_properties,
    request_header_id,
    run_status,
)
from bridge.errors import AuthenticationFailed, BackendRejected
from contracts import HereRun, RunState

PIPELINE = str(uuid.uuid4())
VERSION = str(uuid.uuid4())
REQUEST_ID = "3f1c2b7d-6f2f-4c3e-a3a5-9b0e6f1b8d52"
BASE = "https://pipelines.test/pipeline-service"
CREDENTIALS = HereCredentials(
    access_key_id="key-1",
    access_key_secret="s3cret",  # type: ignore[arg-type]
    token_endpoint_url="https://account.test/oauth2/token",
)


def enc(text: str) -> str:
    return quote(text, safe="~")


def expected_signature(request: httpx.Request, secret: str) -> str:
    """OAuth 1.0a HMAC-SHA256 by hand, as HERE checks it (independent of oauthlib)."""
    header = request.headers["Authorization"].removeprefix("OAuth ")
    oauth = {
        k.strip(): unquote(v.strip('"')) for k, v in (p.split("=", 1) for p in header.split(","))
    }
    params = {k: v for k, v in oauth.items() if k != "oauth_signature"}
    params.update(parse_qsl(request.content.decode()))
    normalized = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    url = f"{request.url.scheme}://{request.url.host}{request.url.path}"
    base = "&".join(["POST", enc(url), enc(normalized)])
    digest = hmac.new(f"{enc(secret)}&".encode(), base.encode(), hashlib.sha256).digest()
    assert oauth["oauth_signature_method"] == "HMAC-SHA256"
    return base64.b64encode(digest).decode() if oauth["oauth_signature"] else ""


def oauth_of(request: httpx.Request) -> dict[str, str]:
    header = request.headers["Authorization"].removeprefix("OAuth ")
    return {
        k.strip(): unquote(v.strip('"')) for k, v in (p.split("=", 1) for p in header.split(","))
    }


def tokens(handler: Any, **options: Any) -> HereTokenSource:
    return HereTokenSource(CREDENTIALS, transport=httpx.MockTransport(handler), **options)


async def test_the_token_request_is_signed_as_here_checks_it_and_carries_the_scope() -> None:
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"access_token": "t", "token_type": "bearer", "expires_in": 3600}
        )

    scope = "hrn:here:authorization::org:project/p1"
    token = await tokens(endpoint, scope=scope).fetch()
    [request] = seen
    assert oauth_of(request)["oauth_signature"] == expected_signature(request, "s3cret")
    assert dict(parse_qsl(request.content.decode())) == {
        "grant_type": "client_credentials",
        "scope": scope,
    }
    assert token.token == "t" and token.expires_at > datetime.now(UTC).timestamp() + 3000


async def test_a_reused_nonce_is_signed_again_with_a_new_one() -> None:
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(
                401, json={"errorCode": "401207", "httpStatus": 401, "message": "nonce"}
            )
        return httpx.Response(200, json={"access_token": "t", "expires_in": 60})

    await tokens(endpoint).fetch()
    assert oauth_of(seen[0])["oauth_nonce"] != oauth_of(seen[1])["oauth_nonce"]


async def test_a_skewed_clock_signs_again_with_the_server_s_time() -> None:
    server_now = datetime.now(UTC) + timedelta(hours=2)
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            headers = {"Date": format_datetime(server_now, usegmt=True)}
            body = {"errorCode": "401204", "httpStatus": 401, "message": "timestamp"}
            return httpx.Response(401, json=body, headers=headers)
        return httpx.Response(200, json={"access_token": "t", "expires_in": 60})

    await tokens(endpoint).fetch()
    corrected = int(oauth_of(seen[1])["oauth_timestamp"])
    assert abs(corrected - server_now.timestamp()) < 5


@pytest.mark.parametrize(
    ("code", "reason"), [("401300", "401300"), ("401207", "nonce refused"), ("401204", "clock")]
)
async def test_credentials_the_token_endpoint_keeps_refusing_fail_with_the_reason(
    code: str, reason: str
) -> None:
    def endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"errorCode": code, "httpStatus": 401, "message": "no"})

    with pytest.raises(AuthenticationFailed, match=reason):
        await tokens(endpoint).fetch()


class StaticTokens:
    async def fetch(self) -> AccessToken:
        return AccessToken("tok", 4e9)

    async def aclose(self) -> None:
        pass


def target(**fields: Any) -> HereTarget:
    return HereTarget.model_validate(
        {
            "base_url": BASE,
            "credentials": CREDENTIALS.model_dump(mode="json") | {"access_key_secret": "s3cret"},
            **fields,
        }
    )


def backend(handler: Any, **fields: Any) -> HereBackend:
    return HereBackend(
        target(**fields), tokens=StaticTokens(), transport=httpx.MockTransport(handler)
    )


def here_run(**fields: Any) -> HereRun:
    return HereRun.model_validate({"pipelineId": PIPELINE, "versionId": VERSION, **fields})


def operation(state: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "op")),
        "requestType": "activate",
        "state": state,
        "created": "2026-11-25T01:00:00Z",
        **extra,
    }


async def test_an_activate_sends_the_body_as_given_with_the_request_and_correlation_ids() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=operation())

    body = {
        "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
        "outputCatalog": {"baseVersion": 3},
        "runAsId": "hrn:here:account::org:app/xyz",
        "highAvailability": False,
    }
    created = await backend(api).create_run(
        here_run(**body), request_id=REQUEST_ID, correlation_id="nightly"
    )
    [post] = seen
    assert post.url == f"{BASE}/v2/pipelines/{PIPELINE}/versions/{VERSION}/operations/activate"
    assert json.loads(post.content) == body
    assert post.headers["X-Request-ID"] == request_header_id(REQUEST_ID, "activate")
    assert post.headers["X-Correlation-ID"] == "nightly"
    assert post.headers["Authorization"] == "Bearer tok"
    assert created.run_id == operation()["id"]


async def test_a_307_is_followed_once_with_the_token_and_only_to_an_allowed_host() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "pipelines.test":
            location = "https://eu.pipelines.test" + request.url.path
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(202, json=operation())

    allowed = backend(api, allowed_redirect_hosts=["eu.pipelines.test"])
    await allowed.create_run(here_run(), request_id=REQUEST_ID)
    assert [r.url.host for r in seen] == ["pipelines.test", "eu.pipelines.test"]
    assert seen[1].headers["Authorization"] == "Bearer tok" and seen[1].content == seen[0].content
    seen.clear()
    with pytest.raises(BackendRejected, match="does not allow"):
        await backend(api).create_run(here_run(), request_id=REQUEST_ID)
    assert len(seen) == 1, "nothing sent to a host that is not allowed"


async def test_here_s_error_body_becomes_the_reason() -> None:
    body = {
        "status": 400,
        "code": "E213009",
        "message": "Another version of the pipeline is active",
        "errors": [{"field": "versionId", "message": "busy"}],
    }
    with pytest.raises(
        BackendRejected, match="Another version of the pipeline is active; versionId: busy"
    ):
        await backend(lambda r: httpx.Response(400, json=body)).create_run(
            here_run(), request_id=REQUEST_ID
        )


@pytest.mark.parametrize(
    ("op_state", "job", "state"),
    [
        ("accepted", None, RunState.QUEUED),
        ("being_processed", None, RunState.QUEUED),
        ("succeeded", None, RunState.QUEUED),
        ("succeeded", {"state": "starting"}, RunState.QUEUED),
        ("succeeded", {"state": "running"}, RunState.RUNNING),
        ("succeeded", {"state": "completed"}, RunState.SUCCEEDED),
        ("succeeded", {"state": "failed"}, RunState.FAILED),
        ("succeeded", {"state": "canceled"}, RunState.CANCELLED),
        ("failed", None, RunState.FAILED),
    ],
)
def test_an_activation_s_state_comes_from_its_operation_then_its_job(
    op_state: str, job: dict[str, Any] | None, state: RunState
) -> None:
    if job is not None:
        job = {
            "id": "job-1",
            "created": "2026-11-25T01:01:00Z",
            "updated": "2026-11-25T01:09:00Z",
            "loggingUrl": "https://logs",
            **job,
        }
    status = run_status(operation(op_state, message="template not ready"), job)
    assert status.state is state
    if job is not None and state is not RunState.QUEUED:
        assert status.details == {"jobId": "job-1", "loggingUrl": "https://logs"}
    if op_state == "failed":
        assert status.message == "template not ready"


async def test_a_lost_activate_answer_is_found_as_the_version_s_latest_operation() -> None:
    latest = operation("accepted")

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"id": VERSION, "state": "scheduled", "latestOperation": latest}
        )

    created = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    found = await backend(api).find_runs(
        here_run(),
        request_id=REQUEST_ID,
        since=created - timedelta(minutes=1),
        until=created + timedelta(minutes=1),
    )
    assert [s.run_id for s in found] == [latest["id"]]
    too_late = await backend(api).find_runs(
        here_run(),
        request_id=REQUEST_ID,
        since=created + timedelta(minutes=1),
        until=created + timedelta(minutes=2),
    )
    assert too_late == []


async def test_a_cancel_of_an_ended_run_says_so() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(
                400, json={"status": 400, "code": "E1", "message": "no running job"}
            )
        return httpx.Response(
            200, json={"id": VERSION, "state": "ready", "latestOperation": operation("failed")}
        )

    assert await backend(api).cancel_run(FollowedRun(operation()["id"], here_run()), None) is False


def test_credentials_come_from_here_s_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "credentials.properties"
    path.write_text(
        "here.user.id = HERE-1\nhere.client.id = c\nhere.access.key.id = AK\n"
        "here.access.key.secret = s=cret\nhere.token.endpoint.url = https://account.test/oauth2/token\n"
    )
    assert read_properties(path)["here.access.key.secret"] == "s=cret"
    key, secret, url = HereCredentials(file=path).resolve()
    assert (key, secret.get_secret_value(), url) == (
        "AK",
        "s=cret",
        "https://account.test/oauth2/token",
    )
