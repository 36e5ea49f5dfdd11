"""Marquez: create a run of a job, read runs, abort one (the Runs API of Marquez 0.50).

Facts from the real 0.50.0 server (../shared/reference/marquez.md):
- a client-chosen run id makes creation idempotent: the same id again answers 400 "Run
  '…' already exists …" (checked across jobs), so the bridge derives the id from the
  request id, and a repeat is recognised by Marquez itself;
- malformed input answers HTTP 500 with a body whose ``code`` is 400: errors are
  classified by the body's code as well as the HTTP status;
- transitions are not validated (an ended run can be started again), so a cancel reads the
  run first and aborts only one that has not ended;
- PUT namespace and PUT job are upserts that overwrite (the owner; the job's type,
  description, location and inputs, and a deleted job comes back), so what is missing is
  looked for first and only created when Marquez answers 404;
- a job's run list is ordered ``started_at DESC NULLS LAST``: runs started lately come
  first, runs not started yet (NEW, as every run the bridge creates begins) come last, and
  a deleted job's list answers 404 while its runs still answer a GET each.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from contracts import CancelOptions, MarquezRun, RunSpec, RunState, System

from ..._http import api_client, json_object, status_error, transport_error
from ...budget import ReadBudget
from ...errors import AuthenticationFailed, BackendRejected
from .._base import CreatedRun, FollowedRun, Poll, RunStatus, own_run
from ._names import job_segment, namespace_segment, run_segment
from ._status import STATUS_TO_STATE, run_status
from ._target import ApiKeyCredential, MarquezTarget

log = logging.getLogger(__name__)

_RUN_ID_NAMESPACE = uuid.UUID("0e1f6b5a-7c39-4e37-9b9a-4d3c7f2b8a61")
#: A poll reads the first page of a job's runs when at least this many of its runs are
#: followed: one read answers for those on it, instead of a GET each.
_LIST_FROM = 2
_PAGE = 100


def run_id_for(request_id: str) -> str:
    """The Marquez run id of a request: derived, so a repeat has the same one."""
    return str(uuid.uuid5(_RUN_ID_NAMESPACE, request_id))


class _HeaderAuth(httpx.Auth):
    """A static credential in one header (a gateway's bearer token or API key)."""

    def __init__(self, header: str, value: SecretStr) -> None:
        self._header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers[self._header] = self._value.get_secret_value()
        yield request


def _auth(target: MarquezTarget) -> httpx.Auth | None:
    credential = target.credential
    if credential is None:
        return None
    secret = credential.resolve()
    if isinstance(credential, ApiKeyCredential):
        return _HeaderAuth(credential.header, secret)
    return _HeaderAuth("Authorization", SecretStr(f"Bearer {secret.get_secret_value()}"))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class MarquezBackend:
    system: ClassVar[System] = System.MARQUEZ
    status_words: ClassVar[Mapping[RunState, str]] = {
        state: status for status, state in STATUS_TO_STATE.items()
    }

    def __init__(
        self, target: MarquezTarget, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._target = target
        self._reads = ReadBudget(target.read_budget)
        self._client = api_client(
            base_url=target.base_url,
            auth=_auth(target),
            timeout=target.timeout_seconds,
            transport=transport,
        )
        self._namespaces: set[str] = set()
        self._made: set[tuple[str, str]] = set()

    @property
    def reads(self) -> int:
        return self._reads.spent

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One call. Every Marquez call the bridge makes is safe to repeat: creates carry
        the run id, PUTs are upserts (made only after a 404), an abort is read first."""
        if method == "GET":
            await self._reads.take()
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except httpx.TransportError as exc:
            raise transport_error(exc, operation=operation, idempotent=True) from exc
        if response.is_success:
            return response
        body = json_object(response)
        message = body.get("message") if isinstance(body.get("message"), str) else None
        code = body.get("code") if isinstance(body.get("code"), int) else None
        status = code or response.status_code
        text = f"{operation}: HTTP {response.status_code}" + (f": {message}" if message else "")
        if status in (401, 403):
            raise AuthenticationFailed(text, status_code=status)
        if 400 <= status < 500 and status not in (408, 429):
            # Marquez answers malformed input with HTTP 500 and code 400: a refusal.
            raise BackendRejected(text, status_code=status, code=str(status))
        raise status_error(
            response, operation=operation, idempotent=True, code=None, message=message
        )

    def _job_path(self, run: MarquezRun) -> str:
        return f"/api/v1/namespaces/{namespace_segment(run.namespace)}/jobs/{job_segment(run.job)}"

    async def _exists(self, path: str, *, operation: str) -> bool:
        """Whether Marquez has it: a GET, where 404 means no."""
        try:
            await self._call("GET", path, operation=operation)
        except BackendRejected as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    async def _make_missing(self, run: MarquezRun) -> None:
        """Create the namespace and the job (type BATCH) if Marquez does not have them.

        Each is read first and PUT only on a 404: a PUT would overwrite one that exists
        (the namespace's owner; the job's type, description, location and inputs). A job
        deleted in Marquez answers 404 like a missing one, and is created again. What is
        known to exist is remembered for the life of the process."""
        if (run.namespace, run.job) in self._made:
            return
        if run.namespace not in self._namespaces:
            namespace_path = f"/api/v1/namespaces/{namespace_segment(run.namespace)}"
            if not await self._exists(namespace_path, operation="get namespace"):
                await self._call(
                    "PUT",
                    namespace_path,
                    operation="create namespace",
                    json={"ownerName": self._target.owner},
                )
            self._namespaces.add(run.namespace)
        if not await self._exists(self._job_path(run), operation="get job"):
            await self._call(
                "PUT",
                self._job_path(run),
                operation="create job",
                json={"type": "BATCH", "inputs": [], "outputs": []},
            )
        self._made.add((run.namespace, run.job))

    async def create_run(
        self, run: RunSpec, *, request_id: str, correlation_id: str | None = None
    ) -> CreatedRun:
        spec = own_run(run, MarquezRun)
        path = f"{self._job_path(spec)}/runs"
        if self._target.create_missing:
            await self._make_missing(spec)
        run_id = run_id_for(request_id)
        body = {
            "id": run_id,
            "nominalStartTime": _iso(spec.nominal_start_time),
            "nominalEndTime": _iso(spec.nominal_end_time),
            "args": spec.args_as_text(),
        }
        try:
            await self._call(
                "POST",
                path,
                operation="createRun",
                json={name: value for name, value in body.items() if value is not None},
            )
        except BackendRejected as exc:
            if "already exists" not in exc.message:
                raise
            if not await self._is_run_of(spec, run_id):
                raise BackendRejected(
                    f"run id {run_id} (derived from request {request_id}) is held by another "
                    f"job than {spec.namespace}/{spec.job}: {exc.message}",
                    status_code=exc.status_code,
                    code=exc.code,
                ) from exc
        return CreatedRun(run_id)

    async def _runs_page(
        self, run: MarquezRun, *, offset: int, limit: int = _PAGE
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the job's run list (``started_at DESC NULLS LAST``), and the job's
        run count."""
        response = await self._call(
            "GET",
            f"{self._job_path(run)}/runs",
            operation="listRuns",
            params={"limit": limit, "offset": offset},
        )
        body = json_object(response)
        page = [r for r in body.get("runs") or [] if isinstance(r, dict)]
        total = body.get("totalCount")
        return page, total if isinstance(total, int) else None

    async def _is_run_of(self, run: MarquezRun, run_id: str) -> bool:
        """Whether the run is one of this job's: its id must be on the job's run list.

        True as soon as a page shows it; False only once every page has been read (the
        same as reading them in order). The list is ``started_at DESC NULLS LAST``, so the
        pages where the run most likely is are read first: the first (runs started
        lately) and the last (runs not started yet, as a run just created is); the pages
        between only for a run that is not there, or started long ago."""
        first, total = await self._runs_page(run, offset=0)
        if any(r.get("id") == run_id for r in first):
            return True
        if total is None or not first or total <= len(first):
            return False
        tail = max(len(first), total - _PAGE)
        page, _ = await self._runs_page(run, offset=tail)
        if any(r.get("id") == run_id for r in page):
            return True
        offset = len(first)
        while offset < tail:
            page, _ = await self._runs_page(run, offset=offset, limit=min(_PAGE, tail - offset))
            if any(r.get("id") == run_id for r in page):
                return True
            if not page:
                break
            offset += len(page)
        return False

    async def find_runs(
        self, run: RunSpec, *, request_id: str, since: datetime, until: datetime
    ) -> list[RunStatus]:
        """The run this request made, if it exists: its id is the request's own."""
        spec = own_run(run, MarquezRun)
        run_id = run_id_for(request_id)
        try:
            status = await self._get(run_id)
        except BackendRejected as exc:
            if exc.status_code == 404:
                return []
            raise
        return [status] if await self._is_run_of(spec, run_id) else []

    async def get_run(self, run: FollowedRun) -> RunStatus:
        return await self._get(run.run_id)

    async def _get(self, run_id: str) -> RunStatus:
        response = await self._call(
            "GET", f"/api/v1/jobs/runs/{run_segment(run_id)}", operation="getRun"
        )
        return run_status(json_object(response))

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        """Marquez has no query by update time: every followed run is read, at most one
        read per followed run and one per job. Where two or more runs of a job are
        followed, the first page of the job's run list answers for those on it (the runs
        started lately); the others, and the only run followed of a job, are read one
        GET each. A deleted job's list answers 404: its runs are read one by one. A run
        Marquez no longer has (404) is left out of the answer, which the tracker takes as
        no news; the other runs are still reported."""
        until = datetime.now(UTC)
        reads_before = self._reads.spent
        by_job: dict[tuple[str, str], list[FollowedRun]] = {}
        for followed in runs:
            spec = own_run(followed.run, MarquezRun)
            by_job.setdefault((spec.namespace, spec.job), []).append(followed)
        statuses: list[RunStatus] = []
        for followed_of_job in by_job.values():
            wanted = {f.run_id for f in followed_of_job}
            if len(wanted) >= _LIST_FROM:
                try:
                    page, _ = await self._runs_page(
                        own_run(followed_of_job[0].run, MarquezRun), offset=0
                    )
                except BackendRejected as exc:
                    if exc.status_code != 404:
                        raise
                    page = []  # a deleted job: its runs are still there, one GET each
                for payload in page:
                    if payload.get("id") in wanted:
                        statuses.append(run_status(payload))
                        wanted.discard(str(payload.get("id")))
            for run_id in sorted(wanted):
                try:
                    statuses.append(await self._get(run_id))
                except BackendRejected as exc:
                    if exc.status_code != 404:
                        raise
                    log.info("run %s: Marquez answers 404 (%s)", run_id, exc.message)
        return Poll(statuses=statuses, through=until, reads=self._reads.spent - reads_before)

    async def cancel_run(self, run: FollowedRun, options: CancelOptions | None) -> bool:
        """Abort the run, unless it has ended: Marquez would abort an ended run too."""
        run_id = run.run_id
        current = await self._get(run_id)
        if current.state is not None and current.state.is_terminal:
            return False
        await self._call(
            "POST", f"/api/v1/jobs/runs/{run_segment(run_id)}/abort", operation="abort"
        )
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
