"""HERE platform Pipeline API v2: activate a pipeline version, follow it, cancel it.

Facts from HERE's API description (../shared/reference/here-pipeline.md):
- activate, cancel (and the other operations) may answer 307 with a Location: the bridge
  sends the same call there itself, once, and only to a host the target allows. (httpx's
  own redirects would drop the Authorization header when the host changes.)
- errors carry ``status``, ``code``, ``message`` and ``errors[]``: they become the reason.
- there is no idempotency key (X-Request-ID is for tracing): the ledger prevents a second
  activate, and a lost answer is resolved by reading the version's operations, an
  activation adopted only if it carries what this bridge sent (runAsId, highAvailability, its own
  clientId) and its job the catalog versions asked for;
- a cancel acts on whatever job the version runs: the bridge reads the version first and
  cancels only while this run's job is the one running; HERE takes no new operation while
  one is being processed, so a cancel during the activation is tried again shortly;
- 429 and 503 come without Retry-After when a quota is exceeded: the retry policy backs
  off on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import httpx

from contracts import CancelOptions, HereRun, RunSpec, RunState, System

from ..._http import api_client, json_object, json_time, status_error, transport_error
from ...auth import BearerTokenAuth, TokenSource
from ...budget import ReadBudget
from ...errors import BackendRejected, OutcomeUnknown, TransientBackendError
from .._base import CreatedRun, FollowedRun, Poll, RunStatus, own_run
from ._names import pipeline_segment, uuid_segment
from ._status import JOB_TO_STATE, OPERATION_PENDING, job_of, run_status
from ._target import HereTarget
from ._token import HereTokenSource

_REQUEST_ID_NAMESPACE = uuid.UUID("5b0d1d5e-32a4-4f6e-8a0b-0b7f3a1c9e24")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def request_header_id(request_id: str, call: str) -> str:
    """X-Request-ID of a call made for a request: derived, so a retry traces the same."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"{request_id}/{call}"))


def here_error(response: httpx.Response) -> tuple[str | None, str | None]:
    """Code and message of a Pipeline API error body, the field errors included."""
    body = json_object(response)
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    fields = [
        f"{error.get('field')}: {error.get('message')}"
        for error in body.get("errors") or []
        if isinstance(error, dict)
    ]
    if fields:
        message = "; ".join([message or "invalid request", *fields])
    return code, message or (response.text[:500] or None)


