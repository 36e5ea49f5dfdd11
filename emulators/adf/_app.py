"""aiohttp routes: Entra ID token and discovery endpoints, IMDS, ARM Data Factory, admin API.

ARM requests go through the same checks, in order: authentication (401), route (404/405),
injected fault, subscription id form (400 ``InvalidSubscriptionId``), throttling (429
``SubscriptionRequestsThrottled``), api-version, name patterns, which factories exist (404),
then the operation itself.

Admin API under ``/_emulator``: ``GET runs``, ``POST runs/{runId}/finish``, ``GET stats``,
``GET|POST|DELETE faults``, ``POST tokens/expire``, ``POST reset``, ``GET|PATCH config``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus

from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from emulators._admin import admin_routes
from emulators._faults import PARKED, cancel_parked, emulate_latency, serve_with_fault
from emulators.adf._config import AdfEmulatorConfig, Fault, FinishStatus
from emulators.adf._state import (
    ArmError,
    BucketKind,
    Clock,
    EmulatorState,
    FactoryScope,
    IssuedToken,
    OAuthError,
    RecoveryOptions,
    tenant_not_found,
    validate_names,
)

API_VERSION = "2018-06-01"
STATE = web.AppKey("adf_emulator_state", EmulatorState)

Operation = Literal["createRun", "getRun", "cancel", "queryPipelineRuns"]
_KINDS: dict[Operation, BucketKind] = {
    "createRun": "writes",
    "getRun": "reads",
    "cancel": "writes",
    "queryPipelineRuns": "reads",
}
_FAULTS = TypeAdapter(list[Fault])


class _FinishRequest(BaseModel):
    """Body of ``POST /_emulator/runs/{runId}/finish``."""

    model_config = ConfigDict(extra="forbid")

    status: FinishStatus
    message: str | None = None


def create_app(
    config: AdfEmulatorConfig | None = None, *, clock: Clock = time.time
) -> web.Application:
    """Build the emulator app; ``clock`` drives run states, token expiry and throttling."""
    app = web.Application(middlewares=[_json_fallbacks])
    app[STATE] = EmulatorState(config or AdfEmulatorConfig(), clock)
    app[PARKED] = set[asyncio.Task[Any]]()
    app.on_shutdown.append(cancel_parked)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", _token_v2)
    app.router.add_post("/{tenant}/oauth2/token", _token_v1)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_configuration)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", _jwks)
    app.router.add_get("/metadata/identity/oauth2/token", _token_imds)
    app.router.add_route("*", "/subscriptions/{tail:.*}", _arm)
    app.router.add_get("/_emulator/runs", _admin_runs)
    app.router.add_post("/_emulator/runs/{run_id}/finish", _admin_finish_run)
    app.router.add_routes(admin_routes(_state, _FAULTS, _admin_error))
    app.router.add_get("/_emulator/config", _admin_config)
    app.router.add_patch("/_emulator/config", _admin_configure)
    return app


# -- shared helpers -------------------------------------------------------------------------


def _cloud_error(status: int, code: str, message: str, target: str | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "target": target, "details": None}}
    return web.json_response(body, status=status)


@web.middleware
async def _json_fallbacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unrouted requests get a CloudError instead of aiohttp's plain-text pages."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        return _cloud_error(405, "MethodNotAllowed", f"{request.method} is not allowed: {exc}")
    except web.HTTPNotFound:
        return _cloud_error(404, "NotFound", f"No route for {request.method} {request.path}.")


# -- Entra ID and IMDS ----------------------------------------------------------------------


def _oauth_error(err: OAuthError) -> web.Response:
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": err.error,
        "error_description": f"{err.description} Trace ID: {trace_id} "
        f"Correlation ID: {correlation_id} Timestamp: {stamp}",
        "error_codes": [err.aadsts],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={err.aadsts}",
    }
    return web.json_response(body, status=err.status)


def _oauth_fault(fault: Fault) -> web.Response:
    error = (
        "temporarily_unavailable"
        if fault.status >= 500 or fault.status == 429
        else "invalid_request"
    )
    response = web.json_response(
        {"error": error, "error_description": f"{fault.code}: {fault.message}"},
        status=fault.status,
    )
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


async def _with_token_fault(
    request: web.Request, issue: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """Shared skeleton of the three token endpoints: stats, latency, faults, errors.

    Only ``status`` faults have an answer here; others but ``drop`` (``empty`` too) hang.
    """
    state = request.app[STATE]
    state.stats.requests["token"] += 1
    await emulate_latency(state.config)
    fault = state.take_fault("token")

    async def perform() -> web.Response:
        try:
            response = await issue()
        except OAuthError as err:
            if err.status == 401:
                state.stats.unauthorized += 1
            response = _oauth_error(err)
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        return response

    def answer(fault: Fault) -> web.Response | None:
        return _oauth_fault(fault) if fault.kind == "status" else None

    return await serve_with_fault(request, fault, answer, perform)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """client_secret_basic: both halves are form-encoded before base64 (RFC 6749 2.3.1)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else None


