"""aiohttp routes: HERE Account's token endpoint, the Pipeline API v2 and the admin API.

Token endpoint ``POST /oauth2/token`` (the path of ``https://account.api.here.com/oauth2/token``):
fault, then the signed request's checks (header, signature method, version, timestamp, key,
per-app request window, signature, nonce), then the body (grant type, ``expires_in``,
``scope``).

Pipeline API under ``/pipeline-service`` (the base URL API Lookup gives), every request in
the same order: route (counted in stats), bearer token (401), route errors (404/405/501),
injected fault, then the operation: pipeline and version lookup (404), body validation (400
``E1000``), state checks (400), effect. ``X-Request-ID`` and ``X-Correlation-ID`` are echoed
on every answer (generated when absent), errors included.

Every answer's ``Date`` header tells the emulator's own time (its injected clock plus what the
admin API advanced it by), as a 401204 from the token endpoint means it.

Admin API under ``/_emulator``: ``GET|POST pipelines``, ``POST pipelines/{p}/versions``,
``PATCH pipelines/{p}/versions/{v}``, ``GET operations`` and ``GET jobs`` (optional
``pipelineId``/``versionId`` query), ``POST jobs/{jobId}/finish``, ``GET stats``,
``GET|POST|DELETE faults``, ``POST tokens/expire``, ``POST reset``, ``GET|PATCH config``,
``GET clock``, ``POST clock/advance``, ``GET listeners``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from emulators._admin import ADMIN_PATH, admin_routes
from emulators._faults import PARKED, cancel_parked, emulate_latency, serve_with_fault
from emulators._server import start_site
from emulators.here._config import (
    Fault,
    FinishState,
    HereEmulatorConfig,
    PipelineSpec,
    VersionSpec,
)
from emulators.here._state import (
    Caller,
    Clock,
    EmulatorState,
    PipelineError,
    TokenError,
    TokenRequest,
    iso,
    pipeline_key,
)

PIPELINE_BASE_PATH = "/pipeline-service"
TOKEN_PATH = "/oauth2/token"

STATE = web.AppKey("here_emulator_state", EmulatorState)
_LISTENERS = web.AppKey("here_emulator_listeners", list[str])
_EXTRA_RUNNERS = web.AppKey("here_emulator_extra_runners", list[web.AppRunner])
_FAULTS = TypeAdapter(list[Fault])

Listener = tuple[str, int]
"""``(host, port)`` of an extra listener serving the same emulator; port 0 picks one."""


class _FinishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: FinishState
    message: str | None = None


class _AdvanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0)


def create_app(
    config: HereEmulatorConfig | None = None,
    *,
    clock: Clock = time.time,
    extra_listeners: Sequence[Listener] = (),
) -> web.Application:
    """Build the emulator app; ``clock`` drives tokens, nonces, operations and jobs.

    ``extra_listeners`` serve the same state on other sockets (started with the app, on its
    loop), e.g. a second port to stand in for the other host of a 307 redirect; their URLs
    are listed by ``GET /_emulator/listeners``.
    """
    state = EmulatorState(config or HereEmulatorConfig(), clock)
    parked = set[asyncio.Task[Any]]()
    listeners: list[str] = []
    app = _build(state, parked, listeners)
    app[_EXTRA_RUNNERS] = []
    app.on_shutdown.append(cancel_parked)
    wanted = list(extra_listeners)

    async def start_extra(app: web.Application) -> None:
        for host, port in wanted:
            runner, url = await start_site(_build(state, parked, listeners), host, port)
            app[_EXTRA_RUNNERS].append(runner)
            listeners.append(url)

    async def stop_extra(app: web.Application) -> None:
        for runner in app[_EXTRA_RUNNERS]:
            await runner.cleanup()
        app[_EXTRA_RUNNERS].clear()

    if wanted:
        app.on_startup.append(start_extra)
        app.on_cleanup.append(stop_extra)
    return app


def listener_urls(app: web.Application) -> list[str]:
    """The extra listeners' root URLs (once the app has started)."""
    urls: list[str] = app[_LISTENERS]
    return list(urls)


