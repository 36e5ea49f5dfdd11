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

from bridge._locks import KeyedLocks
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
from bridge.config import RetryPolicy
from bridge.errors import (
    AuthenticationFailed,
    BackendRejected,
    RetriesExhausted,
    TransientBackendError,
)
from bridge.ledger import MemoryLedger
from bridge.metrics import Metrics
from bridge.retry import Attempts, call_with_retries
from bridge.starting import RunStarter
from contracts import HereRun, RunRequestedV1, RunState

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


async def test_a_lost_activate_answer_is_found_among_the_version_s_operations() -> None:
    """Even when a later operation (someone's cancel, or their own activation) hides it."""
    latest = operation("accepted")
    later = {**operation("accepted"), "id": "later-op", "requestType": "cancel"}

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/operations"):
            return httpx.Response(200, json=[latest, later])
        if request.url.path.endswith(f"/operations/{latest['id']}"):
            return httpx.Response(200, json=latest)
        return httpx.Response(
            200, json={"id": VERSION, "state": "scheduled", "latestOperation": later}
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


# -- redirects, quotas and the API Lookup service -------------------------------------------------


async def test_a_307_from_https_to_http_is_refused_and_hosts_compare_in_any_case() -> None:
    seen: list[httpx.Request] = []
    scheme = "http"

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "pipelines.test":
            location = f"{scheme}://EU.Pipelines.TEST" + request.url.path
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(202, json=operation())

    allowed = backend(api, allowed_redirect_hosts=["eu.PIPELINES.test"])
    with pytest.raises(BackendRejected, match="clear text"):
        await allowed.create_run(here_run(), request_id=REQUEST_ID)
    assert len(seen) == 1, "the token never went out over plain http"
    scheme = "https"
    seen.clear()
    await allowed.create_run(here_run(), request_id=REQUEST_ID)
    assert [r.url.host for r in seen] == ["pipelines.test", "eu.pipelines.test"]
    assert seen[1].url.scheme == "https" and seen[1].headers["Authorization"] == "Bearer tok"


async def test_a_307_from_plain_http_may_stay_plain() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.port is None:
            return httpx.Response(307, headers={"Location": "http://local.test:8080/x"})
        return httpx.Response(202, json=operation())

    local = backend(api, base_url="http://local.test/pipeline-service")
    await local.create_run(here_run(), request_id=REQUEST_ID)
    assert [str(r.url) for r in seen][1] == "http://local.test:8080/x"


@pytest.mark.parametrize("status", [429, 503])
async def test_a_quota_answer_without_retry_after_is_transient_and_retried(status: int) -> None:
    """HERE's platform answers 429 or 503 (without Retry-After) when a quota is exceeded."""
    answers = [httpx.Response(status, json={"status": status, "code": "E429", "message": "quota"})]

    def api(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        if request.method == "GET":
            return httpx.Response(200, json={"id": VERSION, "latestOperation": operation()})
        return httpx.Response(202, json=operation())

    here = backend(api)
    with pytest.raises(TransientBackendError) as caught:
        await here.create_run(here_run(), request_id=REQUEST_ID)
    assert caught.value.retry_after is None and caught.value.status_code == status
    assert caught.value.ambiguous is (status == 503), "a 503 may come after the activation"
    policy = RetryPolicy(max_attempts=3, initial_backoff_seconds=0, max_backoff_seconds=0)
    answers.append(httpx.Response(status, json={"status": status, "message": "quota"}))
    attempts = Attempts()
    followed = FollowedRun(operation()["id"], here_run())
    status_now = await call_with_retries(lambda: here.get_run(followed), policy, attempts=attempts)
    assert status_now.state is RunState.QUEUED and attempts.count == 2
    assert attempts.ambiguous == 0, "a read is never ambiguous"


async def test_without_a_base_url_the_api_lookup_service_names_it_once() -> None:
    seen: list[httpx.Request] = []
    lookup = "https://lookup.test/lookup/v1/platform/apis/pipelines/v2"

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "lookup.test":
            found = [
                {
                    "api": "pipelines",
                    "version": "v2",
                    "baseURL": "https://found.test/pipeline-service/",
                    "parameters": {},
                }
            ]
            return httpx.Response(200, json=found)
        return httpx.Response(202, json=operation())

    here = backend(api, base_url=None, lookup_url=lookup)
    await here.create_run(here_run(), request_id=REQUEST_ID)
    await here.create_run(here_run(), request_id=REQUEST_ID)
    assert [str(r.url) for r in seen] == [
        lookup,
        f"https://found.test/pipeline-service/v2/pipelines/{PIPELINE}/versions/{VERSION}/operations/activate",
        f"https://found.test/pipeline-service/v2/pipelines/{PIPELINE}/versions/{VERSION}/operations/activate",
    ]
    assert seen[0].headers["Authorization"] == "Bearer tok"

    def nothing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"api": "pipelines", "version": "v2"}])

    with pytest.raises(BackendRejected, match="no baseURL"):
        await backend(nothing, base_url=None, lookup_url=lookup).create_run(
            here_run(), request_id=REQUEST_ID
        )