async def _client_token(request: web.Request, *, v2: bool) -> IssuedToken:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    basic = _basic_credentials(request.headers.get("Authorization"))
    client_id, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
    return request.app[STATE].issue_client_token(
        tenant=request.match_info["tenant"],
        grant_type=fields.get("grant_type"),
        client_id=client_id,
        client_secret=secret,
        target=fields.get("scope" if v2 else "resource"),
        target_is_scope=v2,
    )


def _legacy_body(token: IssuedToken, resource: str) -> dict[str, str]:
    """v1 and IMDS answer with numbers as strings."""
    lifetime = str(round(token.expires_at - token.issued_at))
    return {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "expires_on": str(int(token.expires_at)),
        "not_before": str(int(token.issued_at)),
        "resource": resource,
        "access_token": token.access_token,
    }


async def _token_v2(request: web.Request) -> web.Response:
    async def issue() -> web.Response:
        token = await _client_token(request, v2=True)
        lifetime = round(token.expires_at - token.issued_at)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token.access_token,
            }
        )

    return await _with_token_fault(request, issue)


async def _token_v1(request: web.Request) -> web.Response:
    async def issue() -> web.Response:
        token = await _client_token(request, v2=False)
        form = await request.post()
        return web.json_response(_legacy_body(token, str(form.get("resource", ""))))

    return await _with_token_fault(request, issue)


async def _token_imds(request: web.Request) -> web.Response:
    async def issue() -> web.Response:
        query = request.query
        if request.headers.get("Metadata", "").lower() != "true":
            return _imds_error("Required metadata header not specified")
        for name in ("api-version", "resource"):
            if not query.get(name):
                return _imds_error(f"Required query variable '{name}' is missing")
        resource = query["resource"]
        client_id = query.get("client_id") or "managed-identity"
        token = request.app[STATE].issue_token(client_id, resource)
        return web.json_response({**_legacy_body(token, resource), "client_id": client_id})

    return await _with_token_fault(request, issue)


_CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
]