def _build(
    state: EmulatorState, parked: set[asyncio.Task[Any]], listeners: list[str]
) -> web.Application:
    app = web.Application(middlewares=[_json_fallbacks])
    app.on_response_prepare.append(_dated)
    app[STATE] = state
    app[PARKED] = parked
    app[_LISTENERS] = listeners
    app.router.add_post(TOKEN_PATH, _token)
    app.router.add_route("*", PIPELINE_BASE_PATH + "/{tail:.*}", _pipeline_api)
    admin = ADMIN_PATH
    app.router.add_get(f"{admin}/pipelines", _admin_pipelines)
    app.router.add_post(f"{admin}/pipelines", _admin_create_pipeline)
    app.router.add_post(f"{admin}/pipelines/{{pipeline_id}}/versions", _admin_create_version)
    app.router.add_patch(
        f"{admin}/pipelines/{{pipeline_id}}/versions/{{version_id}}", _admin_update_version
    )
    app.router.add_get(f"{admin}/operations", _admin_operations)
    app.router.add_get(f"{admin}/jobs", _admin_jobs)
    app.router.add_post(f"{admin}/jobs/{{job_id}}/finish", _admin_finish_job)
    app.router.add_routes(admin_routes(_state, _FAULTS, _admin_error))
    app.router.add_get(f"{admin}/config", _admin_config)
    app.router.add_patch(f"{admin}/config", _admin_configure)
    app.router.add_get(f"{admin}/clock", _admin_clock)
    app.router.add_post(f"{admin}/clock/advance", _admin_advance)
    app.router.add_get(f"{admin}/listeners", _admin_listeners)
    return app


# -- shared helpers -------------------------------------------------------------------------


