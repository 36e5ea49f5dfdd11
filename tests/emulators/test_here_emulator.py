"""The HERE platform emulator over a real loopback socket: signed tokens, the Pipeline API, faults.

Token requests are signed by this file's own OAuth 1.0a helper (written from RFC 5849 and
HERE's rules, independently of the emulator's verifier) and, where oauthlib is installed, by
oauthlib too (what the bridge signs with). Time is made to pass with the admin API's clock
(``advance``) or an injected clock, never by sleeping through job durations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest

from emulators.here import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_PIPELINE_ID,
    DEFAULT_USER_ID,
    DEFAULT_VERSION_ID,
    AdminClient,
    Fault,
    HereClient,
    HereEmulatorConfig,
    PipelineSpec,
    VersionSpec,
    run_in_thread,
)

KEY = DEFAULT_ACCESS_KEY_ID
SECRET = DEFAULT_ACCESS_KEY_SECRET
ORG = "olp-runbridge"
BASE = "/pipeline-service"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Round numbers, so that advancing the clock to the middle of a phase is unambiguous.
FAST: dict[str, Any] = {
    "accept_seconds": 10,
    "process_seconds": 10,
    "start_seconds": 10,
    "job_seconds": 100,
    "cancel_seconds": 10,
    "timestamp_skew_seconds": 300,
    "token_lifetime_seconds": 86399,
    "token_requests_per_window": 25_000,
    "token_window_seconds": 900,
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "seed": None,
}
BODY: dict[str, Any] = {
    "highAvailability": False,
    "inputCatalogs": {"rib": {"processingType": "changes", "version": 2, "sinceVersion": 1}},
    "outputCatalog": {"baseVersion": 3},
    "runAsId": "hrn:here:account::org:app/xyz",
    "snapshotId": "183f9bcc-c86e-11e9-1836-2a2ae2d83743",
    "useLatestCheckpoint": False,
}


# -- an independent OAuth 1.0a signer -------------------------------------------------------------


def enc(value: str) -> str:
    """RFC 3986 percent-encoding: only ALPHA, DIGIT and -._~ stay as they are."""
    return "".join(
        ch
        if ch.isascii() and (ch.isalnum() or ch in "-._~")
        else "".join(f"%{b:02X}" for b in ch.encode())
        for ch in value
    )


def oauth_header(
    url: str,
    form: dict[str, str] | None = None,
    *,
    key: str = KEY,
    secret: str = SECRET,
    nonce: str | None = None,
    timestamp: float | None = None,
    method: str = "HMAC-SHA256",
    version: str | None = "1.0",
    sign_form: bool = True,
) -> str:
    oauth = {
        "oauth_consumer_key": key,
        "oauth_nonce": nonce or uuid.uuid4().hex,
        "oauth_signature_method": method,
        "oauth_timestamp": str(int(time.time() if timestamp is None else timestamp)),
    }
    if version is not None:
        oauth["oauth_version"] = version
    parts = urlsplit(url)
    base_url = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"
    signed = list(oauth.items()) + (list((form or {}).items()) if sign_form else [])
    normalized = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in signed))
    base_string = f"POST&{enc(base_url)}&{enc(normalized)}"
    digest = hmac.new(f"{enc(secret)}&".encode(), base_string.encode(), hashlib.sha256).digest()
    oauth["oauth_signature"] = base64.b64encode(digest).decode()
    return "OAuth " + ", ".join(f'{enc(k)}="{enc(v)}"' for k, v in oauth.items())


def request_token(
    http: httpx.Client,
    form: dict[str, str] | None = None,
    *,
    url: str | None = None,
    **sign: Any,
) -> httpx.Response:
    form = {"grant_type": "client_credentials"} if form is None else form
    target = url or f"{http.base_url}".rstrip("/") + "/oauth2/token"
    return http.post(
        target, data=form, headers={"Authorization": oauth_header(target, form, **sign)}
    )


def token(http: httpx.Client, **sign: Any) -> str:
    response = request_token(http, **sign)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and isinstance(body["expires_in"], int)
    return str(body["access_token"])


def bearer(value: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", **extra}


def token_error(response: httpx.Response) -> int:
    body = response.json()
    assert body["errorId"].startswith("ERROR-")
    assert body["httpStatus"] == response.status_code
    assert isinstance(body["message"], str) and body["message"]
    return int(body["errorCode"])


def pipeline_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {
        "status",
        "code",
        "message",
        "messageTemplate",
        "templateOptions",
        "errors",
    }
    assert body["status"] == response.status_code
    assert body["code"].startswith("E")
    return str(body["code"])


def version_path(pipeline: str, version: str) -> str:
    return f"{BASE}/v2/pipelines/{pipeline}/versions/{version}"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[str, list[str]]]:
    """One emulator for the module, with an extra listener to stand for a redirect's target."""
    with run_in_thread(extra_listeners=[("127.0.0.1", 0)]) as emu:
        with AdminClient(emu.url) as admin:
            extra = admin.listeners()
        yield emu.url, extra


@pytest.fixture
def url(emulator: tuple[str, list[str]]) -> str:
    return emulator[0]


@pytest.fixture
def admin(url: str) -> Iterator[AdminClient]:
    with AdminClient(url) as client:
        client.reset()
        client.clear_faults()
        client.configure(**FAST)
        yield client


@pytest.fixture
def http(url: str, admin: AdminClient) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=5.0) as client:
        yield client


@pytest.fixture
def pv(admin: AdminClient) -> tuple[str, str]:
    """A fresh pipeline with one version, as (pipelineId, versionId)."""
    pipeline = admin.create_pipeline(versions=[VersionSpec()])
    return pipeline["id"], pipeline["versions"][0]["id"]


def activate(
    http: httpx.Client, tok: str, pipeline: str, version: str, body: Any = BODY, **headers: str
) -> httpx.Response:
    return http.post(
        f"{version_path(pipeline, version)}/operations/activate",
        json=body,
        headers=bearer(tok, **headers),
    )


