"""HERE platform Pipeline API v2: activate a pipeline version, follow it, cancel it.

Facts from HERE's API description (../shared/reference/here-pipeline.md):
- activate, cancel (and the other operations) may answer 307 with a Location: the bridge
  sends the same call there itself, once, and only to a host the target allows. (httpx's
  own redirects would drop the Authorization header when the host changes.)
- errors carry ``status``, ``code``, ``message`` and ``errors[]``: they become the reason.
- there is no idempotency key (X-Request-ID is for tracing): the ledger prevents a second
  activate, and a lost answer is resolved by reading the version's ``latestOperation``;
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

from ..._http import json_object, json_time, status_error, transport_error
from ...auth import BearerTokenAuth, TokenSource
from ...budget import ReadBudget
from ...errors import BackendError, BackendRejected, OutcomeUnknown
from .._base import CreatedRun, FollowedRun, Poll, RunStatus
from ._names import pipeline_segment, uuid_segment
from ._status import JOB_TO_STATE, job_of, run_status
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
        self._client = httpx.AsyncClient(
            auth=BearerTokenAuth(self._tokens),
            timeout=target.timeout_seconds,
            transport=transport,
            headers={"User-Agent": "runbridge"},
            follow_redirects=False,
        )
        self._base = target.base_url.rstrip("/") if target.base_url else None

    @property
    def reads(self) -> int:
        return self._reads.spent

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
            host = urlsplit(location).hostname
            if response.status_code != 307 or host not in allowed:
                raise BackendRejected(
                    f"{operation}: HTTP {response.status_code} to {host or 'nowhere'}, "
                    "which the target does not allow (allowed_redirect_hosts)",
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

    @staticmethod
    def _here(run: RunSpec) -> HereRun:
        if not isinstance(run, HereRun):  # the router sends each system to its own backend
            raise TypeError(f"a HERE target cannot run a {run.system} request")
        return run

    def _version_path(self, run: HereRun) -> str:
        return (
            f"/v2/pipelines/{pipeline_segment(run.pipeline_id)}"
            f"/versions/{uuid_segment('version id', str(run.version_id))}"
        )

    async def create_run(
        self, run: RunSpec, *, request_id: str, correlation_id: str | None = None
    ) -> CreatedRun:
        spec = self._here(run)
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

    async def _status(self, run: FollowedRun, version: dict[str, Any]) -> RunStatus:
        """The activation's state, from the version and, if need be, its own operation and
        the version's jobs."""
        spec = self._here(run.run)
        latest = version.get("latestOperation")
        if isinstance(latest, dict) and latest.get("id") == run.run_id:
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
            return run_status(operation, None)
        job = version.get("latestJob")
        later_activation = (
            isinstance(latest, dict)
            and latest.get("id") != run.run_id
            and latest.get("requestType") == "activate"
        )
        if not isinstance(job, dict) or later_activation or job_of(operation, [job]) is None:
            response = await self._call(
                "GET", f"{self._version_path(spec)}/jobs", operation="list jobs", idempotent=True
            )
            jobs = response.json()
            job = (
                job_of(operation, [j for j in jobs if isinstance(j, dict)])
                if isinstance(jobs, list)
                else None
            )
        return run_status(operation, job)

    async def find_runs(
        self, run: RunSpec, *, request_id: str, since: datetime, until: datetime
    ) -> list[RunStatus]:
        """The activation this request may have made: the version's latest operation, if it
        is an activate made within the window."""
        spec = self._here(run)
        version = await self._version(spec)
        latest = version.get("latestOperation")
        if not isinstance(latest, dict) or latest.get("requestType") != "activate":
            return []
        created = json_time(latest.get("created"))
        if created is None or not since <= created <= until:
            return []
        followed = FollowedRun(str(latest.get("id")), spec)
        return [await self._status(followed, version)]

    async def get_run(self, run: FollowedRun) -> RunStatus:
        return await self._status(run, await self._version(self._here(run.run)))

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        """One read of each version that has followed runs (more only to find a job)."""
        until = datetime.now(UTC)
        before = self._reads.spent
        by_version: dict[tuple[str, str], list[FollowedRun]] = {}
        for followed in runs:
            spec = self._here(followed.run)
            by_version.setdefault((spec.pipeline_id, str(spec.version_id)), []).append(followed)
        statuses: list[RunStatus] = []
        for group in by_version.values():
            version = await self._version(self._here(group[0].run))
            for followed in group:
                statuses.append(await self._status(followed, version))
        return Poll(statuses=statuses, through=until, reads=self._reads.spent - before)

    async def cancel_run(self, run: FollowedRun, options: CancelOptions | None) -> bool:
        """A cancel operation on the version. HERE refuses one when no job runs: then the
        run has ended (False), unless it has not started yet."""
        spec = self._here(run.run)
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
            current = await self.get_run(run)
            if current.state is not None and current.state.is_terminal:
                return False
            raise
        except BackendError:
            raise
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._tokens.aclose()