# -- a stand-in for one version at HERE ------------------------------------------------------------

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
APP = "runbridge-app"
RUN_AS = "hrn:here:account::org:app/etl"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def an_operation(
    request_type: str = "activate", state: str = "succeeded", minute: float = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "requestType": request_type,
        "state": state,
        "message": "",
        "userId": "HERE-user",
        "clientId": APP,
        "runAsId": f"hrn:here:account::org:app/{APP}",
        "created": at(minute),
        "options": {"highAvailability": False},
        **extra,
    }


def a_job(state: str = "running", minute: float = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "state": state,
        "created": at(minute),
        "updated": at(minute + 1),
        "runAsId": f"hrn:here:account::org:app/{APP}",
        "highAvailability": False,
        "catalogVersions": None,
        **extra,
    }


class FakeVersion:
    """One pipeline version at HERE: its operations and jobs, newest last; ``post`` answers
    activate and cancel (by default 202 with a new operation)."""

    def __init__(self, *operations: dict[str, Any], jobs: tuple[dict[str, Any], ...] = ()):
        self.operations = list(operations)
        self.jobs = list(jobs)
        self.run_as_id: str | None = None
        self.posts: list[str] = []
        self.gets: list[str] = []
        self.post: Any = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/pipeline-service/v2/pipelines/{PIPELINE}/versions/{VERSION}"
        rest = request.url.path.removeprefix(prefix)
        if request.method == "POST":
            self.posts.append(rest.rsplit("/", 1)[-1])
            if self.post is not None:
                answer: httpx.Response = self.post(request)
                return answer
            made = an_operation(rest.rsplit("/", 1)[-1], "accepted", minute=30)
            self.operations.append(made)
            return httpx.Response(202, json=made)
        self.gets.append(rest or "version")
        if rest == "":
            body: dict[str, Any] = {"id": VERSION, "state": "running"}
            if self.run_as_id:
                body["runAsId"] = self.run_as_id
            if self.operations:
                body["latestOperation"] = self.operations[-1]
            if self.jobs:
                body["latestJob"] = self.jobs[-1]
            return httpx.Response(200, json=body)
        if rest == "/jobs":
            return httpx.Response(200, json=self.jobs)
        if rest == "/operations":
            return httpx.Response(200, json=self.operations)
        wanted = rest.removeprefix("/operations/")
        for op in self.operations:
            if op["id"] == wanted:
                return httpx.Response(200, json=op)
        return httpx.Response(404, json={"status": 404, "code": "E404", "message": "no such"})


def here_backend(version: FakeVersion, **credentials: Any) -> HereBackend:
    return HereBackend(
        target(credentials=CREDENTIALS.model_dump(mode="json") | credentials),
        tokens=StaticTokens(),
        transport=httpx.MockTransport(version),
    )