def _pipeline_error(err: PipelineError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


@web.middleware
async def _json_fallbacks(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unrouted requests get a Pipeline API ErrorMessage instead of aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return _pipeline_error(
            PipelineError(405, "E4050", f"{request.method} is not allowed on {request.path}.")
        )
    except web.HTTPNotFound:
        return _pipeline_error(
            PipelineError(404, "E4044", f"No route for {request.method} {request.path}.")
        )


async def _dated(request: web.Request, response: web.StreamResponse) -> None:
    """The Date header from the emulator's own clock (injected, and advanced by the admin
    API), as the rest of its answers: a client correcting a 401204 reads its time there."""
    now = request.app[STATE].now()
    response.headers["Date"] = email.utils.formatdate(now, usegmt=True)


def _trace_ids(request: web.Request) -> dict[str, str]:
    return {
        "X-Request-ID": request.headers.get("X-Request-ID") or str(uuid.uuid4()),
        "X-Correlation-ID": request.headers.get("X-Correlation-ID") or str(uuid.uuid4()),
    }


def _fault_answer(
    request: web.Request,
    fault: Fault,
    *,
    status: Callable[[Fault], web.Response],
    empty_status: int,
    base_path: str,
) -> web.Response | None:
    """A fault's response, rendered for this endpoint; ``None`` for a timeout.

    A redirect's ``location`` replaces ``base_path``; the rest of the path and the query stay.
    """
    if fault.kind == "status":
        return status(fault)
    if fault.kind == "empty":
        return web.json_response({}, status=empty_status)
    if fault.kind == "redirect":
        assert fault.location is not None
        rest = request.rel_url.raw_path[len(base_path) :]
        query = request.rel_url.raw_query_string
        location = fault.location.rstrip("/") + rest + (f"?{query}" if query else "")
        response = web.Response(status=307, headers={"Location": location})
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response
    return None


# -- token endpoint -----------------------------------------------------------------------------


def _token_error(err: TokenError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


def _token_fault(fault: Fault) -> web.Response:
    code = fault.error_code
    if code is None:
        code = 429002 if fault.status == 429 else fault.status * 1000
    response = _token_error(TokenError(fault.status, code, fault.message))
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


async def _read_token_request(request: web.Request) -> TokenRequest:
    raw = await request.read()
    query = parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
    json_body = request.content_type == "application/json"
    if json_body:
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise TokenError(400, 400002, "Invalid JSON.", oauth_error="invalid_request") from None
        if not isinstance(data, dict):
            raise TokenError(400, 400002, "Invalid JSON.", oauth_error="invalid_request")
        params = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
    else:
        try:
            params = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise TokenError(
                400, 400200, "Received invalid data.", oauth_error="invalid_request"
            ) from None
    return TokenRequest(
        method=request.method,
        scheme=request.scheme,
        host=request.host,
        path=request.rel_url.raw_path,
        authorization=request.headers.get("Authorization"),
        query=query,
        body_params=params,
        json_body=json_body,
    )


async def _token(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.stats.requests["token"] += 1
    await emulate_latency(state.config)
    ids = _trace_ids(request)

    async def issue() -> web.Response:
        try:
            token_request = await _read_token_request(request)
            token = state.issue_token(token_request)
        except TokenError as err:
            state.stats.token_refusals[str(err.error_code)] += 1
            return _token_error(err)
        lifetime = round(token.expires_at - token.issued_at)
        if token_request.json_body:
            body: dict[str, Any] = {
                "accessToken": token.access_token,
                "tokenType": "bearer",
                "expiresIn": lifetime,
            }
        else:
            body = {
                "access_token": token.access_token,
                "token_type": "bearer",
                "expires_in": lifetime,
            }
        if token.scope is not None:
            body["scope"] = token.scope
        return web.json_response(body)

    answer = partial(_fault_answer, request, status=_token_fault, empty_status=200, base_path="")
    response = await serve_with_fault(request, state.take_fault("token"), answer, issue)
    response.headers.update(ids)
    return response


# -- Pipeline API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    operation: str
    pipeline: str | None = None
    version: str | None = None
    operation_id: str | None = None


_P, _V, _O = "{pipelineId}", "{versionId}", "{operationId}"
_ROUTES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("v2", "pipelines", _P), "GET", "getPipeline"),
    (("v2", "pipelines", _P, "versions"), "GET", "listVersions"),
    (("v2", "pipelines", _P, "versions", _V), "GET", "getVersion"),
    (("v2", "pipelines", _P, "versions", _V, "jobs"), "GET", "listJobs"),
    (("v2", "pipelines", _P, "versions", _V, "operations"), "GET", "listOperations"),
    (("v2", "pipelines", _P, "versions", _V, "operations", "activate"), "POST", "activate"),
    (("v2", "pipelines", _P, "versions", _V, "operations", "cancel"), "POST", "cancel"),
    (("v2", "pipelines", _P, "versions", _V, "operations", _O), "GET", "getOperation"),
)
_NOT_EMULATED = frozenset({"deactivate", "pause", "resume", "upgrade"})
_EMPTY_STATUS = {"activate": 202, "cancel": 202}


def _resolve(method: str, raw_tail: str) -> _Route:
    """Match decoded segments (an HRN's ``:`` may come as ``%3A``) against the route table."""
    segments = [unquote(s) for s in raw_tail.strip("/").split("/")]
    path_matched = False
    for pattern, allowed, operation in _ROUTES:
        if len(pattern) != len(segments):
            continue
        values: dict[str, str] = {}
        for want, got in zip(pattern, segments, strict=True):
            if want.startswith("{"):
                if not got:
                    break
                values[want] = got
            elif want != got:
                break
        else:
            path_matched = True
            if method == allowed:
                return _Route(operation, values.get(_P), values.get(_V), values.get(_O))
    if (
        method == "POST"
        and len(segments) == 7
        and segments[5] == "operations"
        and segments[6] in _NOT_EMULATED
    ):
        raise PipelineError(
            501, "E5010", f"The emulator does not emulate '{segments[6]}' operations."
        )
    if path_matched:
        raise PipelineError(405, "E4050", f"The HTTP method '{method}' is not supported here.")
    raise PipelineError(
        404,
        "E4044",
        f"The path '{PIPELINE_BASE_PATH}{raw_tail}' is not an emulated Pipeline API endpoint.",
    )


def _fault_response(fault: Fault) -> web.Response:
    response = _pipeline_error(PipelineError(fault.status, fault.code, fault.message))
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def _unauthorized(err: PipelineError) -> web.Response:
    response = _pipeline_error(err)
    description = err.message.replace('"', "'")
    response.headers["WWW-Authenticate"] = (
        f'Bearer error="invalid_token", error_description="{description}"'
    )
    return response


def _verbose(request: web.Request) -> bool:
    raw = request.query.get("verbose", "")
    if raw.lower() in {"", "false"}:
        return False
    if raw.lower() == "true":
        return True
    raise PipelineError(
        400,
        "E1000",
        "Validation Failed",
        template="{validation.error}",
        errors=[
            {
                "field": "verbose",
                "invalidValue": raw,
                "message": "must be a boolean",
                "code": "E1002",
            }
        ],
    )


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineError(
            400,
            "E1001",
            f"Malformed JSON request: {exc}",
            template="{request.malformed}",
        ) from exc


async def _operate(
    request: web.Request, route: _Route, caller: Caller, ids: dict[str, str]
) -> web.Response:
    state = request.app[STATE]
    pipeline, version = route.pipeline or "", route.version or ""
    try:
        if route.operation == "activate":
            body = await _json_body(request)
            op = state.activate(
                pipeline,
                version,
                body,
                caller=caller,
                request_id=ids["X-Request-ID"],
                correlation_id=ids["X-Correlation-ID"],
            )
            return web.json_response(op.to_json(state.now()), status=202)
        if route.operation == "cancel":
            op = state.cancel(
                pipeline,
                version,
                caller=caller,
                request_id=ids["X-Request-ID"],
                correlation_id=ids["X-Correlation-ID"],
            )
            return web.json_response(op.to_json(state.now()), status=202)
        now = state.now()
        if route.operation == "getPipeline":
            return web.json_response(state.get_pipeline(pipeline).to_json(state.config.org))
        if route.operation == "listVersions":
            verbose = _verbose(request)
            versions = state.get_pipeline(pipeline).versions.values()
            return web.json_response([v.to_json(now, verbose=verbose) for v in versions])
        if route.operation == "getOperation":
            op = state.find_operation(pipeline, version, route.operation_id or "")
            return web.json_response(op.to_json(now))
        _, found = state.lookup(pipeline, version)
        if route.operation == "getVersion":
            return web.json_response(found.to_json(now, verbose=_verbose(request)))
        if route.operation == "listJobs":
            return web.json_response([job.to_json(now) for job in found.visible_jobs(now)])
        assert route.operation == "listOperations"
        return web.json_response([op.to_json(now) for op in found.operations])
    except PipelineError as err:
        return _pipeline_error(err)


async def _pipeline_api(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await emulate_latency(state.config)
    ids = _trace_ids(request)
    response = await _pipeline_flow(request, state, ids)
    response.headers.update(ids)
    return response


async def _pipeline_flow(
    request: web.Request, state: EmulatorState, ids: dict[str, str]
) -> web.Response:
    """The Pipeline API checks in order, then the operation unless a fault stands in for it."""
    tail = request.rel_url.raw_path[len(PIPELINE_BASE_PATH) :]
    route: _Route | None = None
    routing_error: PipelineError | None = None
    try:
        route = _resolve(request.method, tail)
    except PipelineError as err:
        routing_error = err
    if route is not None:
        state.stats.requests[route.operation] += 1
    try:
        caller = state.authenticate(request.headers.get("Authorization"))
    except PipelineError as err:
        state.stats.unauthorized += 1
        return _unauthorized(err)
    if route is None:
        assert routing_error is not None
        return _pipeline_error(routing_error)

    fault = state.take_fault(
        route.operation,
        pipeline_key(route.pipeline) if route.pipeline is not None else None,
        route.version,
    )
    answer = partial(
        _fault_answer,
        request,
        status=_fault_response,
        empty_status=_EMPTY_STATUS.get(route.operation, 200),
        base_path=PIPELINE_BASE_PATH,
    )

    async def perform() -> web.Response:
        return await _operate(request, route, caller, ids)

    return await serve_with_fault(request, fault, answer, perform)


# -- admin ------------------------------------------------------------------------------------


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE]


def _admin_error(message: str, status: int = 400) -> web.Response:
    return _pipeline_error(PipelineError(status, "E1000", message))


def _public_config(config: HereEmulatorConfig) -> dict[str, Any]:
    """The running configuration; client secrets are not echoed."""
    data = config.model_dump(mode="json")
    data["clients"] = {
        key: {"client_id": c.client_id, "user_id": c.user_id} for key, c in config.clients.items()
    }
    return data


async def _read_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    data = json.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


async def _admin_pipelines(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {"pipelines": [state.admin_pipeline(p) for p in state.pipelines.values()]}
    )


async def _admin_create_pipeline(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        spec = PipelineSpec.model_validate(await _read_object(request))
        pipeline = state.add_pipeline(spec)
    except (ValueError, ValidationError) as exc:
        return _admin_error(str(exc))
    except PipelineError as err:
        return _pipeline_error(err)
    return web.json_response(state.admin_pipeline(pipeline), status=201)


async def _admin_create_version(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        spec = VersionSpec.model_validate(await _read_object(request))
        version = state.add_version(request.match_info["pipeline_id"], spec)
    except (ValueError, ValidationError) as exc:
        return _admin_error(str(exc))
    except PipelineError as err:
        return _pipeline_error(err)
    pipeline = state.get_pipeline(version.pipeline_id)
    return web.json_response(state.admin_pipeline(pipeline), status=201)


async def _admin_update_version(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        version = state.update_version(
            request.match_info["pipeline_id"],
            request.match_info["version_id"],
            await _read_object(request),
        )
    except (ValueError, ValidationError) as exc:
        return _admin_error(str(exc))
    except PipelineError as err:
        return _pipeline_error(err)
    return web.json_response(state.admin_pipeline(state.get_pipeline(version.pipeline_id)))


async def _admin_operations(request: web.Request) -> web.Response:
    query = request.query
    ops = request.app[STATE].admin_operations(query.get("pipelineId"), query.get("versionId"))
    return web.json_response({"operations": ops})


async def _admin_jobs(request: web.Request) -> web.Response:
    query = request.query
    jobs = request.app[STATE].admin_jobs(query.get("pipelineId"), query.get("versionId"))
    return web.json_response({"jobs": jobs})


async def _admin_finish_job(request: web.Request) -> web.Response:
    """End a starting or running job now as completed or failed; answers the job."""
    state = request.app[STATE]
    try:
        body = _FinishRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _admin_error(f'Expected {{"state": "completed" | "failed", "message"?}}: {exc}')
    try:
        job = state.finish_job(request.match_info["job_id"], body.state, body.message)
    except PipelineError as err:
        return _pipeline_error(err)
    return web.json_response(state.admin_job(job))


async def _admin_config(request: web.Request) -> web.Response:
    return web.json_response(_public_config(request.app[STATE].config))


async def _admin_configure(request: web.Request) -> web.Response:
    try:
        config = request.app[STATE].configure(await _read_object(request))
    except (ValueError, ValidationError) as exc:
        return _admin_error(str(exc))
    return web.json_response(_public_config(config))


def _clock_body(state: EmulatorState) -> dict[str, Any]:
    now = state.now()
    return {"now": now, "iso": iso(now), "offset": state.offset}


async def _admin_clock(request: web.Request) -> web.Response:
    return web.json_response(_clock_body(request.app[STATE]))


async def _admin_advance(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = _AdvanceRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _admin_error(f'Expected {{"seconds": N >= 0}}: {exc}')
    state.advance(body.seconds)
    return web.json_response(_clock_body(state))


async def _admin_listeners(request: web.Request) -> web.Response:
    return web.json_response({"listeners": listener_urls(request.app)})