def openid_configuration(origin: str, tenant_id: str) -> dict[str, Any]:
    """Entra ID's v2.0 discovery document, with this emulator as the authority host."""
    authority = f"{origin}/{tenant_id}"
    return {
        "token_endpoint": f"{authority}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{authority}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{authority}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{authority}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS_SUPPORTED),
        "kerberos_endpoint": f"{authority}/kerberos",
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


async def _discovery(
    request: web.Request, document: Callable[[EmulatorState], dict[str, Any]]
) -> web.Response:
    """Discovery endpoints: counted as ``discovery``, delayed, never faulted."""
    state = request.app[STATE]
    state.stats.requests["discovery"] += 1
    await emulate_latency(state.config)
    tenant = request.match_info["tenant"]
    if not state.is_tenant(tenant):
        response = _oauth_error(tenant_not_found(tenant, "invalid_tenant"))
    else:
        response = web.json_response(document(state))
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    return response


async def _openid_configuration(request: web.Request) -> web.Response:
    """What MSAL and azure-identity read before they ask for a token."""
    origin = str(request.url.origin())
    return await _discovery(
        request, lambda state: openid_configuration(origin, state.config.tenant_id)
    )


async def _jwks(request: web.Request) -> web.Response:
    """The ``jwks_uri`` target; empty, since the emulator's tokens are opaque, not JWTs."""
    return await _discovery(request, lambda state: {"keys": []})


def _imds_error(description: str) -> web.Response:
    return web.json_response(
        {"error": "invalid_request", "error_description": description}, status=400
    )


# -- ARM ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    operation: Operation
    scope: FactoryScope
    pipeline: str | None = None
    run_id: str | None = None


_PREFIX = (
    "subscriptions",
    None,
    "resourcegroups",
    None,
    "providers",
    "microsoft.datafactory",
    "factories",
    None,
)
"""Literal segments (compared case-insensitively, like ARM) and ``None`` for names."""


def _match_operation(scope: FactoryScope, rest: list[str]) -> tuple[str, _Route] | None:
    """The HTTP method and route for the segments after ``factories/{factory}``."""
    literal = [s.lower() for s in rest]
    if len(rest) == 3 and literal[0] == "pipelines" and literal[2] == "createrun":
        return "POST", _Route("createRun", scope, pipeline=rest[1])
    if len(rest) == 2 and literal[0] == "pipelineruns":
        return "GET", _Route("getRun", scope, run_id=rest[1])
    if len(rest) == 3 and literal[0] == "pipelineruns" and literal[2] == "cancel":
        return "POST", _Route("cancel", scope, run_id=rest[1])
    if literal == ["querypipelineruns"]:
        return "POST", _Route("queryPipelineRuns", scope)
    return None


def _resolve(method: str, raw_path: str) -> _Route:
    """Match on individually decoded segments so encoded names (spaces, é, %2F) survive."""
    segments = [unquote(s) for s in raw_path.strip("/").split("/")]
    head, rest = segments[: len(_PREFIX)], segments[len(_PREFIX) :]
    matched = None
    if len(head) == len(_PREFIX) and all(
        want is None or want == got.lower() for want, got in zip(_PREFIX, head, strict=True)
    ):
        matched = _match_operation(FactoryScope(head[1], head[3], head[7]), rest)
    if matched is None:
        raise ArmError(
            404, "NotFound", f"The resource path '{raw_path}' is not an emulated Data Factory API."
        )
    allowed, route = matched
    if method != allowed:
        raise ArmError(
            405, "HttpMethodNotAllowed", f"The HTTP method '{method}' is not supported here."
        )
    return route


def _arm_response(err: ArmError) -> web.Response:
    response = _cloud_error(err.status, err.code, err.message, err.target)
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def _ratelimit_header(kind: BucketKind) -> str:
    return f"x-ms-ratelimit-remaining-subscription-{kind}"


def _fault_response(
    fault: Fault, state: EmulatorState, route: _Route, principal: str
) -> web.Response:
    response = _cloud_error(fault.status, fault.code, fault.message)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    kind = _KINDS[route.operation]
    remaining = state.remaining(route.scope.subscription, principal, kind)
    response.headers[_ratelimit_header(kind)] = str(remaining)
    return response


def _unauthorized(request: web.Request, err: ArmError) -> web.Response:
    response = _arm_response(err)
    issuer = f"{request.url.origin()}/{request.app[STATE].config.tenant_id}"
    description = err.message.replace('"', "'")
    response.headers["WWW-Authenticate"] = (
        f'Bearer authorization_uri="{issuer}", error="invalid_token", '
        f'error_description="{description}"'
    )
    return response


def _bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name, "")
    if raw == "":
        return None
    if raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    raise ArmError(400, "BadRequest", f"The query parameter '{name}' must be true or false.")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArmError(400, "BadRequest", f"The request body is not valid JSON: {exc}") from exc


async def _perform(request: web.Request, route: _Route, principal: str) -> web.Response:
    """Everything after authentication and faults: subscription, throttling, the operation."""
    state = request.app[STATE]
    kind = _KINDS[route.operation]
    header = _ratelimit_header(kind)
    try:
        state.check_subscription(route.scope.subscription)
    except ArmError as err:
        return _arm_response(err)
    try:
        remaining = state.throttle(route.scope.subscription, principal, kind)
    except ArmError as err:
        response = _arm_response(err)
        response.headers[header] = "0"
        return response
    try:
        response = await _operate(request, route, principal)
    except ArmError as err:
        response = _arm_response(err)
    response.headers[header] = str(remaining)
    return response


