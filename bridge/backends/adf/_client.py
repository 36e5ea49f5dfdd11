"""Azure Data Factory: Pipelines - Create Run, Pipeline Runs - Get and Cancel (2018-06-01)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from contracts import AdfCancel, AdfRun, CancelOptions, RunSpec, RunState, System

from ..._http import api_client, json_object, status_error, transport_error
from ...auth import BearerTokenAuth, TokenSource
from ...budget import ReadBudget
from ...errors import BackendRejected, OutcomeUnknown
from .._base import CreatedRun, FollowedRun, Poll, RunStatus, own_run
from ._entra import token_source
from ._names import factory_path, segment
from ._status import STATUS_TO_STATE, parameters_match, run_status
from ._target import AdfTarget

API_VERSION = "2018-06-01"
#: queryPipelineRuns takes a list of pipeline names to filter on; above this many, the
#: bridge asks for every run of the factory and keeps the ones it follows.
MAX_NAMES_IN_FILTER = 100


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def create_run_request(target: AdfTarget, run: AdfRun) -> tuple[str, dict[str, str], Any]:
    """Path, query and JSON body of a createRun call."""
    path = f"{factory_path(target)}/pipelines/{segment('pipeline', run.pipeline_name)}/createRun"
    query = {"api-version": API_VERSION}
    if run.reference_pipeline_run_id is not None:
        query["referencePipelineRunId"] = run.reference_pipeline_run_id
    for name, flag in (
        ("isRecovery", run.is_recovery),
        ("startFromFailure", run.start_from_failure),
    ):
        if flag is not None:
            query[name] = "true" if flag else "false"
    if run.start_activity_name is not None:
        query["startActivityName"] = run.start_activity_name
    return path, query, run.parameters


def cloud_error(response: httpx.Response) -> tuple[str | None, str | None]:
    """Code and message of a CloudError body, if it is one."""
    error = json_object(response).get("error")
    if not isinstance(error, dict):
        return None, response.text[:500] or None
    return error.get("code"), error.get("message")


class AdfBackend:
    system: ClassVar[System] = System.ADF
    status_words: ClassVar[Mapping[RunState, str]] = {
        state: status for status, state in STATUS_TO_STATE.items()
    }

    def __init__(
        self,
        target: AdfTarget,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._target = target
        self._factory_path = factory_path(target)
        self._reads = ReadBudget(target.read_budget)
        self._tokens = tokens or token_source(target.credential, timeout=target.timeout_seconds)
        self._client = api_client(
            base_url=target.base_url,
            auth=BearerTokenAuth(self._tokens),
            timeout=target.timeout_seconds,
            transport=transport,
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        params: dict[str, str] | None = None,
        json: Any = None,
        request_id: str | None = None,
        read: bool = False,
    ) -> httpx.Response:
        """One call; ``read`` (a GET, or a query sent as a POST) spends the read budget."""
        headers = {"x-ms-client-request-id": request_id} if request_id else {}
        if read or method == "GET":
            await self._reads.take()
        try:
            response = await self._client.request(
                method,
                path,
                params=params or {"api-version": API_VERSION},
                json=json,
                headers=headers,
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, operation=operation, idempotent=idempotent) from exc
        if response.is_success:
            return response
        code, message = cloud_error(response)
        raise status_error(
            response, operation=operation, idempotent=idempotent, code=code, message=message
        )

    async def create_run(
        self, run: RunSpec, *, request_id: str, correlation_id: str | None = None
    ) -> CreatedRun:
        path, query, body = create_run_request(self._target, own_run(run, AdfRun))
        response = await self._call(
            "POST",
            path,
            operation="createRun",
            idempotent=False,
            params=query,
            json=body,
            request_id=request_id,
        )
        run_id = json_object(response).get("runId")
        if not isinstance(run_id, str) or not run_id:
            raise OutcomeUnknown(f"createRun: HTTP {response.status_code} without a runId")
        return CreatedRun(run_id=run_id)

    async def _get_run_payload(self, run_id: str) -> dict[str, Any]:
        path = f"{self._factory_path}/pipelineruns/{segment('run id', run_id)}"
        response = await self._call("GET", path, operation="getRun", idempotent=True)
        return json_object(response)

    async def get_run(self, run: FollowedRun) -> RunStatus:
        return run_status(await self._get_run_payload(run.run_id))

    async def _query(
        self, *, since: datetime, until: datetime, filters: list[dict[str, Any]]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """queryPipelineRuns, one page per read, following continuation tokens."""
        body: dict[str, Any] = {
            "lastUpdatedAfter": _iso(since),
            "lastUpdatedBefore": _iso(until),
            "filters": filters,
        }
        while True:
            response = await self._call(
                "POST",
                f"{self._factory_path}/queryPipelineRuns",
                operation="queryPipelineRuns",
                idempotent=True,
                json=body,
                read=True,
            )
            payload = json_object(response)
            value = payload.get("value")
            yield [run for run in value if isinstance(run, dict)] if isinstance(value, list) else []
            token = payload.get("continuationToken")
            if not isinstance(token, str) or not token:
                return
            body = {**body, "continuationToken": token}

    async def find_runs(
        self, run: RunSpec, *, request_id: str, since: datetime, until: datetime
    ) -> list[RunStatus]:
        """ADF has no idempotency key, so a run this request may have created is found by
        its pipeline, the time window and its parameters, compared on the client. A rerun
        is matched on the parameters it copies from its reference run (and its group)."""
        run = own_run(run, AdfRun)
        expected: dict[str, Any] = dict(run.parameters)
        group: str | None = None
        if run.reference_pipeline_run_id is not None:
            reference = await self._get_run_payload(run.reference_pipeline_run_id)
            expected = dict(reference.get("parameters") or {})
            group = reference.get("runGroupId") if run.is_recovery else None
        by_name = [{"operand": "PipelineName", "operator": "Equals", "values": [run.pipeline_name]}]
        found: list[RunStatus] = []
        async for page in self._query(since=since, until=until, filters=by_name):
            for payload in page:
                status = run_status(payload)
                if status.run_id == run.reference_pipeline_run_id:
                    continue
                if not parameters_match(expected, payload.get("parameters")):
                    continue
                if group is not None and payload.get("runGroupId") != group:
                    continue
                if status.started_at is not None and status.started_at < since:
                    continue
                found.append(status)
        return found

    async def poll(self, runs: Sequence[FollowedRun], *, since: datetime) -> Poll:
        """One queryPipelineRuns for the whole factory (page by page): every run updated
        since the last poll, filtered by the followed runs' pipelines when there are few."""
        until = datetime.now(UTC)
        names = sorted({run.run.pipeline_name for run in runs if isinstance(run.run, AdfRun)})
        filters = (
            [{"operand": "PipelineName", "operator": "In", "values": names}]
            if 0 < len(names) <= MAX_NAMES_IN_FILTER
            else []
        )
        wanted = {run.run_id for run in runs}
        statuses: list[RunStatus] = []
        reads = 0
        async for page in self._query(since=since, until=until, filters=filters):
            reads += 1
            statuses.extend(run_status(p) for p in page if p.get("runId") in wanted)
        return Poll(statuses=statuses, through=until, reads=reads)

    async def cancel_run(self, run: FollowedRun, options: CancelOptions | None) -> bool:
        """Cancel a run (with its child pipelines if ``isRecursive``). ADF refuses to cancel
        a run that has ended with ``PipelineRunNotRunning``: that is False, not an error."""
        recursive = isinstance(options, AdfCancel) and options.is_recursive
        path = f"{self._factory_path}/pipelineruns/{segment('run id', run.run_id)}/cancel"
        try:
            await self._call(
                "POST",
                path,
                operation="cancel",
                idempotent=True,
                params={
                    "api-version": API_VERSION,
                    "isRecursive": "true" if recursive else "false",
                },
            )
        except BackendRejected as exc:
            if exc.code == "PipelineRunNotRunning":
                return False
            raise
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._tokens.aclose()
