"""Synchronous client for the emulator's ``/_emulator`` admin API, for tests and benchmarks.

Besides inspecting operations, jobs and stats it steers the emulator: pipelines and versions
(with how their jobs behave), faults (optionally intermittent), token expiry, the clock,
run-time settings (``configure``), and ending a job early (``finish``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import quote

from emulators._admin import EmulatorAdminClient, jsonable
from emulators.here._config import Fault, FinishState, PipelineSpec, VersionSpec

_PIPELINE_BASE_PATH = "/pipeline-service"


def _segment(value: str) -> str:
    return quote(value, safe="")


class AdminClient(EmulatorAdminClient[Fault]):
    """Inspect and steer a running emulator; every call raises on a non-2xx answer.

    ``base_url`` is the server's root (``http://127.0.0.1:<port>``); the Pipeline API base
    (``.../pipeline-service``) is accepted too. ``reset`` also puts the clock offset back to
    0; pipelines, versions, clients, tokens and the configuration survive it.
    """

    _fault_model = Fault

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(base_url.rstrip("/").removesuffix(_PIPELINE_BASE_PATH), timeout=timeout)

    # -- pipelines and versions ---------------------------------------------------------------

    def pipelines(self) -> list[dict[str, Any]]:
        """Every pipeline with its hrn and versions (behaviour, state, versionNumber)."""
        return cast(list[dict[str, Any]], self._call("GET", "/pipelines")["pipelines"])

    def create_pipeline(
        self,
        pipeline_id: str | None = None,
        *,
        name: str = "runbridge-emulated",
        versions: Sequence[VersionSpec | Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Add a pipeline (a new UUID unless given); returns it as ``pipelines()`` shows it."""
        spec: dict[str, Any] = {"name": name, "versions": [jsonable(v) for v in versions]}
        if pipeline_id is not None:
            spec["id"] = pipeline_id
        payload = PipelineSpec.model_validate(spec).model_dump(mode="json")
        return cast(dict[str, Any], self._call("POST", "/pipelines", payload))

    def create_version(
        self, pipeline_id: str, version_id: str | None = None, **behaviour: Any
    ) -> dict[str, Any]:
        """Add a version to a pipeline; ``behaviour`` takes ``VersionSpec`` fields
        (``job_seconds``, ``job_failure``, ``activation_failure``, ``template_ready``,
        ``input_catalogs``, ``run_as_id``, ``name``...). Returns the version's admin view."""
        spec = dict(behaviour)
        if version_id is not None:
            spec["id"] = version_id
        payload = VersionSpec.model_validate(spec).model_dump(mode="json")
        pipeline = self._call("POST", f"/pipelines/{_segment(pipeline_id)}/versions", payload)
        return _version_of(pipeline, payload["id"])

    def update_version(self, pipeline_id: str, version_id: str, **changes: Any) -> dict[str, Any]:
        """Change ``name``, ``job_seconds``, ``job_failure``, ``activation_failure``,
        ``template_ready`` or ``run_as_id``; jobs already accepted keep their timeline."""
        body = {name: jsonable(value) for name, value in changes.items()}
        path = f"/pipelines/{_segment(pipeline_id)}/versions/{_segment(version_id)}"
        return _version_of(self._call("PATCH", path, body), version_id)

    # -- operations and jobs ------------------------------------------------------------------

    def operations(
        self, pipeline_id: str | None = None, version_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Operations in creation order, as the API shows them plus ``pipelineId``,
        ``versionId``, ``jobId`` (started or canceled), ``requestId`` and ``correlationId``."""
        found = self._call("GET", "/operations", pipelineId=pipeline_id, versionId=version_id)
        return cast(list[dict[str, Any]], found["operations"])

    def jobs(
        self, pipeline_id: str | None = None, version_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Jobs in creation order, including those whose activation is still pending
        (``visible`` false), plus ``operationId``, ``cancelOperationId`` and ``message``."""
        found = self._call("GET", "/jobs", pipelineId=pipeline_id, versionId=version_id)
        return cast(list[dict[str, Any]], found["jobs"])

    def job(self, job_id: str) -> dict[str, Any]:
        for job in self.jobs():
            if job["id"] == job_id.lower():
                return job
        raise KeyError(job_id)

    def finish(
        self, job_id: str, state: FinishState = "completed", message: str | None = None
    ) -> dict[str, Any]:
        """End a starting or running job now; returns the job (admin view).

        Raises ``httpx.HTTPStatusError``: 404 for an unknown job, 400 for one that has not
        appeared yet or has ended.
        """
        body: dict[str, Any] = {"state": state}
        if message is not None:
            body["message"] = message
        return cast(dict[str, Any], self._call("POST", f"/jobs/{_segment(job_id)}/finish", body))

    # -- steering -----------------------------------------------------------------------------

    def expire_tokens(self) -> int:
        """Make every issued token expired, so the next Pipeline API call gets a 401."""
        return int(self._call("POST", "/tokens/expire")["expired"])

    def now(self) -> float:
        """The emulator's time (its clock plus the offset ``advance`` added), epoch seconds."""
        return float(self._call("GET", "/clock")["now"])

    def advance(self, seconds: float) -> float:
        """Make ``seconds`` pass for the emulator (operations, jobs, tokens, timestamps);
        returns the new time. ``reset`` puts the offset back to 0."""
        return float(self._call("POST", "/clock/advance", {"seconds": seconds})["now"])

    def listeners(self) -> list[str]:
        """Root URLs of the extra listeners serving this same emulator."""
        return cast(list[str], self._call("GET", "/listeners")["listeners"])


def _version_of(pipeline: dict[str, Any], version_id: str) -> dict[str, Any]:
    for version in pipeline["versions"]:
        if version["id"] == version_id.lower():
            return {**version, "pipelineId": pipeline["id"], "pipelineHrn": pipeline["hrn"]}
    raise KeyError(version_id)