class HereBackend:
    system: ClassVar[System] = System.HERE
    status_words: ClassVar[Mapping[RunState, str]] = {
        state: status for status, state in JOB_TO_STATE.items() if state is not RunState.QUEUED
    } | {RunState.QUEUED: "starting"}

    def __init__(
        self,
        target: HereTarget,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._target = target
        self._tokens = tokens or HereTokenSource(
            target.credentials, scope=target.scope, timeout=target.timeout_seconds
        )
        self._reads = ReadBudget(target.read_budget)
        self._client = api_client(
            auth=BearerTokenAuth(self._tokens), timeout=target.timeout_seconds, transport=transport
        )
        self._base = target.base_url.rstrip("/") if target.base_url else None
        self._client_id = target.credentials.app_client_id()
        """The app's own client id, when the credentials name it: HERE's operations carry
        the clientId of the app that requested them."""

    async def _base_url(self) -> str:
        """The configured base URL, or the one the API Lookup service names."""
        if self._base is None:
            response = await self._send(
                "GET", self._target.lookup_url, operation="API lookup", idempotent=True
            )
            found = response.json()
            entries = found if isinstance(found, list) else [found]
            urls = [e.get("baseURL") for e in entries if isinstance(e, dict)]
            if not urls or not isinstance(urls[0], str):
                raise BackendRejected(f"API lookup: no baseURL in {str(found)[:200]}")
            self._base = urls[0].rstrip("/")
        return self._base

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        base = await self._base_url()
        return await self._send(
            method,
            base + path,
            operation=operation,
            idempotent=idempotent,
            json=json,
            params=params,
            headers=headers,
            allowed=self._target.allowed_hosts(base),
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        idempotent: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        allowed: frozenset[str] = frozenset(),
    ) -> httpx.Response:
        if method == "GET":
            await self._reads.take()
        response = await self._request(method, url, operation, idempotent, json, params, headers)
        if response.status_code in _REDIRECTS:
            location = urljoin(url, response.headers.get("Location", ""))
            to = urlsplit(location)
            host = to.hostname  # lower-cased, as the allowed hosts are
            if response.status_code != 307 or host not in allowed:
                raise BackendRejected(
                    f"{operation}: HTTP {response.status_code} to {host or 'nowhere'}, "
                    "which the target does not allow (allowed_redirect_hosts)",
                    status_code=response.status_code,
                )
            if to.scheme.lower() not in ("http", "https") or (
                urlsplit(url).scheme.lower() == "https" and to.scheme.lower() != "https"
            ):
                raise BackendRejected(
                    f"{operation}: HTTP 307 from {urlsplit(url).scheme} to {to.scheme or 'no'} "
                    f"scheme at {host}: refused, the bearer token would go out in clear text",
                    status_code=response.status_code,
                )
            response = await self._request(
                method, location, operation, idempotent, json, params, headers
            )
            if response.status_code in _REDIRECTS:
                raise BackendRejected(f"{operation}: redirected twice", status_code=307)
        if response.is_success:
            return response
        code, message = here_error(response)
        raise status_error(
            response, operation=operation, idempotent=idempotent, code=code, message=message
        )

    async def _request(
        self,
        method: str,
        url: str,
        operation: str,
        idempotent: bool,
        json: Any,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, url, json=json, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, operation=operation, idempotent=idempotent) from exc

    def _version_path(self, run: HereRun) -> str:
        return (
            f"/v2/pipelines/{pipeline_segment(run.pipeline_id)}"
            f"/versions/{uuid_segment('version id', str(run.version_id))}"
        )

    async def create_run(
        self, run: RunSpec, *, request_id: str, correlation_id: str | None = None
    ) -> CreatedRun:
        spec = own_run(run, HereRun)
        headers = {"X-Request-ID": request_header_id(request_id, "activate")}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        response = await self._call(
            "POST",
            f"{self._version_path(spec)}/operations/activate",
            operation="activate",
            idempotent=False,
            json=spec.activate_body(),
            headers=headers,
        )
        operation_id = json_object(response).get("id")
        if not isinstance(operation_id, str) or not operation_id:
            raise OutcomeUnknown(f"activate: HTTP {response.status_code} without an operation")
        return CreatedRun(operation_id)

    async def _version(self, spec: HereRun) -> dict[str, Any]:
        response = await self._call(
            "GET",
            self._version_path(spec),
            operation="get version",
            idempotent=True,
            params={"verbose": "true"},
        )
        return json_object(response)

    async def _activation(
        self, run: FollowedRun, version: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The activate operation and, once it succeeded, its job (None until it shows).

        The version's ``latestJob`` is this activation's only while its ``latestOperation``
        is: after any later operation (another activation, a cancel, a pause) the jobs list
        is read, and the activation's job is the first created at or after it."""
        spec = own_run(run.run, HereRun)
        latest = version.get("latestOperation")
        latest_is_ours = isinstance(latest, dict) and latest.get("id") == run.run_id
        if isinstance(latest, dict) and latest_is_ours:
            operation = latest
        else:
            response = await self._call(
                "GET",
                f"{self._version_path(spec)}/operations/{uuid_segment('operation id', run.run_id)}",
                operation="get operation",
                idempotent=True,
            )
            operation = json_object(response)
        if operation.get("state") != "succeeded":
            return operation, None
        job = version.get("latestJob")
        if latest_is_ours and isinstance(job, dict) and job_of(operation, [job]) is not None:
            return operation, job
        response = await self._call(
            "GET", f"{self._version_path(spec)}/jobs", operation="list jobs", idempotent=True
        )
        jobs = response.json()
        found = (
            job_of(operation, [j for j in jobs if isinstance(j, dict)])
            if isinstance(jobs, list)
            else None
        )
        return operation, found

    async def _status(self, run: FollowedRun, version: dict[str, Any]) -> RunStatus:
        """The activation's state, from the version and, if need be, its own operation and
        the version's jobs."""
        return run_status(*await self._activation(run, version))

    async def find_runs(
        self, run: RunSpec, *, request_id: str, since: datetime, until: datetime
    ) -> list[RunStatus]:
        """The activations this request may have made: the version's activate operations
        made within the window that carry what this bridge sent, and whose job (once there
        is one) has the catalog versions the request asked for. Anything else was activated
        by someone else (HERE's UI, another tool): not this request's. The whole operations
        list is read, not just the latest: someone may have activated the version since."""
        spec = own_run(run, HereRun)
        version = await self._version(spec)
        response = await self._call(
            "GET",
            f"{self._version_path(spec)}/operations",
            operation="list operations",
            idempotent=True,
        )
        listed = response.json()
        operations = (
            [op for op in listed if isinstance(op, dict)] if isinstance(listed, list) else []
        )
        found: list[RunStatus] = []
        for candidate in operations:
            if candidate.get("requestType") != "activate" or not candidate.get("id"):
                continue
            created = json_time(candidate.get("created"))
            if created is None or not since <= created <= until:
                continue
            if not self._requested_as(candidate, spec, version):
                continue
            followed = FollowedRun(str(candidate.get("id")), spec)
            operation, job = await self._activation(followed, version)
            if job is not None and not _job_fits(job, spec):
                continue
            found.append(run_status(operation, job))
        return found

    def _requested_as(
        self, operation: dict[str, Any], spec: HereRun, version: dict[str, Any]
    ) -> bool:
        """Whether an activate operation carries what this bridge sent for ``spec``. A field
        the operation leaves out proves nothing either way; one it carries must fit."""
        client_id = operation.get("clientId")
        if self._client_id and isinstance(client_id, str) and client_id != self._client_id:
            return False
        options = operation.get("options")
        high_availability = options.get("highAvailability") if isinstance(options, dict) else None
        if (
            spec.high_availability is not None
            and isinstance(high_availability, bool)
            and high_availability != spec.high_availability
        ):
            return False
        run_as = operation.get("runAsId")
        if not isinstance(run_as, str) or not run_as:
            return True
        if spec.run_as_id is not None:
            return run_as == spec.run_as_id
        # none was sent: HERE runs it as the version's runAsId, or else as the calling app
        # (hrn:<partition>:account::<org>:app/<client id>), which only a known client id tells
        if run_as == version.get("runAsId") or not self._client_id:
            return True
        return run_as.endswith(f":app/{self._client_id}")

    async def get_run(self, run: FollowedRun) -> RunStatus:
        return await self._status(run, await self._version(own_run(run.run, HereRun)))

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        """One read of each version that has followed runs (more only to find a job)."""
        until = datetime.now(UTC)
        before = self._reads.spent
        by_version: dict[tuple[str, str], list[FollowedRun]] = {}
        for followed in runs:
            spec = own_run(followed.run, HereRun)
            by_version.setdefault((spec.pipeline_id, str(spec.version_id)), []).append(followed)
        statuses: list[RunStatus] = []
        for group in by_version.values():
            version = await self._version(own_run(group[0].run, HereRun))
            for followed in group:
                statuses.append(await self._status(followed, version))
        return Poll(statuses=statuses, through=until, reads=self._reads.spent - before)

    async def cancel_run(self, run: FollowedRun, options: CancelOptions | None) -> bool:
        """A cancel operation on the version, once the version is read and its job is this
        run's. HERE's cancel stops whatever job the version runs, so nothing is sent when
        this run has ended or another activation owns the version (False), or when a cancel
        already took effect (True: an earlier attempt whose answer was lost, or someone
        else's). While the activation is still being processed HERE refuses any operation:
        that is a transient error, tried again shortly by the caller's retry policy."""
        spec = own_run(run.run, HereRun)
        settled = await self._cancel_settled(run)
        if settled is not None:
            return settled
        try:
            await self._call(
                "POST",
                f"{self._version_path(spec)}/operations/cancel",
                operation="cancel",
                idempotent=True,
            )
        except BackendRejected as refused:
            if refused.status_code != 400:
                raise
            settled = await self._cancel_settled(run, refused)
            if settled is not None:
                return settled
            raise
        return True

    async def _cancel_settled(
        self, run: FollowedRun, refused: BackendRejected | None = None
    ) -> bool | None:
        """What a cancel of ``run`` comes to without sending one: True when a cancel took
        effect, False when the run has ended (or is not the version's any more), None when a
        cancel is to be sent (or, after ``refused``, HERE's refusal stands). Raises a
        transient error while HERE would refuse one because an operation is pending."""
        version = await self._version(own_run(run.run, HereRun))
        operation, job = await self._activation(run, version)
        status = run_status(operation, job)
        latest = version.get("latestOperation")
        latest = latest if isinstance(latest, dict) else {}
        if status.state is RunState.CANCELLED:
            return True
        if status.state is not None and status.state.is_terminal:
            return False
        if latest.get("requestType") == "activate" and latest.get("id") != run.run_id:
            return False  # another activation owns the version: its job is not this run's
        if (
            latest.get("requestType") == "cancel"
            and latest.get("state") != "failed"
            and not _before(latest, operation)
        ):
            return True  # a cancel after this activation, with its job still on: under way
        pending = operation if operation.get("state") in OPERATION_PENDING else None
        if pending is None and latest.get("state") in OPERATION_PENDING:
            pending = latest
        if pending is not None:
            raise TransientBackendError(
                f"cancel of run {run.run_id}: HERE takes no new operation on the version while "
                f"its {pending.get('requestType')} operation {pending.get('id')} is "
                f"{pending.get('state')}; the cancel is tried again",
                status_code=refused.status_code if refused else None,
                code=refused.code if refused else None,
            )
        if refused is not None and job is None and operation.get("state") == "succeeded":
            raise TransientBackendError(
                f"cancel of run {run.run_id}: HERE refused it before the activation's job "
                f"showed ({refused.message}); the cancel is tried again",
                status_code=refused.status_code,
                code=refused.code,
            )
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._tokens.aclose()


def _before(operation: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether ``operation`` was created before ``other`` (False when either time is not
    known: the version's latest operation comes last)."""
    first, second = json_time(operation.get("created")), json_time(other.get("created"))
    return first is not None and second is not None and first < second


def _job_fits(job: dict[str, Any], spec: HereRun) -> bool:
    """Whether a job ran with what the request asked for: the catalog versions it gave,
    its runAsId and highAvailability. A field the job leaves out (HERE may store the
    catalog versions only once the job runs) proves nothing."""
    body = spec.activate_body()
    catalogs = job.get("catalogVersions")
    catalogs = catalogs if isinstance(catalogs, dict) else {}
    for name in ("inputCatalogs", "outputCatalog"):
        given = catalogs.get(name)
        if name in body and given is not None and _without_nulls(given) != body[name]:
            return False
    for name in ("runAsId", "highAvailability"):
        value = job.get(name)
        if name in body and value is not None and value != body[name]:
            return False
    return True


def _without_nulls(value: Any) -> Any:
    """A JSON value without its null members (HERE may echo an absent sinceVersion so)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value