def busy(request: httpx.Request) -> httpx.Response:
    body = {"status": 400, "code": "E2002", "message": "an operation is still being processed"}
    return httpx.Response(400, json=body)


# -- find_runs: only an activation this bridge could have made -------------------------------------


async def find(version: FakeVersion, run: HereRun | None = None, **credentials: Any) -> list[str]:
    found = await here_backend(version, **credentials).find_runs(
        run or here_run(),
        request_id=REQUEST_ID,
        since=T0 - timedelta(minutes=5),
        until=T0 + timedelta(minutes=5),
    )
    return [status.run_id for status in found]


async def test_an_activation_carrying_what_the_bridge_sent_is_found() -> None:
    body = {
        "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
        "outputCatalog": {"baseVersion": 3},
    }
    sent = here_run(runAsId=RUN_AS, highAvailability=True, **body)
    ours = an_operation(runAsId=RUN_AS, options={"highAvailability": True})
    echoed = {
        "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
        "outputCatalog": {"baseVersion": 3},
        "runAsId": RUN_AS,
        "highAvailability": True,
    }
    job = a_job(catalogVersions=echoed, runAsId=RUN_AS, highAvailability=True)
    assert await find(FakeVersion(ours, jobs=(job,)), sent, client_id=APP) == [ours["id"]]
    starting = a_job("starting", runAsId=RUN_AS, highAvailability=True)
    del starting["catalogVersions"]  # HERE stores them once the job runs
    assert await find(FakeVersion(ours, jobs=(starting,)), sent, client_id=APP) == [ours["id"]]
    no_since = here_run(
        runAsId=RUN_AS, inputCatalogs={"rib": {"processingType": "changes", "version": 2}}
    )
    ours = an_operation(runAsId=RUN_AS)
    with_null = {"inputCatalogs": {"rib": {"processingType": "changes", "version": 2}}}
    with_null["inputCatalogs"]["rib"]["sinceVersion"] = None  # HERE may echo an absent one so
    job = a_job(catalogVersions=with_null, runAsId=RUN_AS)
    assert await find(FakeVersion(ours, jobs=(job,)), no_since, client_id=APP) == [ours["id"]]


@pytest.mark.parametrize(
    ("operation_fields", "job_fields", "sent", "why"),
    [
        (
            {"runAsId": "hrn:here:account::org:app/other"},
            {"runAsId": RUN_AS},
            {"runAsId": RUN_AS},
            "the operation's runAsId",
        ),
        (
            {"options": {"highAvailability": False}},
            {"highAvailability": True},
            {"highAvailability": True},
            "the operation's highAvailability",
        ),
        ({"clientId": "the-ui"}, {}, {}, "another app asked"),
        ({}, {}, {}, "runs as another app, none was sent"),
        (
            {},
            {"catalogVersions": {"outputCatalog": {"baseVersion": 4}}},
            {"outputCatalog": {"baseVersion": 3}},
            "the job's output catalog version",
        ),
        (
            {},
            {
                "catalogVersions": {
                    "inputCatalogs": {"rib": {"processingType": "reprocess", "version": 2}}
                }
            },
            {"inputCatalogs": {"rib": {"processingType": "changes", "version": 2}}},
            "the job's input catalogs",
        ),
        (
            {"runAsId": RUN_AS},
            {"runAsId": "hrn:here:account::org:app/x"},
            {"runAsId": RUN_AS},
            "job",
        ),
    ],
)
async def test_an_activation_someone_else_made_is_not_adopted(
    operation_fields: dict[str, Any], job_fields: dict[str, Any], sent: dict[str, Any], why: str
) -> None:
    latest = an_operation(**operation_fields)
    if why == "runs as another app, none was sent":
        latest["runAsId"] = "hrn:here:account::org:app/the-ui"
    version = FakeVersion(latest, jobs=(a_job(**job_fields),))
    assert await find(version, here_run(**sent), client_id=APP) == [], why


async def test_without_a_known_client_id_the_app_is_not_compared() -> None:
    latest = an_operation(clientId="the-ui", runAsId="hrn:here:account::org:app/the-ui")
    assert await find(FakeVersion(latest)) == [latest["id"]]