def cancel(http: httpx.Client, tok: str, pipeline: str, version: str) -> httpx.Response:
    return http.post(f"{version_path(pipeline, version)}/operations/cancel", headers=bearer(tok))


def get_version(http: httpx.Client, tok: str, pipeline: str, version: str) -> dict[str, Any]:
    response = http.get(
        version_path(pipeline, version), params={"verbose": "true"}, headers=bearer(tok)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def jobs(http: httpx.Client, tok: str, pipeline: str, version: str) -> list[dict[str, Any]]:
    response = http.get(f"{version_path(pipeline, version)}/jobs", headers=bearer(tok))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list), "List Jobs answers a plain array"
    return body


def get_operation(
    http: httpx.Client, tok: str, pipeline: str, version: str, op_id: str
) -> dict[str, Any]:
    response = http.get(
        f"{version_path(pipeline, version)}/operations/{op_id}", headers=bearer(tok)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- tokens ---------------------------------------------------------------------------------------


def test_signed_form_request_gets_a_bearer_token(http: httpx.Client, admin: AdminClient) -> None:
    response = request_token(http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    assert body["access_token"].count(".") == 2, "JWT-shaped"
    assert UUID_RE.match(response.headers["X-Request-ID"])
    assert UUID_RE.match(response.headers["X-Correlation-ID"])

    scope = f"hrn:here:authorization::{ORG}:project/my-project"
    scoped = request_token(
        http, {"grant_type": "client_credentials", "scope": scope, "expires_in": "600"}
    )
    assert scoped.status_code == 200, scoped.text
    assert scoped.json()["scope"] == scope and scoped.json()["expires_in"] == 600
    longer = request_token(http, {"grant_type": "client_credentials", "expires_in": "999999"})
    assert longer.json()["expires_in"] == 86399, "a longer expires_in than allowed is ignored"
    assert admin.stats()["tokens_issued"] == 3


def test_json_variant_signs_only_oauth_params_and_answers_camel_case(http: httpx.Client) -> None:
    target = f"{http.base_url}".rstrip("/") + "/oauth2/token"
    header = oauth_header(target, sign_form=False)
    response = http.post(
        target,
        json={"grantType": "client_credentials", "expiresIn": 120},
        headers={"Authorization": header},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tokenType"] == "bearer" and body["expiresIn"] == 120 and body["accessToken"]


def test_oauthlib_signed_request_is_accepted(http: httpx.Client) -> None:
    oauth1 = pytest.importorskip("oauthlib.oauth1")
    target = f"{http.base_url}".rstrip("/") + "/oauth2/token"
    client = oauth1.Client(KEY, client_secret=SECRET, signature_method=oauth1.SIGNATURE_HMAC_SHA256)
    scope = f"hrn:here:authorization::{ORG}:project/p 1"
    uri, headers, body = client.sign(
        target,
        http_method="POST",
        body=urlencode({"grant_type": "client_credentials", "scope": scope}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = http.post(uri, content=body, headers=headers)
    assert response.status_code == 400, "a space separates two scopes, one too many..."
    assert response.json()["errorCode"] == 400981, "...but the request was signed right"
    uri, headers, body = client.sign(
        target,
        http_method="POST",
        body=urlencode({"grant_type": "client_credentials", "scope": scope.replace(" ", "~1")}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = http.post(uri, content=body, headers=headers)
    assert response.status_code == 200, response.text


def test_bad_signatures_are_401300(http: httpx.Client, admin: AdminClient) -> None:
    wrong_secret = request_token(http, secret="not-the-secret")
    assert (wrong_secret.status_code, token_error(wrong_secret)) == (401, 401300)
    assert "errorFields" not in wrong_secret.json()

    target = f"{http.base_url}".rstrip("/") + "/oauth2/token"
    signed_for = {"grant_type": "client_credentials", "expires_in": "60"}
    tampered = http.post(
        target,
        data={"grant_type": "client_credentials", "expires_in": "6000"},
        headers={"Authorization": oauth_header(target, signed_for)},
    )
    assert token_error(tampered) == 401300, "form fields are signed"
    other_url = http.post(
        target,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": oauth_header(target.replace("127.0.0.1", "localhost"))},
    )
    assert token_error(other_url) == 401300, "the URL the client addressed is signed"
    assert admin.stats()["token_refusals"] == {"401300": 3}


def test_unknown_key_and_client_id_as_key(http: httpx.Client) -> None:
    unknown = request_token(http, key="nobody")
    assert (unknown.status_code, token_error(unknown)) == (401, 401300)
    client_id = request_token(http, key=DEFAULT_CLIENT_ID)
    assert (client_id.status_code, token_error(client_id)) == (401, 401310)


def test_reused_nonce_is_401207(http: httpx.Client) -> None:
    nonce = uuid.uuid4().hex
    assert request_token(http, nonce=nonce).status_code == 200
    again = request_token(http, nonce=nonce)
    assert (again.status_code, token_error(again)) == (401, 401207)
    assert request_token(http).status_code == 200


def test_clock_skew_is_401204_both_ways(http: httpx.Client, admin: AdminClient) -> None:
    late = request_token(http, timestamp=time.time() - 400)
    assert (late.status_code, token_error(late)) == (401, 401204)
    early = request_token(http, timestamp=time.time() + 400)
    assert token_error(early) == 401204
    assert request_token(http, timestamp=time.time() - 250).status_code == 200

    admin.advance(400)
    skewed = request_token(http)
    assert token_error(skewed) == 401204, "the emulator's clock ran ahead of the client's"
    admin.configure(timestamp_skew_seconds=600)
    assert request_token(http).status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "code", "field_code"),
    [
        ({}, 400, 400200, 400201),
        ({"grant_type": "password"}, 400, 400200, 400290),
        ({"grant_type": "client_credentials", "expires_in": "soon"}, 400, 400200, 400208),
        ({"grant_type": "client_credentials", "expires_in": "-1"}, 400, 400200, 400209),
        ({"grant_type": "client_credentials", "scope": "project/x"}, 400, 400200, 400927),
        (
            {
                "grant_type": "client_credentials",
                "scope": f"hrn:here:authorization::{ORG}:project/a "
                f"hrn:here:authorization::{ORG}:project/b",
            },
            400,
            400981,
            None,
        ),
    ],
)
def test_bad_token_bodies_are_400(
    http: httpx.Client, form: dict[str, str], status: int, code: int, field_code: int | None
) -> None:
    response = request_token(http, form)
    assert (response.status_code, token_error(response)) == (status, code)
    body = response.json()
    assert body["error"] in {"invalid_request", "unsupported_grant_type", "invalid_scope"}
    if field_code is not None:
        assert body["errorFields"][0]["errorCode"] == field_code


def test_malformed_oauth_headers(http: httpx.Client) -> None:
    target = f"{http.base_url}".rstrip("/") + "/oauth2/token"
    form = {"grant_type": "client_credentials"}
    missing = http.post(target, data=form)
    assert (missing.status_code, token_error(missing)) == (401, 401200)
    basic = http.post(target, data=form, auth=(KEY, SECRET))
    assert token_error(basic) == 401202
    header = oauth_header(target, form)
    duplicated = http.post(
        target, data=form, headers={"Authorization": header + ', oauth_nonce="again"'}
    )
    assert token_error(duplicated) == 401202
    no_signature = http.post(
        target,
        data=form,
        headers={"Authorization": re.sub(r', oauth_signature="[^"]*"', "", header)},
    )
    assert token_error(no_signature) == 401202
    sha1 = request_token(http, method="HMAC-SHA1")
    assert token_error(sha1) == 401205
    version = request_token(http, version="2.0")
    assert token_error(version) == 401206
    assert request_token(http, version=None).status_code == 200, "oauth_version is optional"


def test_token_rate_limit_is_429002(http: httpx.Client, admin: AdminClient) -> None:
    admin.configure(token_requests_per_window=2, token_window_seconds=60)
    assert request_token(http).status_code == 200
    assert request_token(http).status_code == 200
    blocked = request_token(http)
    assert (blocked.status_code, token_error(blocked)) == (429, 429002)
    assert "Retry-After" not in blocked.headers
    admin.configure(timestamp_skew_seconds=3600)
    admin.advance(61)
    assert request_token(http).status_code == 200


def test_tokens_expire(http: httpx.Client, admin: AdminClient, pv: tuple[str, str]) -> None:
    short = request_token(http, {"grant_type": "client_credentials", "expires_in": "60"})
    tok = short.json()["access_token"]
    assert get_version(http, tok, *pv)["state"] == "ready"
    admin.advance(61)
    expired = http.get(version_path(*pv), headers=bearer(tok))
    assert (expired.status_code, pipeline_error(expired)) == (401, "E3003")
    assert expired.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')

    admin.configure(timestamp_skew_seconds=3600)
    fresh = token(http)
    assert get_version(http, fresh, *pv)["id"] == pv[1]
    assert admin.expire_tokens() >= 2
    again = http.get(version_path(*pv), headers=bearer(fresh))
    assert pipeline_error(again) == "E3003"
    assert get_version(http, token(http), *pv)["state"] == "ready"


def test_pipeline_api_needs_a_bearer_token(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    missing = http.get(version_path(*pv))
    assert (missing.status_code, pipeline_error(missing)) == (401, "E3001")
    basic = http.get(version_path(*pv), auth=("a", "b"))
    assert pipeline_error(basic) == "E3001"
    unknown = http.get(version_path(*pv), headers=bearer("not-a-token"))
    assert pipeline_error(unknown) == "E3002"
    assert admin.stats()["unauthorized"] == 3
    assert admin.operations() == []


# -- activate, operations, jobs --------------------------------------------------------------------


def test_activate_walks_operation_job_and_version_to_completed(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    pipeline, version = pv
    tok = token(http)
    response = activate(http, tok, pipeline, version)
    assert response.status_code == 202, response.text
    op = response.json()
    assert set(op) == {
        "id",
        "pipelineVersionId",
        "requestType",
        "state",
        "message",
        "userId",
        "clientId",
        "runAsId",
        "created",
        "options",
    }
    assert UUID_RE.match(op["id"]) and ISO_RE.match(op["created"])
    assert (op["requestType"], op["state"]) == ("activate", "accepted")
    assert (op["userId"], op["clientId"]) == (DEFAULT_USER_ID, DEFAULT_CLIENT_ID)
    assert op["runAsId"] == BODY["runAsId"] and op["options"] == {"highAvailability": False}

    seen = get_version(http, tok, pipeline, version)
    assert seen["state"] == "scheduled" and seen["latestOperation"]["id"] == op["id"]
    assert "latestJob" not in seen and jobs(http, tok, pipeline, version) == []

    admin.advance(15)
    assert get_operation(http, tok, pipeline, version, op["id"])["state"] == "being_processed"
    assert jobs(http, tok, pipeline, version) == [], "no job before the operation is processed"
    admin.advance(10)
    done = get_operation(http, tok, pipeline, version, op["id"])
    assert done["state"] == "succeeded" and done["message"]
    [job] = jobs(http, tok, pipeline, version)
    assert job["state"] == "starting"
    assert job["catalogVersions"] == {
        "inputCatalogs": BODY["inputCatalogs"],
        "outputCatalog": BODY["outputCatalog"],
    }
    assert job["executionMode"] == "on-demand" and job["highAvailability"] is False
    assert job["runAsId"] == BODY["runAsId"]
    assert job["loggingUrl"].endswith(job["id"]) and job["id"] in job["pipelineUIUrl"]
    assert "operationId" not in job, "a Job carries no operation id"
    assert get_version(http, tok, pipeline, version)["state"] == "scheduled"

    admin.advance(10)
    running = get_version(http, tok, pipeline, version)
    assert running["state"] == "running" and running["latestJob"]["state"] == "running"
    admin.advance(100)
    final = get_version(http, tok, pipeline, version)
    assert final["state"] == "ready", "a run-now version is deactivated after its run"
    assert final["latestJob"]["state"] == "completed"
    assert final["latestJob"]["updated"] > final["latestJob"]["created"]

    listed = http.get(f"{version_path(pipeline, version)}/operations", headers=bearer(tok))
    assert [o["id"] for o in listed.json()] == [op["id"]]
    [record] = admin.jobs(pipeline, version)
    assert record["operationId"] == op["id"] and record["message"] == ""
    assert admin.stats()["operations"] == {"activate": 1}

    again = activate(http, tok, pipeline, version)
    assert again.status_code == 202, "once a run-now has finished, activate runs again"


def test_failing_version_job_ends_failed(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    pipeline, version = pv
    admin.update_version(pipeline, version, job_failure="Out of memory", job_seconds=5)
    tok = token(http)
    assert activate(http, tok, pipeline, version).status_code == 202
    admin.advance(36)
    [job] = jobs(http, tok, pipeline, version)
    assert job["state"] == "failed"
    assert get_version(http, tok, pipeline, version)["state"] == "ready"
    assert admin.job(job["id"])["message"] == "Out of memory", "admin-only: a Job has no message"


def test_failing_activation_has_no_job(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    pipeline, version = pv
    admin.update_version(pipeline, version, activation_failure="Main class not found")
    tok = token(http)
    op = activate(http, tok, pipeline, version).json()
    assert get_version(http, tok, pipeline, version)["state"] == "scheduled"
    admin.advance(21)
    failed = get_operation(http, tok, pipeline, version, op["id"])
    assert failed["state"] == "failed"
    assert failed["message"] == "Operation failed with error - Main class not found"
    assert jobs(http, tok, pipeline, version) == []
    assert get_version(http, tok, pipeline, version)["state"] == "ready"


def test_template_not_ready_is_400(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    admin.update_version(*pv, template_ready=False)
    refused = activate(http, token(http), *pv)
    assert (refused.status_code, pipeline_error(refused)) == (400, "E2004")
    assert admin.operations() == []


def test_second_activation_while_active_is_400(http: httpx.Client, admin: AdminClient) -> None:
    pipeline = admin.create_pipeline(versions=[VersionSpec(), VersionSpec()])
    pid, (v1, v2) = pipeline["id"], [v["id"] for v in pipeline["versions"]]
    tok = token(http)
    assert activate(http, tok, pid, v1).status_code == 202

    pending = activate(http, tok, pid, v1)
    assert (pending.status_code, pipeline_error(pending)) == (400, "E2002")
    assert pending.json()["errors"] == []
    sibling = activate(http, tok, pid, v2)
    assert (sibling.status_code, pipeline_error(sibling)) == (400, "E2001")
    assert sibling.json()["templateOptions"]["activeVersionId"] == v1

    admin.advance(35)
    assert get_version(http, tok, pid, v1)["state"] == "running"
    active = activate(http, tok, pid, v1)
    assert (active.status_code, pipeline_error(active)) == (400, "E2003")
    assert pipeline_error(activate(http, tok, pid, v2)) == "E2001"

    admin.advance(100)
    assert activate(http, tok, pid, v2).status_code == 202, "v1 is ready again"
    assert len(admin.operations(pid)) == 2


def test_bad_bodies_are_400_with_errors(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    body = {
        "inputCatalogs": {
            "rib": {"processingType": "sometimes", "sinceVersion": "1"},
            "bad name": {"processingType": "reprocess", "version": 7},
        },
        "outputCatalog": {},
        "runAsId": "hrn:here:account::org:xy",
        "snapshotId": "not-a-uuid",
        "useLatestCheckpoint": "yes",
        "executionMode": "on-demand",
    }
    response = activate(http, tok, *pv, body=body)
    assert (response.status_code, pipeline_error(response)) == (400, "E1000")
    error = response.json()
    assert error["message"] == "Validation Failed"
    assert error["messageTemplate"] == "{validation.error}"
    by_field = {e["field"]: e for e in error["errors"]}
    assert set(by_field) == {
        "/inputCatalogs/rib/processingType",
        "/inputCatalogs/rib/version",
        "/inputCatalogs/rib/sinceVersion",
        "/inputCatalogs/bad name",
        "/outputCatalog/baseVersion",
        "/runAsId",
        "/snapshotId",
        "/useLatestCheckpoint",
        "/executionMode",
    }
    assert by_field["/inputCatalogs/rib/processingType"]["invalidValue"] == "sometimes"
    assert all(set(e) == {"field", "invalidValue", "message", "code"} for e in error["errors"])

    not_json = http.post(
        f"{version_path(*pv)}/operations/activate",
        content=b"{not json",
        headers=bearer(tok, **{"Content-Type": "application/json"}),
    )
    assert (not_json.status_code, pipeline_error(not_json)) == (400, "E1001")
    a_list = activate(http, tok, *pv, body=[BODY])
    assert pipeline_error(a_list) == "E1000"
    no_bool = activate(http, tok, *pv, body={**BODY, "highAvailability": 1})
    assert no_bool.json()["errors"][0]["field"] == "/highAvailability"
    assert admin.operations() == []


def test_symbolic_catalog_names_must_be_the_versions_own(
    http: httpx.Client, admin: AdminClient
) -> None:
    pipeline = admin.create_pipeline(
        versions=[VersionSpec(input_catalogs={"rib": "hrn:here:data::olp-here:rib-2"})]
    )
    pid, vid = pipeline["id"], pipeline["versions"][0]["id"]
    tok = token(http)
    body = {"inputCatalogs": {"weather": {"processingType": "reprocess", "version": 1}}}
    unknown = activate(http, tok, pid, vid, body=body)
    assert unknown.json()["errors"][0]["field"] == "/inputCatalogs/weather"
    assert activate(http, tok, pid, vid).status_code == 202
    assert get_version(http, tok, pid, vid)["inputCatalogs"] == {
        "rib": "hrn:here:data::olp-here:rib-2"
    }


def test_activation_without_body_is_scheduled_mode(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    response = http.post(f"{version_path(*pv)}/operations/activate", headers=bearer(tok))
    assert response.status_code == 202
    assert response.json()["runAsId"] == f"hrn:here:account::{ORG}:app/{DEFAULT_CLIENT_ID}"
    admin.advance(21)
    [job] = jobs(http, tok, *pv)
    assert job["catalogVersions"] is None and job["executionMode"] == "scheduled"


def test_operations_and_jobs_record_who_asked_and_how(
    http: httpx.Client, admin: AdminClient
) -> None:
    """What the bridge tells its own activation by: the caller app's clientId and userId,
    runAsId (the body's, else the version's, else the app's), options.highAvailability, and
    the job's catalogVersions, runAsId and highAvailability."""
    own_run_as = f"hrn:here:account::{ORG}:app/version-default"
    pipeline = admin.create_pipeline(
        versions=[VersionSpec(run_as_id=own_run_as), VersionSpec(), VersionSpec()]
    )
    with_default, plain, other = (v["id"] for v in pipeline["versions"])
    tok = token(http)
    high = {"highAvailability": True, "outputCatalog": {"baseVersion": 9}}
    first = activate(http, tok, pipeline["id"], with_default, high).json()
    assert first["runAsId"] == own_run_as, "the version's runAsId when the body has none"
    assert first["options"] == {"highAvailability": True}
    assert (first["clientId"], first["userId"]) == (DEFAULT_CLIENT_ID, DEFAULT_USER_ID)
    admin.advance(21)
    [job] = jobs(http, tok, pipeline["id"], with_default)
    assert job["catalogVersions"] == {"outputCatalog": {"baseVersion": 9}}
    assert (job["runAsId"], job["highAvailability"]) == (own_run_as, True)
    admin.advance(200)
    second = activate(http, tok, pipeline["id"], plain, {}).json()
    assert second["runAsId"] == f"hrn:here:account::{ORG}:app/{DEFAULT_CLIENT_ID}"
    assert second["options"] == {"highAvailability": False}
    admin.advance(200)
    third = activate(http, tok, pipeline["id"], other, {"runAsId": BODY["runAsId"]}).json()
    assert third["runAsId"] == BODY["runAsId"], "the body's runAsId first"


def test_pipeline_id_as_hrn_and_404s(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    pipeline, version = pv
    tok = token(http)
    for ref in (
        f"hrn:here:pipeline::{ORG}:{pipeline}",
        f"hrn:here:pipeline:::{pipeline}",
        quote(f"hrn:here:pipeline::{ORG}:{pipeline}", safe=""),
        pipeline.upper(),
    ):
        found = http.get(version_path(ref, version), headers=bearer(tok))
        assert found.status_code == 200, (ref, found.text)
    assert activate(http, tok, f"hrn:here:pipeline::{ORG}:{pipeline}", version).status_code == 202
    described = http.get(f"{BASE}/v2/pipelines/{pipeline}", headers=bearer(tok)).json()
    assert described["hrn"] == f"hrn:here:pipeline::{ORG}:{pipeline}"
    listed = http.get(f"{BASE}/v2/pipelines/{pipeline}/versions", headers=bearer(tok)).json()
    assert [v["id"] for v in listed] == [version]

    cases = {
        version_path(str(uuid.uuid4()), version): "E4041",
        version_path(f"hrn:here:pipeline::other-org:{pipeline}", version): "E4041",
        version_path("not-a-pipeline", version): "E4041",
        version_path(pipeline, str(uuid.uuid4())): "E4042",
        version_path(pipeline, DEFAULT_VERSION_ID): "E4042",
        f"{version_path(pipeline, version)}/operations/{uuid.uuid4()}": "E4043",
        f"{version_path(pipeline, version)}/jobs/{uuid.uuid4()}": "E4044",
        f"{BASE}/v3/pipelines": "E4044",
    }
    for path, code in cases.items():
        response = http.get(path, headers=bearer(tok))
        assert (response.status_code, pipeline_error(response)) == (404, code), path
    missing = activate(http, tok, str(uuid.uuid4()), version)
    assert (missing.status_code, pipeline_error(missing)) == (404, "E4041")
    wrong_method = http.get(f"{version_path(pipeline, version)}/jobs", headers=bearer(tok))
    assert wrong_method.status_code == 200
    put = http.put(f"{version_path(pipeline, version)}/jobs", headers=bearer(tok))
    assert (put.status_code, pipeline_error(put)) == (405, "E4050")
    deactivate = http.post(
        f"{version_path(pipeline, version)}/operations/deactivate", headers=bearer(tok)
    )
    assert (deactivate.status_code, pipeline_error(deactivate)) == (501, "E5010")
    assert http.get("/nowhere").json()["code"] == "E4044"


def test_cancel_walks_the_job_to_canceled(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    pipeline, version = pv
    tok = token(http)
    nothing = cancel(http, tok, pipeline, version)
    assert (nothing.status_code, pipeline_error(nothing)) == (400, "E2005")
    assert activate(http, tok, pipeline, version).status_code == 202
    pending = cancel(http, tok, pipeline, version)
    assert (pending.status_code, pipeline_error(pending)) == (400, "E2002")

    admin.advance(35)
    response = cancel(http, tok, pipeline, version)
    assert response.status_code == 202, response.text
    op = response.json()
    assert (op["requestType"], op["state"]) == ("cancel", "accepted")
    assert jobs(http, tok, pipeline, version)[0]["state"] == "running"
    assert get_version(http, tok, pipeline, version)["latestOperation"]["id"] == op["id"]
    again = activate(http, tok, pipeline, version)
    assert pipeline_error(again) == "E2002"

    admin.advance(11)
    assert get_operation(http, tok, pipeline, version, op["id"])["state"] == "succeeded"
    [job] = jobs(http, tok, pipeline, version)
    assert job["state"] == "canceled"
    assert get_version(http, tok, pipeline, version)["state"] == "ready"
    assert pipeline_error(cancel(http, tok, pipeline, version)) == "E2005"
    assert admin.job(job["id"])["cancelOperationId"] == op["id"]


def test_admin_finish_ends_a_job_now(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    admin.update_version(*pv, job_seconds=6 * 3600)
    tok = token(http)
    activate(http, tok, *pv)
    [record] = admin.jobs(*pv)
    assert record["visible"] is False
    with pytest.raises(httpx.HTTPStatusError) as early:
        admin.finish(record["id"])
    assert early.value.response.status_code == 400
    admin.advance(40)
    done = admin.finish(record["id"], "failed", "disk full")
    assert (done["state"], done["message"]) == ("failed", "disk full")
    assert jobs(http, tok, *pv)[0]["state"] == "failed"
    assert get_version(http, tok, *pv)["state"] == "ready"
    with pytest.raises(httpx.HTTPStatusError) as ended:
        admin.finish(record["id"])
    assert ended.value.response.status_code == 400
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        admin.finish(str(uuid.uuid4()))
    assert unknown.value.response.status_code == 404


# -- headers ------------------------------------------------------------------------------------


def test_request_and_correlation_ids_are_echoed_or_generated(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    ids = {"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"}
    created = activate(http, tok, *pv, **ids)
    assert created.status_code == 202
    assert (created.headers["X-Request-ID"], created.headers["X-Correlation-ID"]) == (
        "req-1",
        "corr-1",
    )
    [op] = admin.operations(*pv)
    assert (op["requestId"], op["correlationId"]) == ("req-1", "corr-1")
    for response in (
        http.get(version_path(*pv), headers={**bearer(tok), **ids}),
        http.get(version_path(str(uuid.uuid4()), pv[1]), headers={**bearer(tok), **ids}),
        http.get(version_path(*pv), headers=ids),
    ):
        assert response.headers["X-Request-ID"] == "req-1", response.status_code
        assert response.headers["X-Correlation-ID"] == "corr-1"
    generated = http.get(version_path(*pv), headers=bearer(tok))
    assert UUID_RE.match(generated.headers["X-Request-ID"])
    assert UUID_RE.match(generated.headers["X-Correlation-ID"])
    admin.inject(Fault(operation="getVersion", status=500))
    faulted = http.get(version_path(*pv), headers={**bearer(tok), **ids})
    assert faulted.status_code == 500 and faulted.headers["X-Request-ID"] == "req-1"


# -- faults --------------------------------------------------------------------------------------


def test_redirect_fault_points_at_another_listener(
    http: httpx.Client, admin: AdminClient, emulator: tuple[str, list[str]], pv: tuple[str, str]
) -> None:
    url, [other] = emulator
    port = urlsplit(url).port
    tok = token(http)
    allowed = f"http://localhost:{port}{BASE}"
    admin.inject(Fault(operation="activate", kind="redirect", location=allowed))
    path = f"{version_path(*pv)}/operations/activate"
    redirected = http.post(path, json=BODY, headers=bearer(tok), params={"x": "1"})
    assert redirected.status_code == 307 and redirected.content == b""
    location = redirected.headers["Location"]
    assert location == f"http://localhost:{port}{path}?x=1"
    assert UUID_RE.match(redirected.headers["X-Request-ID"])
    assert admin.operations() == [], "a redirect before the effect changes nothing"
    followed = httpx.post(location, json=BODY, headers=bearer(tok))
    assert followed.status_code == 202, "the same POST, Authorization kept, succeeds there"

    admin.advance(1000)
    admin.inject(Fault(operation="activate", kind="redirect", location=f"{other}{BASE}"))
    automatic = http.post(path, json=BODY, headers=bearer(tok), follow_redirects=True)
    assert automatic.url.port == urlsplit(other).port
    assert (automatic.status_code, pipeline_error(automatic)) == (401, "E3001"), (
        "httpx re-sends the POST but drops Authorization on another origin"
    )
    assert len(admin.operations()) == 1


def test_redirect_after_effect_then_repeat_is_refused(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    admin.inject(
        Fault(
            operation="activate",
            kind="redirect",
            location="http://127.0.0.9:1/x",
            after_effect=True,
        )
    )
    assert activate(http, tok, *pv).status_code == 307
    assert len(admin.operations()) == 1
    assert pipeline_error(activate(http, tok, *pv)) == "E2002"


def test_status_faults_429_and_5xx(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    admin.inject(
        Fault(operation="activate", status=429, code="E4290", message="Too many requests", count=2),
        Fault(operation="getVersion", status=503, retry_after=7),
        Fault(operation="listJobs", pipeline=pv[0], status=500, code="E5000"),
        Fault(operation="token", status=429),
        Fault(operation="token", status=503),
    )
    for _ in range(2):
        throttled = activate(http, tok, *pv)
        assert (throttled.status_code, pipeline_error(throttled)) == (429, "E4290")
        assert "Retry-After" not in throttled.headers, "HERE documents no Retry-After"
    unavailable = http.get(version_path(*pv), headers=bearer(tok))
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "7")
    broken = http.get(f"{version_path(*pv)}/jobs", headers=bearer(tok))
    assert (broken.status_code, pipeline_error(broken)) == (500, "E5000")
    assert token_error(request_token(http)) == 429002
    assert token_error(request_token(http)) == 503000
    assert request_token(http).status_code == 200
    assert admin.operations() == []
    assert activate(http, tok, *pv).status_code == 202
    assert admin.faults() == [] and admin.stats()["faults"] == 6


def test_drop_after_effect_leaves_an_activation_the_client_never_saw(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    tok = token(http)
    admin.inject(Fault(operation="activate", kind="drop", after_effect=True))
    with pytest.raises(httpx.RemoteProtocolError):
        activate(http, tok, *pv, **{"X-Request-ID": "lost-1"})
    [op] = admin.operations()
    assert op["requestId"] == "lost-1"
    retry = activate(http, tok, *pv)
    assert (retry.status_code, pipeline_error(retry)) == (400, "E2002")
    listed = http.get(f"{version_path(*pv)}/operations", headers=bearer(tok)).json()
    assert [o["id"] for o in listed] == [op["id"]], "the client can find what happened"

    admin.advance(200)
    admin.inject(Fault(operation="activate", status=503, after_effect=True))
    ambiguous = activate(http, tok, *pv)
    assert ambiguous.status_code == 503
    assert len(admin.operations()) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_drop_and_timeout_before_effect(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    tok = token(http)
    admin.inject(Fault(operation="activate", kind="drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        activate(http, tok, *pv)
    assert admin.operations() == []
    admin.inject(Fault(operation="getOperation", kind="timeout", delay_seconds=0.6))
    op = activate(http, tok, *pv).json()
    with pytest.raises(httpx.ReadTimeout):
        http.get(f"{version_path(*pv)}/operations/{op['id']}", headers=bearer(tok), timeout=0.2)
    time.sleep(0.6)
    assert get_operation(http, tok, *pv, op["id"])["id"] == op["id"]
    admin.inject(Fault(operation="token", kind="drop"))
    with pytest.raises(httpx.RemoteProtocolError):
        request_token(http)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_empty_fault_answers_success_without_an_operation(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    tok = token(http)
    admin.inject(Fault(operation="activate", kind="empty"))
    empty = activate(http, tok, *pv)
    assert (empty.status_code, empty.json()) == (202, {})
    assert admin.operations() == []


def test_faults_target_one_version(http: httpx.Client, admin: AdminClient) -> None:
    pipeline = admin.create_pipeline(versions=[VersionSpec(), VersionSpec()])
    pid, (v1, v2) = pipeline["id"], [v["id"] for v in pipeline["versions"]]
    tok = token(http)
    admin.inject(Fault(operation="*", version=v2.upper(), status=502))
    assert http.get(version_path(pid, v1), headers=bearer(tok)).status_code == 200
    hrn = f"hrn:here:pipeline::{ORG}:{pid}"
    assert http.get(version_path(hrn, v2), headers=bearer(tok)).status_code == 502
    assert http.get(version_path(pid, v2), headers=bearer(tok)).status_code == 200


def test_redirect_fault_needs_a_location(admin: AdminClient, url: str) -> None:
    with pytest.raises(ValueError, match="location"):
        Fault(kind="redirect")
    bad = httpx.post(f"{url}/_emulator/faults", json={"faults": [{"kind": "redirect"}]})
    assert bad.status_code == 400
    assert admin.faults() == []


# -- admin, injected clock, state machine, CLI ---------------------------------------------------


def test_admin_config_reset_and_clock(
    http: httpx.Client, admin: AdminClient, pv: tuple[str, str]
) -> None:
    config = admin.config()
    assert config["clients"] == {
        KEY: {"client_id": DEFAULT_CLIENT_ID, "user_id": DEFAULT_USER_ID}
    }, "secrets are not echoed"
    before = admin.now()
    assert admin.advance(3600) >= before + 3600
    tok = token(http, timestamp=admin.now())
    activate(http, tok, *pv)
    assert admin.operations()
    later = admin.create_pipeline(versions=[VersionSpec()])
    admin.reset()
    assert admin.operations() == [] and admin.now() < before + 60
    assert admin.stats()["requests"] == {}
    later_version = get_version(http, tok, later["id"], later["versions"][0]["id"])
    assert later_version["state"] == "ready", "created 'in the future' of the reset clock"
    assert pv[0] in {p["id"] for p in admin.pipelines()}, "pipelines survive a reset"
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(org="other")
    with pytest.raises(httpx.HTTPStatusError):
        admin.configure(job_seconds=-1)
    with pytest.raises(httpx.HTTPStatusError):
        admin.create_pipeline(pv[0])
    with pytest.raises(httpx.HTTPStatusError):
        admin.update_version(*pv, template_id=str(uuid.uuid4()))


class FakeClock:
    """Epoch seconds that only move when the test says so (read from the server thread)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_injected_clock_drives_every_timeline() -> None:
    clock = FakeClock()
    config = HereEmulatorConfig(
        accept_seconds=1,
        process_seconds=2,
        start_seconds=3,
        job_seconds=60,
        token_lifetime_seconds=3600,
        clients={"k": HereClient(secret="s", client_id="c", user_id="HERE-u")},
        pipelines=(
            PipelineSpec(
                versions=(
                    VersionSpec(id="00000000-0000-4000-8000-000000000001"),
                    VersionSpec(id="00000000-0000-4000-8000-000000000002", job_seconds=5),
                )
            ),
        ),
    )
    with run_in_thread(config, clock=clock) as emu, httpx.Client(base_url=emu.url) as http:
        pid = AdminClient(emu.url).pipelines()[0]["id"]
        vid = "00000000-0000-4000-8000-000000000001"
        tok = token(http, key="k", secret="s", timestamp=clock.now)
        op = activate(http, tok, pid, vid).json()
        assert op["created"] == "2023-11-14T22:13:20.000Z"
        states = []
        for step in (0.5, 1, 2, 3, 60):
            clock.now += step
            version = get_version(http, tok, pid, vid)
            job = version.get("latestJob", {}).get("state")
            states.append((version["latestOperation"]["state"], job, version["state"]))
        assert states == [
            ("accepted", None, "scheduled"),
            ("being_processed", None, "scheduled"),
            ("succeeded", "starting", "scheduled"),
            ("succeeded", "running", "running"),
            ("succeeded", "completed", "ready"),
        ]
        [job] = jobs(http, tok, pid, vid)
        assert job["created"] == "2023-11-14T22:13:23.000Z"
        assert job["updated"] == "2023-11-14T22:14:26.000Z"
        short = "00000000-0000-4000-8000-000000000002"
        activate(http, tok, pid, short)
        clock.now += 11
        assert jobs(http, tok, pid, short)[0]["state"] == "completed"
        clock.now += 3600
        expired = http.get(version_path(pid, vid), headers=bearer(tok))
        assert pipeline_error(expired) == "E3003"
        stale = request_token(http, key="k", secret="s", timestamp=clock.now - 301)
        assert token_error(stale) == 401204


def test_the_date_header_tells_the_emulator_s_own_time() -> None:
    """What a client correcting a 401204 reads: the injected clock, advanced by the admin API,
    on every answer (token endpoint, Pipeline API and its errors, admin)."""
    clock = FakeClock()
    config = HereEmulatorConfig(clients={"k": HereClient(secret="s", client_id="c", user_id="u")})
    with run_in_thread(config, clock=clock) as emu, httpx.Client(base_url=emu.url) as http:
        tok = request_token(http, key="k", secret="s", timestamp=clock.now)
        assert tok.headers["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
        with AdminClient(emu.url) as admin:
            admin.advance(7200)
            skewed = request_token(http, key="k", secret="s", timestamp=clock.now)
            assert token_error(skewed) == 401204
            assert skewed.headers["Date"] == "Wed, 15 Nov 2023 00:13:20 GMT"
            clock.now += 1
            refused = http.get(version_path(DEFAULT_PIPELINE_ID, DEFAULT_VERSION_ID))
            assert refused.status_code == 401
            assert refused.headers["Date"] == "Wed, 15 Nov 2023 00:13:21 GMT"
            admin_answer = http.get("/_emulator/clock")
            assert admin_answer.headers["Date"] == "Wed, 15 Nov 2023 00:13:21 GMT"


async def test_the_bridge_s_token_source_signs_again_with_the_emulator_s_time() -> None:
    """The bridge's 401204 correction against the emulator: its clock runs two hours ahead,
    the first signature is refused as skewed, the second uses the time of the Date header."""
    from bridge.backends.here import HereCredentials, HereTokenSource

    with run_in_thread() as emu, AdminClient(emu.url) as admin:
        admin.advance(7200)
        credentials = HereCredentials(
            access_key_id=KEY,
            access_key_secret=SECRET,  # type: ignore[arg-type]
            token_endpoint_url=emu.url + "/oauth2/token",
        )
        source = HereTokenSource(credentials)
        try:
            fetched = await source.fetch()
        finally:
            await source.aclose()
        assert fetched.token
        stats = admin.stats()
        assert stats["token_refusals"] == {"401204": 1} and stats["tokens_issued"] == 1


def test_cancel_that_arrives_as_the_job_ends_fails_the_operation() -> None:
    from emulators.here._state import Caller, EmulatorState

    clock = FakeClock()
    state = EmulatorState(
        HereEmulatorConfig(accept_seconds=1, process_seconds=1, start_seconds=1, job_seconds=10),
        clock,
    )
    caller = Caller(client_id="c", user_id="u")
    ids = {"caller": caller, "request_id": "r", "correlation_id": "c"}
    activation = state.activate(DEFAULT_PIPELINE_ID, DEFAULT_VERSION_ID, BODY, **ids)
    clock.now += 12.9
    canceling = state.cancel(DEFAULT_PIPELINE_ID, DEFAULT_VERSION_ID, **ids)
    clock.now += 0.2
    assert activation.job is not None and activation.job.snapshot(clock.now).state == "completed"
    clock.now += 1
    op_state, message = canceling.state(clock.now)
    assert op_state == "failed" and "already ended (completed)" in message
    version = state.pipelines[DEFAULT_PIPELINE_ID].versions[DEFAULT_VERSION_ID]
    assert version.state(clock.now) == "ready"


def test_probability_draws_are_seeded() -> None:
    from emulators.here._state import EmulatorState

    def draws(seed: int) -> list[bool]:
        state = EmulatorState(HereEmulatorConfig(seed=seed))
        state.add_faults([Fault(operation="listJobs", probability=0.25, count=100_000)])
        return [state.take_fault("listJobs") is not None for _ in range(2000)]

    first = draws(5)
    assert 400 <= sum(first) <= 600
    assert draws(5) == first and draws(6) != first
    state = EmulatorState(HereEmulatorConfig())
    state.add_faults([Fault(operation="*", count=1)])
    assert state.take_fault("token") is None, "'*' is every Pipeline API operation, not token"
    assert state.take_fault("cancel") is not None and state.faults == []


def test_cli_announces_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.json"
    pipelines.write_text(
        '[{"id": "11111111-2222-4333-8444-555555555555", "name": "from-file",'
        ' "versions": [{"id": "11111111-2222-4333-8444-666666666666", "job_seconds": 7}]}]'
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.here",
            "--port",
            "0",
            "--extra-listener",
            "127.0.0.1:0",
            "--client",
            "key-a:secret-a",
            "--job-seconds",
            "1",
            "--pipelines",
            str(pipelines),
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
        assert line.startswith("HERE emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert proc.stdout.readline().strip() == f"Pipeline API base URL: {url}{BASE}"
        assert proc.stdout.readline().strip() == f"token endpoint: {url}/oauth2/token"
        extra = proc.stdout.readline().strip()
        assert extra.startswith("also listening on http://127.0.0.1:")
        with AdminClient(url + BASE) as admin:
            config = admin.config()
            assert list(config["clients"]) == ["key-a"] and config["job_seconds"] == 1
            assert config["seed"] == 7
            [pipeline] = admin.pipelines()
            assert pipeline["name"] == "from-file"
            assert pipeline["versions"][0]["job_seconds"] == 7
            assert admin.listeners() == [extra.rsplit(" ", 1)[1]]
        with httpx.Client(base_url=url) as http:
            assert token(http, key="key-a", secret="secret-a")
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
