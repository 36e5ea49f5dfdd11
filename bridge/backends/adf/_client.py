"""Azure Data Factory: Pipelines - Create Run, Pipeline Runs - Get and Cancel (2018-06-01)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from contracts import AdfRun, RunSpec, System

from ..._http import json_object, status_error, transport_error
from ...auth import BearerTokenAuth, TokenSource
from ...errors import AuthenticationFailed, BackendRejected, OutcomeUnknown
from .._base import CreatedRun, RunStatus
from ._entra import token_source
from ._names import factory_path, segment
from ._status import run_status
from ._target import AdfTarget

API_VERSION = "2018-06-01"


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

    def __init__(
        self,
        target: AdfTarget,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._target = target
        self._factory_path = factory_path(target)
        self._tokens = tokens or token_source(target.credential, timeout=target.timeout_seconds)
        self._client = httpx.AsyncClient(
            base_url=target.base_url,
            auth=BearerTokenAuth(self._tokens),
            timeout=target.timeout_seconds,
            transport=transport,
            headers={"User-Agent": "runbridge"},
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
    ) -> httpx.Response:
        headers = {"x-ms-client-request-id": request_id} if request_id else {}
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
        if response.status_code == 401:
            raise AuthenticationFailed(
                f"{operation}: HTTP 401 {code}: {message}", status_code=401, code=code
            )
        raise status_error(
            response, operation=operation, idempotent=idempotent, code=code, message=message
        )

    async def create_run(self, run: RunSpec, *, request_id: str) -> CreatedRun:
        if not isinstance(run, AdfRun):  # the router sends each system to its own backend
            raise TypeError(f"an ADF target cannot run a {run.system} request")
        path, query, body = create_run_request(self._target, run)
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

    async def get_run(self, run_id: str) -> RunStatus:
        path = f"{self._factory_path}/pipelineruns/{segment('run id', run_id)}"
        response = await self._call("GET", path, operation="getRun", idempotent=True)
        return run_status(json_object(response))

    async def cancel_run(self, run_id: str) -> None:
        """Cancel a run; a run that has already ended is not an error."""
        path = f"{self._factory_path}/pipelineruns/{segment('run id', run_id)}/cancel"
        try:
            await self._call(
                "POST",
                path,
                operation="cancel",
                idempotent=True,
                params={"api-version": API_VERSION, "isRecursive": "true"},
            )
        except BackendRejected as exc:
            if exc.code != "PipelineRunNotRunning":
                raise

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._tokens.aclose()