async def test_the_version_s_own_run_as_id_is_here_s_default_too() -> None:
    latest = an_operation(runAsId=RUN_AS)
    version = FakeVersion(latest)
    assert await find(version, client_id=APP) == []
    version.run_as_id = RUN_AS
    assert await find(version, client_id=APP) == [latest["id"]]


async def test_the_client_id_comes_from_credentials_properties(tmp_path: Path) -> None:
    path = tmp_path / "credentials.properties"
    path.write_text(
        "here.client.id = the-bridge\nhere.access.key.id = AK\nhere.access.key.secret = s\n"
    )
    version = FakeVersion(an_operation())
    here = HereBackend(
        target(credentials={"file": str(path)}),
        tokens=StaticTokens(),
        transport=httpx.MockTransport(version),
    )
    found = await here.find_runs(
        here_run(),
        request_id=REQUEST_ID,
        since=T0 - timedelta(minutes=5),
        until=T0 + timedelta(minutes=5),
    )
    assert found == [], f"made by {APP}, not by the-bridge"


@pytest.mark.parametrize("failure", ["503", "dropped"])
async def test_an_activate_that_took_effect_but_lost_its_answer_is_found_not_repeated(
    failure: str,
) -> None:
    """In one process: the activate reached HERE, the answer was a 503 or a dropped
    connection; the retry looks first, finds the activation, and activates nothing again."""
    version = FakeVersion()

    def activate(request: httpx.Request) -> httpx.Response:
        if version.operations:
            return busy(request)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        version.operations.append(
            an_operation(
                state="accepted", created=now, runAsId=RUN_AS, options={"highAvailability": True}
            )
        )
        if failure == "503":
            return httpx.Response(503, json={"status": 503, "code": "E503", "message": "busy"})
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    version.post = activate
    request = RunRequestedV1.model_validate(
        {
            "request_id": REQUEST_ID,
            "target": "here",
            "run": {
                "system": "here",
                "pipelineId": PIPELINE,
                "versionId": VERSION,
                "runAsId": RUN_AS,
                "highAvailability": True,
            },
        }
    )
    starter = RunStarter(
        MemoryLedger(),
        RetryPolicy(max_attempts=3, initial_backoff_seconds=0, max_backoff_seconds=0),
        Metrics(),
        clock=lambda: datetime.now(UTC),
        locks=KeyedLocks(),
    )
    attempts = Attempts()
    started = await starter.start(
        request, here_backend(version, client_id=APP), partition=0, key=b"k", attempts=attempts
    )
    assert started.found and started.entry.run_id == version.operations[0]["id"]
    assert version.posts == ["activate"], "activated once"
    assert (attempts.ambiguous, attempts.unclear) == (1, 0)


# -- cancel: only this run's job, and not while HERE is busy --------------------------------------


def ours_and_job(op_state: str = "succeeded", job_state: str | None = "running") -> FakeVersion:
    ours = an_operation(state=op_state)
    jobs = (a_job(job_state),) if job_state else ()
    return FakeVersion(ours, jobs=jobs)


async def cancel(version: FakeVersion) -> bool:
    followed = FollowedRun(version.operations[0]["id"], here_run())
    return await here_backend(version).cancel_run(followed, None)


async def test_a_cancel_of_a_running_job_reads_first_then_posts() -> None:
    version = ours_and_job()
    assert await cancel(version) is True
    assert version.gets[0] == "version" and version.posts == ["cancel"]


@pytest.mark.parametrize(
    ("op_state", "job_state"),
    [("succeeded", "completed"), ("succeeded", "failed"), ("failed", None)],
)
async def test_a_cancel_of_an_ended_run_sends_nothing(op_state: str, job_state: str | None) -> None:
    version = ours_and_job(op_state, job_state)
    assert await cancel(version) is False
    assert version.posts == []