async def _operate(request: web.Request, route: _Route, principal: str) -> web.Response:
    state = request.app[STATE]
    version = request.query.get("api-version")
    if version is None:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version != API_VERSION:
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.",
        )
    scope = route.scope
    validate_names(scope.resource_group, scope.factory, route.pipeline)
    state.check_factory(scope)

    if route.operation == "createRun":
        assert route.pipeline is not None
        body = await _json_body(request)
        if body is not None and not isinstance(body, dict):
            raise ArmError(
                400, "BadRequest", "The request body must be a JSON object of parameters."
            )
        recovery = RecoveryOptions(
            reference_pipeline_run_id=request.query.get("referencePipelineRunId") or None,
            is_recovery=_bool_query(request, "isRecovery"),
            start_activity_name=request.query.get("startActivityName") or None,
            start_from_failure=_bool_query(request, "startFromFailure"),
        )
        run = state.create_run(
            scope,
            route.pipeline,
            body or {},
            recovery,
            principal=principal,
            client_request_id=request.headers.get("x-ms-client-request-id"),
        )
        return web.json_response({"runId": run.run_id})
    if route.operation == "getRun":
        assert route.run_id is not None
        return web.json_response(state.get_run(scope, route.run_id).to_json(state.clock()))
    if route.operation == "cancel":
        assert route.run_id is not None
        state.cancel_run(scope, route.run_id, _bool_query(request, "isRecursive"))
        return web.Response(status=200)
    body = await _json_body(request)
    return web.json_response(state.query_runs(scope, body))


async def _arm(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await emulate_latency(state.config)
    request_id = str(uuid.uuid4())
    ids = {
        "x-ms-request-id": request_id,
        "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id")
        or request_id,
    }
    if "x-ms-client-request-id" in request.headers:
        ids["x-ms-client-request-id"] = request.headers["x-ms-client-request-id"]

    response = await _arm_pipeline(request, state)
    response.headers.update(ids)
    return response


async def _arm_pipeline(request: web.Request, state: EmulatorState) -> web.Response:
    """The ARM checks in order, then the operation unless a fault stands in for it."""
    route: _Route | None = None
    routing_error: ArmError | None = None
    try:
        route = _resolve(request.method, request.rel_url.raw_path)
    except ArmError as err:
        routing_error = err
    if route is not None:
        state.stats.requests[route.operation] += 1
    try:
        principal = state.authenticate(request.headers.get("Authorization"))
    except ArmError as err:
        state.stats.unauthorized += 1
        return _unauthorized(request, err)
    if route is None:
        assert routing_error is not None
        return _arm_response(routing_error)

    fault = state.take_fault(route.operation, route.pipeline)

    def answer(fault: Fault) -> web.Response | None:
        if fault.kind == "status":
            return _fault_response(fault, state, route, principal)
        return web.json_response({}) if fault.kind == "empty" else None

    async def perform() -> web.Response:
        return await _perform(request, route, principal)

    return await serve_with_fault(request, fault, answer, perform)


# -- admin ----------------------------------------------------------------------------------


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def _admin_error(message: str) -> web.Response:
    return _cloud_error(400, "BadRequest", message)


def _public_config(config: AdfEmulatorConfig) -> dict[str, Any]:
    """The running configuration; client secrets are not echoed."""
    data = config.model_dump(mode="json")
    data["clients"] = sorted(config.clients)
    for name in ("factories", "known_pipelines", "failing_pipelines"):
        if data[name] is not None:
            data[name] = sorted(data[name])
    return data


async def _admin_runs(request: web.Request) -> web.Response:
    return web.json_response({"runs": request.app[STATE].admin_runs()})


async def _admin_finish_run(request: web.Request) -> web.Response:
    """End a Queued or InProgress run now as Succeeded or Failed; answers the run."""
    state = request.app[STATE]
    try:
        body = _FinishRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _admin_error(f'Expected {{"status": "Succeeded" | "Failed", "message"?}}: {exc}')
    try:
        run = state.finish_run(request.match_info["run_id"], body.status, body.message)
    except ArmError as err:
        return _arm_response(err)
    return web.json_response(state.admin_run(run))


async def _admin_config(request: web.Request) -> web.Response:
    return web.json_response(_public_config(request.app[STATE].config))


async def _admin_configure(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        config = request.app[STATE].configure(changes)
    except (ValueError, ValidationError) as exc:
        return _admin_error(str(exc))
    return web.json_response(_public_config(config))