async def test_a_cancel_never_stops_the_job_of_a_later_activation() -> None:
    """This run's job ended (or never showed) and another request activated the version
    since: HERE's cancel would stop that one's job."""
    ours = an_operation()
    theirs = an_operation(minute=20, clientId="someone-else")
    for jobs in ((a_job("completed"), a_job("running", minute=21)), (a_job("running", minute=21),)):
        version = FakeVersion(ours, theirs, jobs=jobs)
        assert await cancel(version) is False
        assert version.posts == []


@pytest.mark.parametrize("pending", ["accepted", "being_processed"])
async def test_a_cancel_while_the_activation_is_processed_is_tried_again_shortly(
    pending: str,
) -> None:
    version = ours_and_job(pending, None)
    with pytest.raises(TransientBackendError, match=f"is {pending}") as caught:
        await cancel(version)
    assert caught.value.ambiguous is False and version.posts == []

    policy = RetryPolicy(max_attempts=4, initial_backoff_seconds=0, max_backoff_seconds=0)
    attempts = Attempts()
    reads = 0

    def processed(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.method == "GET" and request.url.path.endswith(VERSION):
            reads += 1
            if reads == 2:  # HERE processed the activation between two attempts
                version.operations[0]["state"] = "succeeded"
                version.jobs.append(a_job("running"))
        return version(request)

    here = HereBackend(target(), tokens=StaticTokens(), transport=httpx.MockTransport(processed))
    followed = FollowedRun(version.operations[0]["id"], here_run())
    assert await call_with_retries(
        lambda: here.cancel_run(followed, None), policy, attempts=attempts
    )
    assert attempts.count == 2 and version.posts == ["cancel"]


async def test_a_cancel_that_keeps_meeting_a_pending_activation_runs_out_of_retries() -> None:
    version = ours_and_job("being_processed", None)
    here = here_backend(version)
    followed = FollowedRun(version.operations[0]["id"], here_run())
    policy = RetryPolicy(max_attempts=3, initial_backoff_seconds=0, max_backoff_seconds=0)
    with pytest.raises(RetriesExhausted, match="gave up after 3 attempts"):
        await call_with_retries(lambda: here.cancel_run(followed, None), policy)
    assert version.posts == []


async def test_here_s_400_for_a_pending_operation_is_transient_too() -> None:
    """The version read showed nothing pending, then HERE refused: someone's operation
    (a pause from the UI) came in between."""
    version = ours_and_job()

    def refuse(request: httpx.Request) -> httpx.Response:
        version.operations.append(an_operation("pause", "accepted", minute=30))
        return busy(request)

    version.post = refuse
    with pytest.raises(TransientBackendError, match="pause operation") as caught:
        await cancel(version)
    assert (caught.value.status_code, caught.value.code) == (400, "E2002")


@pytest.mark.parametrize(
    "seen", ["cancel accepted", "cancel succeeded", "job canceled", "400 then cancel"]
)
async def test_a_cancel_whose_answer_was_lost_ends_as_a_cancel_not_as_already_ended(
    seen: str,
) -> None:
    """The first cancel took effect, its answer was lost; the retry reads the version."""
    version = ours_and_job()
    if seen == "400 then cancel":

        def refuse(request: httpx.Request) -> httpx.Response:
            version.operations.append(an_operation("cancel", "being_processed", minute=30))
            return busy(request)

        version.post = refuse
    elif seen == "job canceled":
        version.operations.append(an_operation("cancel", "succeeded", minute=30))
        version.jobs[0]["state"] = "canceled"
    else:
        version.operations.append(an_operation("cancel", seen.split()[1], minute=30))
    assert await cancel(version) is True
    assert version.posts == (["cancel"] if seen == "400 then cancel" else [])


async def test_a_cancel_refused_before_the_job_shows_is_tried_again() -> None:
    version = ours_and_job("succeeded", None)
    version.post = lambda request: httpx.Response(
        400, json={"status": 400, "code": "E2005", "message": "no running Job"}
    )
    with pytest.raises(TransientBackendError, match="before the activation's job showed"):
        await cancel(version)
